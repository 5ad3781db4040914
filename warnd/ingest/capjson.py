"""CAP as JSON: the same element names as CAP XML (camelCase), lists for
repeatable elements, `references` as the CAP string.

`alert_from_dict` checks only structure (types, required and unknown fields)
and names each problem by its JSON path, e.g. `info[0].severity`. Content is
judged afterwards by the same schema and rules as XML (see `validate`).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from warnd.domain.errors import Problem, WarndError
from warnd.domain.model import Alert, Area, Info, MsgType, Resource, Status
from warnd.ingest import rules
from warnd.ingest.capxml import format_circle, format_datetime, format_number

T = TypeVar("T")
_ALERT_KEYS = {"identifier", "sender", "sent", "status", "msgType", "source", "scope", "restriction",
               "addresses", "code", "note", "references", "incidents", "info"}
_INFO_KEYS = {"language", "category", "event", "responseType", "urgency", "severity", "certainty",
              "audience", "eventCode", "effective", "onset", "expires", "senderName", "headline",
              "description", "instruction", "web", "contact", "parameter", "resource", "area"}
_RESOURCE_KEYS = {"resourceDesc", "mimeType", "size", "uri", "derefUri", "digest"}
_AREA_KEYS = {"areaDesc", "polygon", "circle", "geocode", "altitude", "ceiling"}
_PAIR_KEYS = {"valueName", "value"}
# What XML 1.0 cannot carry (NUL, most control characters, lone surrogates, U+FFFE/U+FFFF):
# JSON strings may hold them, the canonical CAP XML cannot.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_FRACTION = re.compile(r"T\d\d:\d\d:\d\d[.,]")
_NOT_XML_TEXT = ("contains a character XML cannot carry (NUL, a control character or a lone surrogate)",
                 "含有 XML 无法承载的字符（NUL、控制字符或孤立代理项）")


def _cap_datetime(text: str) -> datetime:
    """A CAP time: whole seconds, as the CAP 1.2 schema has them (XML would refuse a fraction)."""
    if _FRACTION.search(text):
        raise ValueError("CAP times have whole seconds, no fraction")
    return rules.parse_datetime(text)


class _Obj:
    """One JSON object being read; problems go to a list shared by the whole document."""

    def __init__(self, data: dict, path: str, problems: list[Problem], keys: set[str]) -> None:
        self.data, self.path, self.problems = data, path, problems
        for key in sorted(set(data) - keys):  # a lone surrogate in a name would not encode
            self.fail(key.encode("utf-8", "backslashreplace").decode("utf-8"), "unknown field", "未知字段")

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, en: str, zh: str) -> None:
        self.problems.append(Problem(self.at(key), en, zh))

    def text(self, key: str, required: bool = False, empty_ok: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self.fail(key, "required field is missing", "缺少必填字段")
            return None
        if not isinstance(value, str):
            self.fail(key, f"must be a string, not {type(value).__name__}", "必须是字符串")
            return None
        if _NOT_XML.search(value):
            self.fail(key, *_NOT_XML_TEXT)
            return None
        value = value.strip()  # as CAP XML is read: text trimmed, an empty element absent
        if not value and required and not empty_ok:
            self.fail(key, "required field is empty", "必填字段为空")
        return value or None

    def texts(self, key: str, required: bool = False) -> tuple[str, ...]:
        items = self._list(key, required)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                self.fail(f"{key}[{i}]", "must be a string", "必须是字符串")
            elif _NOT_XML.search(item):
                self.fail(f"{key}[{i}]", *_NOT_XML_TEXT)
        return tuple(i.strip() for i in items if isinstance(i, str))  # as XML: stripped, empty kept

    def objs(self, key: str, keys: set[str]) -> list["_Obj"]:
        out = []
        for i, item in enumerate(self._list(key, False)):
            if isinstance(item, dict):
                out.append(_Obj(item, f"{self.at(key)}[{i}]", self.problems, keys))
            else:
                self.fail(f"{key}[{i}]", "must be an object", "必须是对象")
        return out

    def pairs(self, key: str) -> tuple[tuple[str, str], ...]:
        return tuple((o.text("valueName", True) or "", o.text("value", True, empty_ok=True) or "")
                     for o in self.objs(key, _PAIR_KEYS))

    def number(self, key: str, kind: type = float) -> Any:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (kind is int and not isinstance(value, int)):
            self.fail(key, f"must be a{'n integer' if kind is int else ' number'}", "必须是数字")
            return None
        try:
            return kind(value)
        except OverflowError:  # an integer past the largest float
            self.fail(key, "number out of range", "数值超出范围")
            return None

    def parsed(self, key: str, parse: Callable[[str], T], required: bool = False) -> T | None:
        text = self.text(key, required)
        return None if text is None else self._parse(key, parse, text)

    def _parse(self, key: str, parse: Callable[[str], T], text: str) -> T | None:
        try:
            return parse(text)
        except ValueError as exc:
            self.fail(key, f"cannot read {text[:80]!r}: {exc}", f"无法解析 {text[:80]!r}：{exc}")
            return None

    def parsed_list(self, key: str, parse: Callable[[str], T]) -> tuple[T, ...]:
        texts = self.texts(key)
        values = (self._parse(f"{key}[{i}]", parse, t) for i, t in enumerate(texts))
        return tuple(v for v in values if v is not None)

    def _list(self, key: str, required: bool) -> list:
        value = self.data.get(key)
        if value is None:
            if required:
                self.fail(key, "required field is missing", "缺少必填字段")
            return []
        if not isinstance(value, list):
            self.fail(key, "must be a list", "必须是数组")
            return []
        return value

    def enum(self, key: str, kind: type[T]) -> T | None:
        text = self.text(key, True)
        try:
            return None if text is None else kind(text)
        except ValueError:
            allowed = ", ".join(m.value for m in kind)
            self.fail(key, f"must be one of {allowed}", f"必须是以下之一：{allowed}")
            return None


def alert_from_dict(data: object) -> Alert:
    """Build an Alert from CAP-shaped JSON; raise `cap.json` naming every bad field."""
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise WarndError("cap.json", [Problem("$", "the body must be a JSON object", "请求体必须是 JSON 对象")])
    o = _Obj(data, "", problems, _ALERT_KEYS)
    alert = dict(
        identifier=o.text("identifier", True), sender=o.text("sender", True),
        sent=o.parsed("sent", _cap_datetime, True), status=o.enum("status", Status),
        msg_type=o.enum("msgType", MsgType), scope=o.text("scope", True), source=o.text("source"),
        restriction=o.text("restriction"), addresses=o.text("addresses"), codes=o.texts("code"),
        note=o.text("note"), references=o.parsed("references", rules.parse_references) or (),
        incidents=o.text("incidents"), infos=tuple(_info(i) for i in o.objs("info", _INFO_KEYS)))
    if problems:
        raise WarndError("cap.json", problems)
    return Alert(**alert)


def _info(o: _Obj) -> Info:
    return Info(
        language=o.text("language") or "en-US", categories=o.texts("category", True),
        event=o.text("event", True) or "", urgency=o.text("urgency", True) or "",
        severity=o.text("severity", True) or "", certainty=o.text("certainty", True) or "",
        response_types=o.texts("responseType"), audience=o.text("audience"),
        event_codes=o.pairs("eventCode"), effective=o.parsed("effective", _cap_datetime),
        onset=o.parsed("onset", _cap_datetime), expires=o.parsed("expires", _cap_datetime),
        sender_name=o.text("senderName"), headline=o.text("headline"), description=o.text("description"),
        instruction=o.text("instruction"), web=o.text("web"), contact=o.text("contact"),
        parameters=o.pairs("parameter"),
        resources=tuple(_resource(r) for r in o.objs("resource", _RESOURCE_KEYS)),
        areas=tuple(_area(a) for a in o.objs("area", _AREA_KEYS)))


def _resource(o: _Obj) -> Resource:
    return Resource(resource_desc=o.text("resourceDesc", True) or "",
                    mime_type=o.text("mimeType", True) or "",
                    size=o.number("size", int), uri=o.text("uri"), digest=o.text("digest"),
                    has_deref_uri=o.text("derefUri") is not None)


def _area(o: _Obj) -> Area:
    return Area(area_desc=o.text("areaDesc", True) or "",
                polygons=o.parsed_list("polygon", rules.parse_polygon),
                circles=o.parsed_list("circle", rules.parse_circle), geocodes=o.pairs("geocode"),
                altitude=o.number("altitude"), ceiling=o.number("ceiling"))


# --- writing ---

def alert_to_dict(alert: Alert) -> dict:
    """The JSON form of an alert; `alert_from_dict(alert_to_dict(a)) == a` for CAP 1.2 alerts."""
    return _compact({
        "identifier": alert.identifier, "sender": alert.sender, "sent": format_datetime(alert.sent),
        "status": alert.status.value, "msgType": alert.msg_type.value, "source": alert.source,
        "scope": alert.scope, "restriction": alert.restriction, "addresses": alert.addresses,
        "code": list(alert.codes), "note": alert.note,
        "references": " ".join(map(str, alert.references)) or None, "incidents": alert.incidents,
        "info": [_info_dict(i) for i in alert.infos]})


def _info_dict(info: Info) -> dict:
    return _compact({
        "language": info.language, "category": list(info.categories), "event": info.event,
        "responseType": list(info.response_types), "urgency": info.urgency, "severity": info.severity,
        "certainty": info.certainty, "audience": info.audience, "eventCode": _pairs(info.event_codes),
        "effective": _when(info.effective), "onset": _when(info.onset), "expires": _when(info.expires),
        "senderName": info.sender_name, "headline": info.headline, "description": info.description,
        "instruction": info.instruction, "web": info.web, "contact": info.contact,
        "parameter": _pairs(info.parameters),
        "resource": [_compact({"resourceDesc": r.resource_desc, "mimeType": r.mime_type, "size": r.size,
                               "uri": r.uri, "digest": r.digest}) for r in info.resources],
        "area": [_area_dict(a) for a in info.areas]})


def _area_dict(area: Area) -> dict:
    return _compact({
        "areaDesc": area.area_desc,
        "polygon": [" ".join(f"{format_number(lat)},{format_number(lon)}" for lat, lon in ring)
                    for ring in area.polygons],
        "circle": [format_circle(c) for c in area.circles], "geocode": _pairs(area.geocodes),
        "altitude": area.altitude, "ceiling": area.ceiling})


def _pairs(pairs: tuple[tuple[str, str], ...]) -> list[dict]:
    return [{"valueName": name, "value": value} for name, value in pairs]


def _when(value: Any) -> str | None:
    return None if value is None else format_datetime(value)


def _compact(d: dict) -> dict:
    """Leave out absent optional elements, as CAP XML does."""
    return {k: v for k, v in d.items() if v is not None and v != []}
