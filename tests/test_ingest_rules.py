"""warnd's CAP rules and level mapping: pure functions, tested on hand-built alerts."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from warnd.config import Config
from warnd.domain.errors import WarndError
from warnd.domain.levels import level_of
from warnd.domain.model import Alert, Area, Circle, Info, Level, MsgType, Reference, Status
from warnd.ingest import rules
from warnd.ingest.capxml import alert_to_xml, format_datetime, format_number
from warnd.ingest.validate import parse_warning

CST = timezone(timedelta(hours=8))
SENT = datetime(2024, 4, 22, 14, 12, tzinfo=CST)
SQUARE = ((30.0, 120.0), (30.0, 121.0), (31.0, 121.0), (30.0, 120.0))
EARLIER = (Reference("qx@example.cn", "W1", "2024-04-22T10:00:00+08:00"),)


def info(**changes) -> Info:
    base = Info(language="zh-CN", categories=("Met",), event="暴雨", urgency="Immediate",
                severity="Severe", certainty="Likely", expires=SENT + timedelta(hours=6),
                areas=(Area("杭州市", polygons=(SQUARE,), geocodes=(("GB2260", "330100"),)),))
    return replace(base, **changes)


def alert(*infos: Info, **changes) -> Alert:
    base = Alert(identifier="W2", sender="qx@example.cn", sent=SENT, status=Status.ACTUAL,
                 msg_type=MsgType.ALERT, scope="Public", infos=infos or (info(),))
    return replace(base, **changes)


def fields(findings: rules.Findings) -> set[str]:
    return {p.field for p in findings.problems}


def test_a_good_alert_passes() -> None:
    assert rules.check_alert(alert()) == rules.Findings()


def test_times_need_an_offset() -> None:
    naive = alert(info(onset=datetime(2024, 4, 22, 15)), sent=datetime(2024, 4, 22, 14, 12))
    assert fields(rules.check_alert(naive)) == {"/alert/sent", "/alert/info/onset"}


def test_alert_expired_when_sent_is_rejected() -> None:
    found = rules.check_alert(alert(info(expires=SENT)))
    assert fields(found) == {"/alert/info/expires"}


@pytest.mark.parametrize("msg_type", [MsgType.UPDATE, MsgType.CANCEL])
def test_update_or_cancel_already_expired_is_a_note(msg_type: MsgType) -> None:
    found = rules.check_alert(alert(info(), info(expires=SENT - timedelta(seconds=26)),
                                    msg_type=msg_type, references=EARLIER))
    assert not found.problems
    assert [(n.code, n.field) for n in found.notes] == [("cap.already_expired", "/alert/info[2]/expires")]


@pytest.mark.parametrize("msg_type", [MsgType.UPDATE, MsgType.CANCEL])
def test_update_and_cancel_need_references(msg_type: MsgType) -> None:
    assert fields(rules.check_alert(alert(msg_type=msg_type))) == {"/alert/references"}
    assert not rules.check_alert(alert(msg_type=msg_type, references=EARLIER)).problems


def test_references_on_an_alert_are_allowed_but_must_be_well_formed() -> None:
    assert not rules.check_alert(alert(references=EARLIER)).problems  # CAP-CP minor update
    bad = (Reference("a@b", "id", "2016-03-10T22:12:03.764"),)
    assert fields(rules.check_alert(alert(references=bad))) == {"/alert/references"}


def test_parse_references() -> None:
    refs = rules.parse_references(" a@b,ID-1,2024-04-22T10:00:00+08:00\n c@d,ID-2,2024-04-22T11:00:00-00:00 ")
    assert [r.identifier for r in refs] == ["ID-1", "ID-2"]
    assert rules.parse_references("") == ()
    with pytest.raises(ValueError):
        rules.parse_references("a@b,ID-1")


@pytest.mark.parametrize("ring, problem", [
    (SQUARE, None),
    (SQUARE[:3], "at least 4"),
    (SQUARE[:3] + ((31.0, 120.0),), "not closed"),
    (((91.0, 120.0),) + SQUARE[1:3] + ((91.0, 120.0),), "outside"),
])
def test_polygons(ring, problem) -> None:
    found = rules.check_alert(alert(info(areas=(Area("x", polygons=(ring,)),))))
    details = [p.detail_en for p in found.problems]
    assert (problem is None and not details) or any(problem in d for d in details)


def test_empty_polygon_is_a_note_and_is_dropped() -> None:
    a = alert(info(areas=(Area("x", polygons=((), SQUARE)),)))
    found = rules.check_alert(a)
    assert not found.problems
    assert [(n.code, n.field) for n in found.notes] == [("cap.empty_polygon", "/alert/info/area/polygon[1]")]
    assert rules.drop_empty_polygons(a).areas[0].polygons == (SQUARE,)


def test_circles() -> None:
    assert rules.parse_circle(" 32.9525,-115.5527 0 ") == Circle(32.9525, -115.5527, 0.0)
    for text in ("32.9,-115.5", "x,y 1", "1,2,3 4"):
        with pytest.raises(ValueError):
            rules.parse_circle(text)
    bad = alert(info(areas=(Area("x", circles=(Circle(10, 200, -1),)),)))
    assert len(rules.check_alert(bad).problems) == 2


def test_parse_polygon() -> None:
    assert rules.parse_polygon("30,120 30,121\n31,121 30,120") == SQUARE
    assert rules.parse_polygon("  ") == ()
    with pytest.raises(ValueError):
        rules.parse_polygon("30;120 30,121")


def test_level_parameter_must_parse() -> None:
    good = alert(info(severity="Extreme", parameters=(("warnd:level", "红色"),)))
    assert not rules.check_alert(good).problems
    bad = alert(info(parameters=(("other", "x"), ("预警级别", "紫色"))))
    found = rules.check_alert(bad)
    assert fields(found) == {"/alert/info/parameter[2]"}
    assert "紫色" in found.problems[0].detail_en
    # Taiwan's alert_color uses its own (traditional) vocabulary: not a warnd level.
    assert not rules.check_alert(alert(info(parameters=(("alert_color", "黃色"),)))).problems


def test_a_level_parameter_contradicting_the_severity_is_refused() -> None:
    # Authority is checked on the level and downstream reads the severity: they must agree.
    found = rules.check_alert(alert(info(severity="Extreme", parameters=(("warnd:level", "yellow"),))))
    assert fields(found) == {"/alert/info/parameter"}
    assert "Extreme" in found.problems[0].detail_en and "黄色" in found.problems[0].detail_zh
    # Unknown severity: the parameter is the only statement of the level.
    assert not rules.check_alert(alert(info(severity="Unknown", parameters=(("预警级别", "橙色"),)))).problems


def test_level_of() -> None:
    config = Config()
    assert level_of(alert(info(severity="Extreme"), info(severity="Minor")), config) is Level.RED
    explicit = info(severity="Unknown", parameters=(("warnd:level", "yellow"),))
    assert level_of(alert(explicit), config) is Level.YELLOW
    assert level_of(alert(info(severity="Unknown")), config) is Level.BLUE
    assert level_of(alert(info(severity="Unknown")), Config(unknown_severity_level="黄色")) is Level.YELLOW
    assert level_of(replace(alert(), infos=(), msg_type=MsgType.CANCEL), config) is Level.BLUE


def test_format_datetime_is_cap_form() -> None:
    assert format_datetime(SENT) == "2024-04-22T14:12:00+08:00"
    utc = datetime(2013, 1, 5, 10, 58, 23, 500, tzinfo=timezone.utc)
    assert format_datetime(utc) == "2013-01-05T10:58:23-00:00"


def test_format_number_reads_back_exactly() -> None:
    for x in (42.3481, -82.9314, 0.0, 120.0, 1e-05, 33.123456789012):
        text = format_number(x)
        assert "e" not in text and float(text) == x
    assert format_number(120.0) == "120"


def test_rules_apply_to_xml_input() -> None:
    """An unclosed polygon in otherwise valid CAP XML is refused naming the polygon."""
    a = alert(info(areas=(Area("x", polygons=(SQUARE[:3] + ((31.0, 120.0),),)),)))
    with pytest.raises(WarndError) as caught:
        parse_warning(alert_to_xml(a).encode(), "application/cap+xml", Config())
    assert caught.value.code == "cap.rule"
    assert caught.value.problems[0].field == "/alert/info/area/polygon"


def test_unreadable_polygon_in_xml_is_a_rule_error() -> None:
    xml = alert_to_xml(alert()).replace("30,120 30,121", "30 120 30,121", 1)
    with pytest.raises(WarndError) as caught:
        parse_warning(xml.encode(), "application/xml", Config())
    assert caught.value.code == "cap.rule"
    assert caught.value.problems[0].field == "/alert/info/area/polygon"
