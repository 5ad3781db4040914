"""Household outcomes (issue 11): only 已通知 (told) and 已转移 (moved) cover a grid.

Pure rules on tables; then over real HTTP (SQLite and PostgreSQL, a manual clock,
no sleeps): a grid whose 65 households are all not at home stays open and its alarm
rung fires; not-at-home households with a phone are called and texted; refusals and
calls for help alarm the township duty officer once per change, and their SMS is not
stopped by a confirmation; moved households count their people."""
from __future__ import annotations

import pytest
from factories import T0, alert
from test_pages import ALARM_MINUTES, G, Site, _item_ids, site  # noqa: F401 - the fixture is used by name

from warnd.domain.directory import Household, Person
from warnd.domain.escalation import Grid
from warnd.domain.households import (Mark, MarkError, Outcome, Policy, after_mark, after_report, covered,
                                     parse_mark, tally)
from warnd.domain.model import Level
from warnd.ingest.directory import DirectoryData
from warnd.render import render, warning_context
from warnd.store.call_lists import CallListStore, Marked
from warnd.store.schema import alarms, audit, call_list_items, call_lists, confirmations, deliveries, rungs

TOLD, MOVED, NOT_HOME = Outcome.TOLD, Outcome.MOVED, Outcome.NOT_HOME
REFUSED, HELP = Outcome.REFUSED, Outcome.NEEDS_HELP


# ---------------------------------------------------------------- pure

@pytest.mark.parametrize(("outcome", "people", "note", "expected"), [
    ("notified", "", "", Mark(TOLD)),
    ("notified", "7", "why", Mark(TOLD)),  # a head count or note on another outcome is not kept
    ("moved", "4", "", Mark(MOVED, 4)),
    ("moved", " 12 ", "", Mark(MOVED, 12)),
    ("moved", "１２", "", Mark(MOVED, 12)),  # a Chinese keyboard's full-width digits
    ("moved", "200", "", Mark(MOVED, 200)),
    ("not_home", None, None, Mark(NOT_HOME)),
    ("refused", "", "  老人不愿离家  ", Mark(REFUSED, None, "老人不愿离家")),
    ("needs_help", "", "行动不便，\n需要担架", Mark(HELP, None, "行动不便， 需要担架")),
    ("needs_help", "", "x" * 300, Mark(HELP, None, "x" * 200)),
])
def test_a_mark_as_the_form_sends_it(outcome, people, note, expected):
    assert parse_mark(outcome, people, note) == expected


@pytest.mark.parametrize(("outcome", "people", "key"), [
    ("moved", "", "bad_people"), ("moved", "0", "bad_people"), ("moved", "201", "bad_people"),
    ("moved", "-1", "bad_people"), ("moved", "3.5", "bad_people"), ("moved", "三", "bad_people"),
    ("moved", None, "bad_people"), ("burnt", "", "bad_mark"), ("", "", "bad_mark"), ("NOTIFIED", "", "bad_mark"),
])
def test_marks_the_page_refuses(outcome, people, key):
    with pytest.raises(MarkError) as err:
        parse_mark(outcome, people)
    assert err.value.key == key


@pytest.mark.parametrize(("marks", "covers"), [
    ([Mark(TOLD), Mark(MOVED, 3)], True),
    ([Mark(TOLD), None], False),
    ([Mark(NOT_HOME)] * 65, False),  # nobody there was told
    ([Mark(TOLD), Mark(REFUSED)], False),
    ([Mark(TOLD), Mark(HELP)], False),
    ([], False),
])
def test_only_told_and_moved_cover(marks, covers):
    assert covered(marks) is covers


def test_tally_counts_households_and_people():
    t = tally([Mark(TOLD), Mark(MOVED, 3), Mark(MOVED, 2), Mark(NOT_HOME), None, Mark(HELP)])
    assert (t.total, t.marked, t.unmarked, t.reached, t.moved_people) == (6, 5, 1, 3, 5)
    assert t.by_outcome == {"notified": 1, "moved": 2, "not_home": 1, "refused": 0, "needs_help": 1}


GRID = Grid(G, "resp", "back", (Person("duty", "王镇长", "421126100", ("township_duty",), "+8613800000009"),
                                Person("duty2", "无电话", "421126100", ("township_duty",))), (), "河口村一组")
WITH_PHONE = Household("h1", G, "一组1号", "+8613900000001")
NO_PHONE = Household("h2", G, "一组2号")


@pytest.mark.parametrize(("previous", "new", "home", "sends", "alarm"), [
    (None, Mark(TOLD), WITH_PHONE, [], None),
    (None, Mark(MOVED, 3), WITH_PHONE, [], None),
    (None, Mark(NOT_HOME), WITH_PHONE, [("voice", "h1", "household"), ("sms", "h1", "household")], None),
    (None, Mark(NOT_HOME), NO_PHONE, [], None),  # a revisit only
    (Mark(NOT_HOME), Mark(NOT_HOME), WITH_PHONE, [], None),  # unchanged: nobody is called twice
    (Mark(TOLD), Mark(NOT_HOME), WITH_PHONE, [("voice", "h1", "household"), ("sms", "h1", "household")], None),
    (None, Mark(REFUSED), NO_PHONE, [("sms", "duty", "door_alarm")], "door.refused"),
    (Mark(REFUSED), Mark(REFUSED, None, "still"), NO_PHONE, [], None),  # the same outcome again
    (Mark(REFUSED), Mark(HELP), NO_PHONE, [("sms", "duty", "door_alarm")], "door.needs_help"),
    (Mark(HELP), Mark(TOLD), NO_PHONE, [], None),
])
def test_what_a_changed_outcome_sets_off(previous, new, home, sends, alarm):
    effects = after_mark(previous, new, home, GRID, Policy())
    assert [(s.channel, s.recipient.id, s.purpose) for s in effects.sends] == sends
    assert (effects.alarm or {}).get("code") == alarm
    if alarm:
        assert effects.alarm["address"] == home.address and effects.alarm["told"] == ["duty"]
        assert effects.sends[0].params["grid_name"] == "河口村一组"


def test_policy_and_reports_decide_channels_and_alarms():
    quiet = Policy(follow_up=(), alarm_to=("county_duty",), alarm_channels=("sms",))
    assert after_mark(None, Mark(NOT_HOME), WITH_PHONE, GRID, quiet).sends == ()
    nobody = after_mark(None, Mark(REFUSED), WITH_PHONE, GRID, quiet)  # nobody holds that role: still an alarm
    assert nobody.sends == () and nobody.alarm["code"] == "door.refused" and nobody.notes
    assert after_report(0, 0, GRID, "已转移12人", Policy()).alarm is None
    report = after_report(2, 1, GRID, "2户拒绝转移，1户需要帮助", Policy())
    assert report.alarm["code"] == "door.needs_help" and report.alarm["households"] == "3"
    assert [s.recipient.id for s in report.sends] == ["duty"]


def test_the_duty_officers_sms_says_what_happened_in_both_languages():
    context = warning_context(alert(), Level.RED, "zh-CN") | {"signature": "【县预警中心】", "link": ""}
    zh = render("sms", "door_alarm", "zh-CN", context | {"about": {
        "grid_name": "河口村一组", "address": "一组3号", "outcome": "refused", "note": "老人不愿离家"}})
    assert zh == "【县预警中心】【入户告警】红色暴雨预警：河口村一组一组3号拒绝转移（老人不愿离家），请立即组织力量到场处置。"
    zh = render("sms", "door_alarm", "zh-CN", context | {"drill": True, "about": {
        "grid_name": "河口村一组", "refused": "2", "needs_help": "1", "outcome": "needs_help"}})
    assert "【演练】" in zh and "入户人员报告2户拒绝转移、1户需要帮助" in zh
    en = render("sms", "door_alarm", "en", warning_context(alert(), Level.RED, "en") | {
        "signature": "", "link": "", "about": {"grid_name": "G1", "address": "No. 3", "outcome": "needs_help"}})
    assert "the household at No. 3 (G1) needs help" in en and "[DOOR-TO-DOOR ALARM] RED" in en


# ---------------------------------------------------------------- over HTTP

async def _mark(site: Site, path: str, item: int, mark: str, **form: str) -> None:
    status, _, location, _ = await site.post(f"{path}/items/{item}", {"mark": mark, **form})
    assert status == 303 and location.endswith(f"#i{item}")


async def test_65_households_not_at_home_leave_the_grid_open(site):
    await site.node.directory.import_data(DirectoryData(households=tuple(
        Household(f"x{n:02d}", G, f"河口村一组{n + 10}号") for n in range(62))))
    await site.submit()
    list_id, path = await site.door_list()
    items = _item_ids((await site.page(path))[2])
    assert len(items) == 65
    listed_at = site.clock.now()
    site.clock.advance(60)
    for item in items:
        await _mark(site, path, item, "not_home")
    status, _, html = await site.page(path)
    assert "已落实 0/65" in html and "已标记 65/65" in html and "不在家 65" in html
    assert "本网格已全部入户通知" not in html and html.count("待回访") == 65
    (conf,) = await site.rows(confirmations)
    (cl,) = await site.rows(call_lists)
    assert conf.state == "open" and conf.covered_at is None and cl.completed_at is None
    # the two households with a phone are called and texted, to their grid (a confirmation stops it)
    follow = await site.rows(deliveries, deliveries.c.purpose == "household", deliveries.c.created_at > listed_at)
    assert sorted((d.channel, d.recipient_id, d.grid) for d in follow) == [
        ("sms", "h1", G), ("sms", "h3", G), ("voice", "h1", G), ("voice", "h3", G)]
    await site.at(ALARM_MINUTES + 0.1)  # the ladder goes on: nobody there was told
    (alarm,) = await site.rows(alarms)
    assert alarm.code == "escalation.red.unconfirmed"


async def test_revisited_households_told_or_moved_cover_the_grid_and_count_people(site):
    wid = await site.submit()
    _, path = await site.door_list()
    first, second, third = _item_ids((await site.page(path))[2])
    await _mark(site, path, first, "not_home")
    before = len(await site.rows(deliveries))
    await _mark(site, path, first, "not_home")  # a double tap: nobody is called twice
    assert len(await site.rows(deliveries)) == before
    await _mark(site, path, first, "moved", people="4")  # the revisit
    await _mark(site, path, second, "moved", people="2")
    await _mark(site, path, second, "moved", people="3")  # a corrected head count
    (conf,) = await site.rows(confirmations)
    assert conf.state == "open"
    await _mark(site, path, third, "notified")
    (conf,) = await site.rows(confirmations)
    assert conf.state == "covered"
    report = await site.node.coverage.report(wid)
    door = report["grids"][0]["door_to_door"]
    assert (door["total"], door["marked"], door["reached"], door["moved_people"]) == (3, 3, 3, 7)
    assert door["by_mark"] == {"notified": 1, "moved": 2, "not_home": 0, "refused": 0, "needs_help": 0}
    assert report["totals"] == {"not_woken": 0, "moved_people": 7}
    moved = [r for r in await site.rows(audit, audit.c.action == "door.mark") if r.detail["mark"] == "moved"]
    assert [(r.detail["people"], r.detail["previous"]) for r in moved] == [(4, "not_home"), (2, None), (3, "moved")]


async def test_an_answered_follow_up_call_tells_a_not_at_home_household_and_can_cover_the_grid(site):
    await site.submit()
    list_id, path = await site.door_list()
    no_phone, with_phone, other = _item_ids((await site.page(path))[2])
    listed_at = site.clock.now()
    site.clock.advance(60)
    await _mark(site, path, with_phone, "not_home")
    await _mark(site, path, no_phone, "notified")
    await _mark(site, path, other, "notified")
    # the follow-up (the ladder's own calls to households came before the list)
    calls = [d for d in await site.node.deliveries.claim("voice", 10, 60) if d.created_at > listed_at]
    texts = [d for d in await site.node.deliveries.claim("sms", 10, 60) if d.created_at > listed_at]
    assert [d.recipient_id for d in calls] == ["h1"] and [d.recipient_id for d in texts] == ["h1"]
    # an SMS delivered proves nobody read it; a call ringing out tells nobody
    await site.node.receipts.apply("sms", texts[0].id, "delivered", "twilio.delivered", "SMf1")
    assert await site.node.told_by_follow_ups() == 0
    (conf,) = await site.rows(confirmations)
    assert conf.state == "open"
    site.clock.advance(30)
    await site.node.receipts.apply("voice", calls[0].id, "delivered", "twilio.completed", "CAf1")
    assert await site.node.told_by_follow_ups() == 1
    assert await site.node.told_by_follow_ups() == 0  # once
    (item,) = await site.rows(call_list_items, call_list_items.c.id == with_phone)
    assert item.mark == "notified"
    (conf,) = await site.rows(confirmations)
    (cl,) = await site.rows(call_lists)
    assert conf.state == "covered" and cl.completed_at is not None
    (told,) = [r for r in await site.rows(audit, audit.c.action == "door.mark") if r.actor == "voice"]
    assert told.detail["previous"] == "not_home" and told.detail["completed"] is True
    status, _, html = await site.page(path)
    assert "已落实 3/3" in html and "本网格已全部入户通知" in html


async def test_refused_and_needs_help_alarm_the_township_duty_officer(site):
    await site.submit()
    _, path = await site.door_list()
    first, second, _ = _item_ids((await site.page(path))[2])
    await _mark(site, path, first, "refused")
    await _mark(site, path, first, "refused")  # unchanged: no second alarm
    await _mark(site, path, second, "needs_help", note="独居老人，行动不便，需要担架")
    found = await site.rows(alarms)
    assert [(a.code, a.grid, a.detail["household_id"]) for a in found] == [
        ("door.refused", G, "h2"), ("door.needs_help", G, "h1")]
    assert found[1].detail["note"] == "独居老人，行动不便，需要担架" and found[1].detail["told"] == ["duty"]
    told = await site.rows(deliveries, deliveries.c.purpose == "door_alarm")
    assert [(d.channel, d.recipient_id, d.address, d.grid) for d in told] == [
        ("sms", "duty", "+8613800000009", None), ("sms", "duty", "+8613800000009", None)]
    assert told[0].params["outcome"] == "refused" and told[0].params["list_id"]
    assert told[0].params["address"] == "河口村一组2号（独居老人）" and told[0].params["grid_name"] == "河口村一组"
    metrics = await (await site.client.get("/metrics")).text()
    assert 'warnd_operator_alarms_total{code="door.refused"} 1.0' in metrics
    status, _, html = await site.page(path)
    assert html.count("已报告乡镇值班人员") == 2 and "独居老人，行动不便，需要担架" in html
    (conf,) = await site.rows(confirmations)
    assert conf.state == "open"

    # The responsible person confirms at last: queued sends to the grid stop, the duty officer's do not.
    wid = conf.warning_id
    status, *_ = await site.post("/" + site.node.link_url("confirm", f"{wid}/resp").split("/", 3)[3])
    assert status == 200
    assert {d.state for d in await site.rows(deliveries, deliveries.c.purpose == "door_alarm")} == {"pending"}
    assert {d.state for d in await site.rows(deliveries, deliveries.c.purpose == "household")} == {"cancelled"}


async def test_the_store_refuses_marks_it_does_not_know(site):
    await site.submit()
    list_id, _ = await site.door_list()
    store = CallListStore(site.node.db)
    with pytest.raises(MarkError):
        await store.mark(list_id, 1, "burnt", site.clock.now())
    (item, *_) = await site.rows(call_list_items)
    assert await store.mark(list_id, item.id, "notified", site.clock.now()) is Marked.MARKED
    assert await store.mark(list_id, item.id, Mark(TOLD), site.clock.now()) is Marked.UNCHANGED
    assert await store.mark(list_id + 1, item.id, "notified", site.clock.now()) is Marked.NOT_FOUND
    fresh = (await store.get(list_id)).items[0]
    assert fresh.outcome == Mark(TOLD) and T0 < fresh.marked_at
    assert [r.state for r in await site.rows(rungs, rungs.c.action == "alarm")] == ["pending"]
