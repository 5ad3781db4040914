"""warnd's own CAP rules, beyond the schema: pure functions over the model.

The XML and the JSON paths both build an `Alert` faithfully (times may come
back without an offset, polygons may be open or empty) and then run
`check_alert`, so one set of rules judges every warning. Problems reject the
warning; notes accept it with a warning. Fields are named as XPaths into the
CAP document, the way the schema errors are.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from datetime import datetime

from warnd.domain.errors import Problem
from warnd.domain.levels import LEVEL_PARAMETERS
from warnd.domain.model import SEVERITY_LEVELS, Alert, Area, Circle, Level, MsgType, Reference, ValidationNote

_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Findings:
    problems: tuple[Problem, ...] = ()
    notes: tuple[ValidationNote, ...] = ()

    def __add__(self, other: "Findings") -> "Findings":
        return Findings(self.problems + other.problems, self.notes + other.notes)


# --- text formats of CAP values (raise ValueError with an English reason) ---

def parse_datetime(text: str) -> datetime:
    """An ISO date-time; the result is naive when the text has no offset."""
    return datetime.fromisoformat(text.strip())


def is_cap_datetime(text: str) -> bool:
    """CAP times must carry a time-zone offset (CAP 1.2 §3.3.2)."""
    try:
        return parse_datetime(text).tzinfo is not None
    except ValueError:
        return False


def parse_polygon(text: str) -> tuple[tuple[float, float], ...]:
    """'lat,lon lat,lon …' into (lat, lon) pairs; empty text gives ()."""
    return tuple(_point(pair) for pair in _SPACE.split(text.strip()) if pair)


def parse_circle(text: str) -> Circle:
    """'lat,lon radius' (radius in km)."""
    parts = _SPACE.split(text.strip())
    if len(parts) != 2:
        raise ValueError(f"expected 'lat,lon radius', got {text.strip()!r}")
    lat, lon = _point(parts[0])
    return Circle(lat, lon, _number(parts[1]))


def parse_references(text: str) -> tuple[Reference, ...]:
    """Space-separated 'sender,identifier,sent' triples."""
    refs = []
    for token in _SPACE.split(text.strip()):
        if not token:
            continue
        parts = token.split(",")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"expected 'sender,identifier,sent', got {token!r}")
        refs.append(Reference(*parts))
    return tuple(refs)


def _point(pair: str) -> tuple[float, float]:
    parts = pair.split(",")
    if len(parts) != 2:
        raise ValueError(f"expected 'lat,lon', got {pair!r}")
    return _number(parts[0]), _number(parts[1])


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"not a number: {text!r}") from None
    if not math.isfinite(value):  # "nan", "inf", "1e999": no place or radius is infinite
        raise ValueError(f"not a finite number: {text!r}")
    return value


# --- field paths ---

def step(name: str, index: int, count: int) -> str:
    """An XPath step, indexed only when siblings share the name (like lxml)."""
    return f"{name}[{index + 1}]" if count > 1 else name


def info_path(alert: Alert, i: int) -> str:
    return "/alert/" + step("info", i, len(alert.infos))


# --- the rules ---

def check_alert(alert: Alert) -> Findings:
    return (check_names(alert) + check_times(alert) + check_expiry(alert) + check_references(alert)
            + check_areas(alert) + check_levels(alert))


# CAP 1.2 §3.2.1: identifier and sender MUST NOT include spaces, commas or the restricted < and &.
_FORBIDDEN = re.compile(r"[\s,<&]")


def check_names(alert: Alert) -> Findings:
    problems = []
    for field, value in (("/alert/identifier", alert.identifier), ("/alert/sender", alert.sender)):
        bad = _FORBIDDEN.search(value)
        if bad:
            shown = {" ": "a space", ",": "a comma"}.get(bad.group(), repr(bad.group()))
            problems.append(Problem(field, f"must not contain spaces, commas, < or & (found {shown})",
                                    f"不得含空格、逗号、< 或 &（发现 {bad.group()!r}）"))
    return Findings(tuple(problems))


def check_times(alert: Alert) -> Findings:
    problems = []
    if alert.sent.tzinfo is None:
        problems.append(_no_offset("/alert/sent"))
    for i, info in enumerate(alert.infos):
        for name in ("effective", "onset", "expires"):
            value = getattr(info, name)
            if value is not None and value.tzinfo is None:
                problems.append(_no_offset(f"{info_path(alert, i)}/{name}"))
    return Findings(tuple(problems))


def _no_offset(field: str) -> Problem:
    return Problem(field, "time has no time-zone offset (CAP requires e.g. 2024-04-22T14:12:00+08:00)",
                   "时间缺少时区偏移（CAP 要求形如 2024-04-22T14:12:00+08:00）")


def check_expiry(alert: Alert) -> Findings:
    """An Alert that expired when sent can never be in effect: reject it.

    Updates and Cancels that end an event often do (all-clears, tsunami
    cancellations): accept them with a note; they are recorded, not sent.
    """
    problems, notes = [], []
    for i, info in enumerate(alert.infos):
        if not _expired_at_sent(alert.sent, info.expires):
            continue
        field = f"{info_path(alert, i)}/expires"
        if alert.msg_type is MsgType.ALERT:
            problems.append(Problem(field, f"expires {info.expires.isoformat()} is not after sent",
                                    f"失效时间 {info.expires.isoformat()} 不晚于发送时间"))
        else:
            notes.append(ValidationNote("cap.already_expired", field,
                                        "already expired when sent: recorded, nothing is sent",
                                        "发送时已失效：仅记录，不发送"))
    return Findings(tuple(problems), tuple(notes))


def _expired_at_sent(sent: datetime, expires: datetime | None) -> bool:
    if expires is None or (sent.tzinfo is None) != (expires.tzinfo is None):
        return False  # a missing offset is reported by check_times
    return expires <= sent


def check_references(alert: Alert) -> Findings:
    problems = []
    if alert.msg_type in (MsgType.UPDATE, MsgType.CANCEL) and not alert.references:
        kind = alert.msg_type.value
        problems.append(Problem("/alert/references", f"{kind} must reference earlier messages",
                                f"{kind} 消息必须引用先前的消息"))
    for ref in alert.references:  # allowed on Alert too (CAP-CP minor update)
        if not is_cap_datetime(ref.sent):
            problems.append(Problem("/alert/references",
                                    f"reference {ref}: sent is not a CAP date-time with offset",
                                    f"引用 {ref} 的发送时间不是带时区偏移的 CAP 时间"))
    return Findings(tuple(problems))


def check_areas(alert: Alert) -> Findings:
    problems, notes = [], []
    for i, info in enumerate(alert.infos):
        for j, area in enumerate(info.areas):
            base = f"{info_path(alert, i)}/{step('area', j, len(info.areas))}"
            for k, ring in enumerate(area.polygons):
                field = f"{base}/{step('polygon', k, len(area.polygons))}"
                if not ring:
                    notes.append(ValidationNote("cap.empty_polygon", field,
                                                "empty polygon ignored; the area's geocodes are used",
                                                "忽略空多边形，改用区域编码"))
                else:
                    problems.extend(_ring_problems(ring, field))
            for k, circle in enumerate(area.circles):
                field = f"{base}/{step('circle', k, len(area.circles))}"
                problems.extend(_circle_problems(circle, field))
    return Findings(tuple(problems), tuple(notes))


def _ring_problems(ring: tuple[tuple[float, float], ...], field: str) -> list[Problem]:
    problems = [p for lat, lon in ring for p in _coordinate_problems(lat, lon, field)][:1]
    if len(ring) < 4:
        problems.append(Problem(field, f"polygon has {len(ring)} points; at least 4 are required",
                                f"多边形只有 {len(ring)} 个点，至少需要 4 个"))
    elif ring[0] != ring[-1]:
        problems.append(Problem(field, "polygon is not closed (first and last points differ)",
                                "多边形未闭合（首尾点不同）"))
    return problems


def _circle_problems(circle: Circle, field: str) -> list[Problem]:
    problems = _coordinate_problems(circle.lat, circle.lon, field)
    if circle.radius_km < 0:
        problems.append(Problem(field, "circle radius is negative", "圆半径为负数"))
    return problems


def _coordinate_problems(lat: float, lon: float, field: str) -> list[Problem]:
    if -90 <= lat <= 90 and -180 <= lon <= 180:
        return []
    return [Problem(field, f"point {lat},{lon} is outside lat -90..90, lon -180..180",
                    f"坐标 {lat},{lon} 超出范围（纬度 -90..90，经度 -180..180）")]


def check_levels(alert: Alert) -> Findings:
    problems = []
    for i, info in enumerate(alert.infos):
        for k, (name, value) in enumerate(info.parameters):
            if name not in LEVEL_PARAMETERS:
                continue
            field = f"{info_path(alert, i)}/{step('parameter', k, len(info.parameters))}"
            try:
                level = Level.parse(value)
            except ValueError:
                problems.append(Problem(field, f"unknown level {value!r} in parameter {name}",
                                        f"参数 {name} 的预警级别 {value!r} 无法识别"))
                continue
            # One message, one level: authority is checked on the level, and downstream
            # systems read the severity. A contradiction is refused, never resolved.
            implied = SEVERITY_LEVELS.get(info.severity)
            if implied is not None and implied != level:
                problems.append(Problem(field, f"parameter {name} says {level.label} but severity {info.severity} "
                                        f"means {implied.label}; make them agree",
                                        f"参数 {name} 为{level.zh}，而严重程度 {info.severity} 对应{implied.zh}，"
                                        "两者须一致"))
    return Findings(tuple(problems))


def drop_empty_polygons(alert: Alert) -> Alert:
    """The alert without the empty polygons `check_areas` noted."""
    if not any(not ring for area in alert.areas for ring in area.polygons):
        return alert
    infos = tuple(replace(info, areas=tuple(_without_empty(a) for a in info.areas))
                  for info in alert.infos)
    return replace(alert, infos=infos)


def _without_empty(area: Area) -> Area:
    return replace(area, polygons=tuple(ring for ring in area.polygons if ring))
