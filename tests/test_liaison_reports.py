"""Walkers' SMS reports of door-to-door lists (issue 11): "已转移12人" is recorded for the
walker's grid and summed; a running total ("共转移20人") replaces; a replay counts once;
refusals reported by SMS alarm the township duty officer; with two lists the walker is
asked to name the grid. The parser is pure and tested on a table.

The SMS path calls `liaison_report` before reading a reply as a confirmation; here it
is called as that path calls it (SQLite and PostgreSQL, a manual clock)."""
from __future__ import annotations

import pytest
from factories import VILLAGE
from test_pages import DOOR_MINUTES, G, Site, site  # noqa: F401 - the fixture is used by name

from warnd.domain.directory import Household, Person, Region
from warnd.domain.liaison_report import Candidate, Report, choose, cn_number, parse_report, reported_total
from warnd.domain.model import Status
from warnd.engine.liaison import liaison_report
from warnd.ingest.directory import DirectoryData
from warnd.store.schema import alarms, call_lists, deliveries, door_reports, inbound

WALKER = "+8613800000002"  # 李四, the backup: the default ladder hands them the list
G2 = VILLAGE + "002"

# text → (moved people, running total?, told, not home, refused, needs help); None: not a report
REPORTS: list[tuple[str, tuple | None]] = [
    ("已转移12人", (12, False, 0, 0, 0, 0)),
    ("已转移 12 人", (12, False, 0, 0, 0, 0)),
    ("已转移１２人。", (12, False, 0, 0, 0, 0)),
    ("转移12人", (12, False, 0, 0, 0, 0)),
    ("已经转移了12个人", (12, False, 0, 0, 0, 0)),
    ("转移群众12人", (12, False, 0, 0, 0, 0)),
    ("已转移12名群众", (12, False, 0, 0, 0, 0)),
    ("已撤离8人", (8, False, 0, 0, 0, 0)),
    ("已疏散30人", (30, False, 0, 0, 0, 0)),
    ("安置5口人", (5, False, 0, 0, 0, 0)),
    ("12人已转移", (12, False, 0, 0, 0, 0)),
    ("12人已全部转移", (12, False, 0, 0, 0, 0)),
    ("村民15人均已撤离", (15, False, 0, 0, 0, 0)),
    ("转移人数：15", (15, False, 0, 0, 0, 0)),
    ("已转移十二人", (12, False, 0, 0, 0, 0)),
    ("已转移二十人", (20, False, 0, 0, 0, 0)),
    ("两百人已撤离", (200, False, 0, 0, 0, 0)),
    ("一百零五人已转移", (105, False, 0, 0, 0, 0)),
    ("转移12户36人", (36, False, 0, 0, 0, 0)),
    ("又转移5人", (5, False, 0, 0, 0, 0)),
    ("共转移20人", (20, True, 0, 0, 0, 0)),
    ("共计转移20人", (20, True, 0, 0, 0, 0)),
    ("累计已转移20人", (20, True, 0, 0, 0, 0)),
    ("总共转移了20人", (20, True, 0, 0, 0, 0)),
    ("合计撤离20人", (20, True, 0, 0, 0, 0)),
    ("转移共20人", (20, True, 0, 0, 0, 0)),
    ("3户不在家", (None, False, 0, 3, 0, 0)),
    ("不在家2户，已转移5人", (5, False, 0, 2, 0, 0)),
    ("共3户不在家，转移12人", (12, False, 0, 3, 0, 0)),  # 共 belongs to the households, not the people
    ("1户拒绝转移", (None, False, 0, 0, 1, 0)),
    ("拒绝转移2户", (None, False, 0, 0, 2, 0)),
    ("2户不愿转移", (None, False, 0, 0, 2, 0)),
    ("2户需要帮助", (None, False, 0, 0, 0, 2)),
    ("张大爷家需要帮助，行动不便", (None, False, 0, 0, 0, 1)),
    ("已通知20户", (None, False, 20, 0, 0, 0)),
    ("通知了20户，转移36人，2户不在家，1户拒绝转移", (36, False, 20, 2, 1, 0)),
    ("河口村一组已转移12人", (12, False, 0, 0, 0, 0)),
    ("moved 12", (12, False, 0, 0, 0, 0)),
    ("Moved 12 people", (12, False, 0, 0, 0, 0)),
    ("12 people evacuated", (12, False, 0, 0, 0, 0)),
    ("evacuated 7", (7, False, 0, 0, 0, 0)),
    ("moved 20 so far", (20, True, 0, 0, 0, 0)),
    ("total moved 20", (20, True, 0, 0, 0, 0)),
    ("someone needs help", (None, False, 0, 0, 0, 1)),
    # negations and things that are not reports
    ("未转移12人", None),
    ("还没转移", None),
    ("尚未转移12人", None),
    ("没有转移12人", None),
    ("12人未转移", None),
    ("不需要帮助", None),
    ("无需帮助", None),
    ("not moved 12", None),
    ("1", None),
    ("收到", None),
    ("已收到", None),
    ("确认", None),
    ("W1A", None),
    ("12人", None),
    ("已转移", None),
    ("已转移12户", None),  # households moved, people unknown: nothing to add up
    ("转移99999人", None),  # past any grid: a typo
    ("", None),
]


@pytest.mark.parametrize(("text", "expected"), REPORTS, ids=[t or "empty" for t, _ in REPORTS])
def test_what_a_walker_writes(text, expected):
    report = parse_report(text)
    if expected is None:
        assert report is None
        return
    assert report is not None
    moved, cumulative, told, not_home, refused, needs_help = expected
    assert (report.moved_people, report.cumulative, report.told, report.not_home, report.refused,
            report.needs_help) == expected


@pytest.mark.parametrize(("text", "value"), [("12", 12), ("十", 10), ("十二", 12), ("二十", 20), ("二十五", 25),
                                             ("一百零五", 105), ("两百", 200), ("三千", 3000), ("一二", None),
                                             ("x", None)])
def test_chinese_numerals(text, value):
    assert cn_number(text) == value


def test_a_grid_code_in_the_text_is_not_a_count():
    report = parse_report(f"{G}已转移12人")
    assert report.moved_people == 12 and report.codes == (G,)


def test_the_list_a_report_is_about():
    one = Candidate(1, G, ("河口村一组", "一组"))
    two = Candidate(2, G2, ("河口村二组", "二组"))
    assert choose("已转移12人", parse_report("已转移12人"), [one]) is one
    assert choose("已转移12人", parse_report("已转移12人"), [one, two]) is None
    assert choose("二组已转移12人", parse_report("二组已转移12人"), [one, two]) is two
    assert choose("河口村一组转移3人", parse_report("河口村一组转移3人"), [one, two]) is one
    text = f"{G2} 转移3人"
    assert choose(text, parse_report(text), [one, two]) is two


@pytest.mark.parametrize(("reports", "total"), [
    ([], 0), ([(12, False)], 12), ([(12, False), (5, False)], 17), ([(12, False), (20, True)], 20),
    ([(12, False), (20, True), (3, False)], 23), ([(None, False), (4, False)], 4),
])
def test_reports_are_summed_and_a_running_total_replaces(reports, total):
    assert reported_total(reports) == total


# ---------------------------------------------------------------- recorded

async def _report(site: Site, body: str, sid: str, number: str = WALKER):  # noqa: ANN202
    return await liaison_report(site.node.db, site.node.config, number, body, sid, site.clock.now(), "sms")


async def test_reports_are_recorded_per_grid_summed_and_applied_once(site):
    wid = await site.submit()
    await site.door_list()
    first = await _report(site, "已转移12人", "SM1")
    assert first.recorded and not first.replayed and first.language == "zh-CN"
    assert first.text == "已记录河口村一组入户情况：已转移12人（本网格合计12人）。谢谢！"
    assert first.answer_en == "Recorded for 河口村一组: 12 people moved (12 in this grid). Thank you."
    site.clock.advance(60)
    assert "本网格合计17人" in (await _report(site, "又转移5人", "SM2")).text
    site.clock.advance(60)
    assert "本网格合计20人" in (await _report(site, "累计已转移20人", "SM3")).text
    replay = await _report(site, "又转移5人", "SM2")  # Twilio retried its webhook
    assert replay.replayed and not replay.recorded
    rows = await site.rows(door_reports)
    assert [(r.moved_people, r.cumulative, r.grid, r.person_id) for r in rows] == [
        (12, False, G, "back"), (5, False, G, "back"), (20, True, G, "back")]
    answers = await site.rows(inbound, inbound.c.outcome == "reported")
    (cl,) = await site.rows(call_lists)
    assert [a.provider_ref for a in answers] == ["SM1", "SM2", "SM3"]
    assert {tuple(a.confirmation_ids) for a in answers} == {(cl.confirmation_id,)}
    door = (await site.node.coverage.report(wid))["grids"][0]["door_to_door"]
    assert door["reported"]["moved_people"] == 20 and door["moved_people"] == 20 and door["moved_marked"] == 0

    # Not reports, or not from a walker: the ordinary reply path takes them.
    assert await _report(site, "1", "SM4") is None
    assert await _report(site, "收到", "SM5") is None
    assert await _report(site, "已转移3人", "SM6", "+8613800000001") is None  # the responsible person walks nothing
    assert await _report(site, "已转移3人", "SM7", "+8613811112222") is None
    assert len(await site.rows(door_reports)) == 3


async def test_refusals_reported_by_sms_alarm_the_duty_officer(site):
    await site.submit()
    await site.door_list()
    answer = await _report(site, "已转移6人，1户拒绝转移", "SM1")
    assert answer.text == "已记录河口村一组入户情况：已转移6人（本网格合计6人），拒绝转移1户。已报告乡镇值班人员。谢谢！"
    (alarm,) = await site.rows(alarms)
    assert alarm.code == "door.refused" and alarm.grid == G and alarm.detail["refused"] == "1"
    (sms,) = await site.rows(deliveries, deliveries.c.purpose == "door_alarm")
    assert (sms.recipient_id, sms.channel, sms.grid, sms.params["households"]) == ("duty", "sms", None, "1")


async def test_a_walker_of_two_lists_is_asked_to_name_the_grid(site):
    await site.node.directory.import_data(DirectoryData(
        regions=(Region(G2, "二组", "grid", VILLAGE),),
        people=(Person("resp2", "王二", G2, ("grid_responsible",), "+8613800000004", backup="back"),),
        households=(Household("k1", G2, "河口村二组1号"),)))
    await site.submit("D1", status=Status.EXERCISE)
    await site.at(DOOR_MINUTES + 0.1)
    assert len(await site.rows(call_lists)) == 2
    asked = await _report(site, "已转移12人", "SM1")
    assert not asked.recorded and "请注明网格" in asked.text and "河口村一组" in asked.text
    assert asked.text.startswith("【演练】") and asked.answer_en.startswith("[EXERCISE] ")
    assert await site.rows(door_reports) == []
    assert [a.outcome for a in await site.rows(inbound)] == ["ambiguous"]
    named = await _report(site, "二组已转移3人", "SM2")
    assert named.recorded and named.text.startswith("【演练】已记录河口村二组")
    by_code = await _report(site, f"{G} 转移4人", "SM3")
    assert by_code.recorded and "河口村一组" in by_code.text
    assert [(r.grid, r.moved_people) for r in await site.rows(door_reports)] == [(G2, 3), (G, 4)]


def test_an_empty_report_has_its_defaults():
    assert Report() == Report(None, False, 0, 0, 0, 0, ())
