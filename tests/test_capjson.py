"""CAP as JSON: round trip, structural errors named by JSON path, and the same
schema and rules as XML behind it."""
from __future__ import annotations

import copy
import json

import pytest
from lxml import etree

from warnd.config import Config
from warnd.domain.errors import WarndError
from warnd.domain.model import MsgType, Status
from warnd.ingest import xmlsafe
from warnd.ingest.capjson import alert_from_dict, alert_to_dict
from warnd.ingest.capxml import alert_to_xml
from warnd.ingest.validate import parse_warning, validate_schema

CONFIG = Config()
SAMPLE = {
    "identifier": "330100000000_20240422141200_1", "sender": "qx@hangzhou.example.cn",
    "sent": "2024-04-22T14:12:00+08:00", "status": "Exercise", "msgType": "Update", "scope": "Public",
    "code": ["warnd-drill"], "note": "演练",
    "references": "qx@hangzhou.example.cn,330100000000_20240422100000_1,2024-04-22T10:00:00+08:00",
    "info": [{
        "language": "zh-CN", "category": ["Met"], "event": "暴雨", "responseType": ["Prepare"],
        "urgency": "Expected", "severity": "Severe", "certainty": "Likely",
        "eventCode": [{"valueName": "GB/T 28592", "value": "11B03"}],
        "effective": "2024-04-22T14:12:00+08:00", "expires": "2024-04-23T02:00:00+08:00",
        "senderName": "杭州市气象台", "headline": "杭州市气象台发布暴雨橙色预警",
        "description": "预计未来 6 小时内将出现 100 毫米以上降水。", "instruction": "停止户外作业。",
        "parameter": [{"valueName": "warnd:level", "value": "橙色"}],
        "resource": [{"resourceDesc": "雷达图", "mimeType": "image/png", "size": 1024,
                      "uri": "https://example.cn/radar.png"}],
        "area": [{"areaDesc": "西湖区", "polygon": ["30.2,120.1 30.2,120.2 30.3,120.2 30.2,120.1"],
                  "circle": ["30.25,120.15 5.5"], "geocode": [{"valueName": "GB2260", "value": "330106"}],
                  "altitude": 10, "ceiling": 1200.5}],
    }],
}


def body(data: dict) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


def rejected(data: object) -> WarndError:
    with pytest.raises(WarndError) as caught:
        parse_warning(body(data) if isinstance(data, dict) else data, "application/json", CONFIG)
    return caught.value


def changed(path: str, value: object) -> dict:
    """SAMPLE with one dotted path set (value None deletes it)."""
    data = copy.deepcopy(SAMPLE)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return data


def test_round_trip() -> None:
    alert = alert_from_dict(SAMPLE)
    assert alert.status is Status.EXERCISE and alert.msg_type is MsgType.UPDATE
    assert alert.infos[0].areas[0].circles[0].radius_km == 5.5
    assert alert_to_dict(alert) == SAMPLE
    assert alert_from_dict(alert_to_dict(alert)) == alert


def test_json_is_accepted_with_generated_cap12_xml() -> None:
    parsed = parse_warning(body(SAMPLE), "application/json; charset=utf-8", CONFIG)
    assert parsed.alert == alert_from_dict(SAMPLE) and parsed.notes == ()
    assert parsed.cap_xml == alert_to_xml(parsed.alert)
    assert validate_schema(etree.fromstring(parsed.cap_xml.encode(), xmlsafe.safe_parser())) == "1.2"
    again = parse_warning(parsed.cap_xml.encode("utf-8"), "application/cap+xml", CONFIG)
    assert again.alert == parsed.alert


@pytest.mark.parametrize("path, value, field", [
    ("info.0.severity", None, "info[0].severity"),
    ("identifier", None, "identifier"),
    ("sent", 20240422, "sent"),
    ("sent", "yesterday", "sent"),
    ("status", "Real", "status"),
    ("info.0.category", "Met", "info[0].category"),
    ("info.0.category", ["Met", 3], "info[0].category[1]"),
    ("info.0.severty", "Severe", "info[0].severty"),
    ("info.0.area.0.polygon", ["30.2;120.1 30.2,120.2"], "info[0].area[0].polygon[0]"),
    ("info.0.area.0.circle", ["30.25,120.15"], "info[0].area[0].circle[0]"),
    ("info.0.area.0.altitude", "10", "info[0].area[0].altitude"),
    ("info.0.resource.0.size", 10.5, "info[0].resource[0].size"),
    ("info.0.eventCode", [{"valueName": "x"}], "info[0].eventCode[0].value"),
    ("info.0.area", [7], "info[0].area[0]"),
    ("references", "a@b,only-two", "references"),
])
def test_structural_errors_name_the_field(path: str, value: object, field: str) -> None:
    err = rejected(changed(path, value))
    assert err.code == "cap.json"
    assert field in {p.field for p in err.problems}, str(err)
    assert all(p.detail_en and p.detail_zh for p in err.problems)


def test_every_problem_is_reported_at_once() -> None:
    data = changed("info.0.urgency", None)
    data["sender"] = 5
    assert {p.field for p in rejected(data).problems} == {"sender", "info[0].urgency"}


def test_not_json_or_not_an_object() -> None:
    err = rejected(b'{"identifier": ')
    assert err.code == "cap.json" and err.problems[0].field == "body"
    assert "line 1" in err.problems[0].detail_en
    assert rejected(b"[1, 2]").problems[0].field == "$"
    assert rejected(b"[" * 100_000).code == "cap.json"  # nesting bomb


def test_content_goes_through_the_cap_schema() -> None:
    err = rejected(changed("info.0.urgency", "Soon"))
    assert err.code == "cap.schema" and {p.field for p in err.problems} == {"/alert/info/urgency"}


def test_time_without_offset_is_refused() -> None:
    err = rejected(changed("sent", "2024-04-22T14:12:00"))
    assert err.code == "cap.schema" and err.problems[0].field == "/alert/sent"


def test_content_goes_through_the_same_rules() -> None:
    expired = changed("msgType", "Alert")
    expired["info"][0]["expires"] = "2024-04-22T14:00:00+08:00"
    err = rejected(expired)
    assert err.code == "cap.rule" and err.problems[0].field == "/alert/info/expires"
    err = rejected(changed("references", None))
    assert err.code == "cap.rule" and err.problems[0].field == "/alert/references"
    err = rejected(changed("info.0.parameter", [{"valueName": "预警级别", "value": "紫色"}]))
    assert err.code == "cap.rule" and err.problems[0].field == "/alert/info/parameter"


def test_empty_polygon_in_json_is_a_note() -> None:
    parsed = parse_warning(body(changed("info.0.area.0.polygon", [""])), "application/json", CONFIG)
    assert [n.code for n in parsed.notes] == ["cap.empty_polygon"]
    assert parsed.alert.areas[0].polygons == ()
    assert "<polygon>" not in parsed.cap_xml


def test_deref_uri_sets_the_flag() -> None:
    data = copy.deepcopy(SAMPLE)
    data["info"][0]["resource"][0]["derefUri"] = "aGVsbG8="
    assert alert_from_dict(data).infos[0].resources[0].has_deref_uri
