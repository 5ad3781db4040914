"""The CAP messages a simulation issues: templates, files moved onto the simulated clock, updates, cancels.

Pure: every function takes the moment it needs and returns an `Alert`; `alert_to_xml`
serializes it for POST /api/v1/warnings. A CAP file keeps its content; its `sent`
becomes the moment of issue and every other time keeps its offset from `sent`.
"""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from warnd.config import Config
from warnd.domain.errors import WarndError
from warnd.domain.model import Alert, Area, Info, MsgType, Reference, Status
from warnd.ingest.validate import parse_warning

SENDER = "simulate@warnd.example"
SEVERITY = {"red": "Extreme", "orange": "Severe", "yellow": "Moderate", "blue": "Minor"}
LEVEL_ZH = {"red": "红色", "orange": "橙色", "yellow": "黄色", "blue": "蓝色"}

# template name → (event, CAP category, description, instruction by level (red and orange are the more urgent))
EVENTS: dict[str, tuple[str, str, str, dict[str, str]]] = {
    "rainstorm": ("暴雨", "Met", "预计未来3小时内将出现50毫米以上强降雨，局地可达100毫米以上，山洪、地质灾害风险高。",
                  {"red": "立即停止户外作业和集会，危险区域人员立即转移到安全地带。",
                   "orange": "做好防汛准备，危险区域人员准备转移，避免前往山区河道。",
                   "yellow": "注意防范强降雨，减少户外活动。", "blue": "关注天气变化，注意防范。"}),
    "flash-flood": ("山洪灾害", "Geo", "受持续强降雨影响，山区溪河可能暴发山洪。",
                    {"red": "沿河低洼地带人员立即转移，禁止进入河道。",
                     "orange": "沿河人员做好转移准备，远离河道。",
                     "yellow": "注意防范山洪，远离河道。", "blue": "关注雨情水情。"}),
    "geohazard": ("地质灾害", "Geo", "强降雨可能诱发滑坡、崩塌、泥石流等地质灾害。",
                  {"red": "隐患点周边人员立即撤离。", "orange": "隐患点周边人员做好撤离准备。",
                   "yellow": "加强隐患点巡查。", "blue": "注意防范地质灾害。"}),
    "typhoon": ("台风", "Met", "台风将影响本地，伴有狂风暴雨。",
                {"red": "停课停工停业，人员留在安全场所。", "orange": "加固门窗，减少外出。",
                 "yellow": "做好防台风准备。", "blue": "关注台风动向。"}),
    "thunderstorm": ("雷电", "Met", "将出现强雷电活动，伴有短时强降水和大风。",
                     {"red": "立即进入室内，远离高处和金属物体。", "orange": "尽量避免户外活动。",
                      "yellow": "注意防雷。", "blue": "关注天气变化。"}),
}


class CapError(ValueError):
    """A CAP source that cannot be used; the message says why."""


def split_template(name: str, level: str | None) -> tuple[str, str]:
    """'red-rainstorm' → ('rainstorm', 'red'); an explicit level wins."""
    head, _, rest = name.partition("-")
    if head in SEVERITY and rest:
        return rest, level or head
    return name, level or "orange"


def template_alert(name: str, *, level: str | None, areas: tuple[str, ...], area_desc: str, department: str,
                   sent: datetime, expires_after: float, identifier: str, headline: str | None = None,
                   instruction: str | None = None, status: str = "Actual") -> Alert:
    event_key, level = split_template(name, level)
    if event_key not in EVENTS:
        raise CapError(f"unknown template {name!r}; templates are {', '.join(sorted(EVENTS))} "
                       "(optionally prefixed by a level, e.g. red-rainstorm)")
    event, category, description, instructions = EVENTS[event_key]
    expires = sent + timedelta(seconds=expires_after)
    zh = LEVEL_ZH[level]
    info = Info("zh-CN", (category,), event, "Immediate", SEVERITY[level], "Likely",
                effective=sent, expires=expires, sender_name=department,
                headline=headline or f"{department}发布{event}{zh}预警",
                description=description, instruction=instruction or instructions[level],
                parameters=(("预警级别", zh),),
                areas=(Area(area_desc, geocodes=tuple(("GB2260", code) for code in areas)),))
    return Alert(identifier, SENDER, sent, Status(status), MsgType.ALERT, "Public", infos=(info,))


def parse_cap(source: str | dict, base_dir: Path) -> Alert:
    """A CAP file (XML or JSON, relative to `base_dir`) or inline CAP JSON, parsed as the API parses it."""
    if isinstance(source, dict):
        body, content_type = json.dumps(source, ensure_ascii=False).encode(), "application/json"
    else:
        path = (base_dir / source).resolve()
        try:
            body = path.read_bytes()
        except OSError as exc:
            raise CapError(f"cannot read {source}: {exc.strerror or exc}") from None
        content_type = "application/json" if body.lstrip()[:1] in (b"{", b"[") else "application/cap+xml"
    try:
        return parse_warning(body, content_type, Config()).alert
    except WarndError as err:
        found = "; ".join(f"{p.field}: {p.detail_en}" for p in err.problems) or err.kind.title_en
        raise CapError(f"not accepted ({err.code}): {found}") from None


def moved(alert: Alert, *, sent: datetime, identifier: str, msg_type: MsgType | None = None,
          references: tuple[Reference, ...] | None = None) -> Alert:
    """The alert issued at `sent` (simulated): every time keeps its offset from the original `sent`."""
    sent = sent.astimezone(alert.sent.tzinfo) if alert.sent.tzinfo else sent
    delta = sent - alert.sent

    def shift(value: datetime | None) -> datetime | None:
        return value + delta if value is not None else None

    infos = tuple(replace(i, effective=shift(i.effective), onset=shift(i.onset), expires=shift(i.expires))
                  for i in alert.infos)
    return replace(alert, identifier=identifier, sent=sent, infos=infos,
                   msg_type=msg_type or alert.msg_type,
                   references=alert.references if references is None else references)


def cancel_of(alert: Alert, *, sent: datetime, identifier: str, references: tuple[Reference, ...]) -> Alert:
    """A Cancel of `alert`: its areas and event, headed 解除 (lifted)."""
    infos = tuple(replace(i, urgency="Past", headline=f"解除{i.event}预警",
                          description=f"{i.event}过程已经结束，解除预警。", instruction="危险解除，注意安全。",
                          parameters=())
                  for i in alert.infos)
    return moved(replace(alert, infos=infos), sent=sent, identifier=identifier, msg_type=MsgType.CANCEL,
                 references=references)


def reference(alert: Alert) -> Reference:
    from warnd.ingest.capxml import format_datetime
    return Reference(alert.sender, alert.identifier, format_datetime(alert.sent))
