"""Cron schedules, each job called directly (no waiting for cron) on a real node and database
(SQLite and PostgreSQL): scheduled drills, the daily summary, the roster refresh, retention;
and cron expressions checked at load."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from factories import COUNTY, GRIDS, NO_APPROVAL, TOWNSHIP, VILLAGE, alert

from warnd.config import load_config
from warnd.domain.authority import Role, Scope, admin_scope
from warnd.domain.directory import Person, Region
from warnd.domain.errors import WarndError
from warnd.domain.model import Level
from warnd.domain.report import Targets
from warnd.engine.node import Node
from warnd.engine.schedules import fire_time
from warnd.http import roster_api
from warnd.http.keys import NODE
from warnd.http.problems import problems_middleware
from warnd.ingest.capxml import alert_to_xml
from warnd.ingest.directory import DirectoryData
from warnd.store import audit
from warnd.store.reports import ReportStore
from warnd.store.schema import alarms, attempts, confirmations, deliveries, inbound, warnings

SHANGHAI_9AM = datetime(2026, 7, 1, 1, 0, 30, tzinfo=timezone.utc)  # 09:00:30 in Asia/Shanghai
WEATHER = "县气象局"
TEMPLATE = {"hazard": "暴雨", "level": "blue", "event": "暴雨蓝色预警", "severity": "Minor", "urgency": "Expected",
            "headline": "【演练】暴雨蓝色预警信号", "description": "月度演练", "instruction": "请按预案演练"}
DRILLS = [{"name": "monthly", "cron": "0 9 1 * *", "department": WEATHER, "regions": [VILLAGE], "template": TEMPLATE},
          {"name": "yellow", "cron": "0 9 1 * *", "department": WEATHER, "regions": [VILLAGE],
           "template": {**TEMPLATE, "level": "yellow", "event": "暴雨黄色预警", "severity": "Moderate"}}]
SCHEDULES = {"drills": DRILLS, "summary": {"cron": "0 8 * * *", "to": ["county_duty"]},
             "roster": {"cron": "0 9 1 3 *", "confirm_days": 14},
             "retention": {"cron": "30 3 * * *", "days": 180, "batch": 100}}


def _directory() -> DirectoryData:
    return DirectoryData(
        regions=(Region(COUNTY, "示例县", "county"), Region(TOWNSHIP, "城关镇", "township", COUNTY),
                 Region(VILLAGE, "河口村", "village", TOWNSHIP), Region(GRIDS[0], "一组", "grid", VILLAGE),
                 Region(GRIDS[1], "二组", "grid", VILLAGE)),
        people=(Person("p1", "张三", GRIDS[0], ("grid_responsible",), "+8613800000001"),
                Person("p2", "Li Si", GRIDS[1], ("grid_responsible",), "+8613800000002", language="en"),
                Person("p3", "王五", GRIDS[1], ("grid_responsible", "liaison"), None),
                Person("d1", "赵六", COUNTY, ("county_duty",), "+8613800000009"),
                Person("d2", "Sun Qi", COUNTY, ("county_duty",), "+8613800000010", language="en")))


@pytest.fixture
async def node(database, clock):
    clock.set(SHANGHAI_9AM)
    config = load_config(None, database_url=database.url, schedules=SCHEDULES,
                         approval={"levels": {**NO_APPROVAL["levels"], "blue": 1}})
    n = Node(config, clock=clock)
    await n.directory.import_data(_directory())
    await n.tokens.create(Scope(WEATHER, ("*",), (COUNTY,), Level.ORANGE, senders=("qx@example.cn",)))
    yield n
    await n.db.close()


def test_every_schedule_is_a_named_cron_job(node):
    jobs = node.schedules.jobs()
    assert [(cron, name) for _, cron, name in jobs] == [
        ("0 9 1 * *", "drill:monthly"), ("0 9 1 * *", "drill:yellow"), ("0 8 * * *", "summary"),
        ("0 9 1 3 *", "roster"), ("30 3 * * *", "retention")]
    assert all(callable(job) for job, _, _ in jobs)


def test_a_run_belongs_to_the_firing_it_was_scheduled_for():
    zone = load_config(None).display_zone
    fired = datetime(2026, 7, 1, 1, 0, tzinfo=timezone.utc)
    for late in (0, 30, 59 * 60):
        assert fire_time("0 9 1 * *", fired + timedelta(seconds=late), zone) == fired
    by_hand = datetime(2026, 7, 9, 3, 7, 42, tzinfo=timezone.utc)
    assert fire_time("0 9 1 * *", by_hand, zone) == by_hand.replace(second=0)


async def test_a_drill_fired_twice_for_the_same_minute_is_one_exercise_warning_and_waits_for_approval(node, clock):
    monthly = node.config.schedules.drills[0]
    first = await node.schedules.drill(monthly)
    clock.advance(240)  # another node, or this one after a restart, runs the same firing late
    second = await node.schedules.drill(monthly)
    assert first.created and not second.created and first.warning_id == second.warning_id
    assert first.awaiting  # blue needs one approval here: the department's approval policy applies
    w = await node.queries.warning(first.warning_id)
    assert (w["status"], w["state"], w["department"], w["level"]) == ("Exercise", "awaiting", WEATHER, "blue")
    assert w["identifier"] == "warnd-drill-monthly-20260701T0100Z" and w["sender"] == "qx@example.cn"
    assert w["submitted_by"] == "schedule:drill:monthly"
    async with node.db.read() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(warnings))).scalar() == 1
    clock.set(datetime(2026, 8, 1, 1, 0, 5, tzinfo=timezone.utc))  # next month: a new drill
    assert (await node.schedules.drill(monthly)).warning_id != first.warning_id


async def test_a_drill_that_needs_no_approval_is_published_and_has_a_drill_report(node, clock):
    submitted = await node.schedules.drill(node.config.schedules.drills[1])
    assert submitted.created and not submitted.awaiting
    report = await ReportStore(node.db).report(submitted.warning_id, clock.now(), False, Targets(10, 60))
    assert report["is_drill"] and report["drill"] is not None


async def test_a_drill_of_a_department_without_a_token_is_refused(node, clock, database):
    config = load_config(None, database_url=database.url, schedules={"drills": [{**DRILLS[0], "department": "水利局"}]})
    other = Node(config, clock=clock)
    with pytest.raises(WarndError) as refused:
        await other.schedules.drill(config.schedules.drills[0])
    assert refused.value.code == "auth.invalid"
    await other.db.close()


async def _submit(node: Node, identifier: str, now: datetime):  # noqa: ANN202 - Submitted
    a = alert(identifier, sent=now, expires=now + timedelta(hours=6))
    submitted, _ = await node.intake.submit(alert_to_xml(a).encode(), "application/cap+xml", admin_scope())
    return submitted


async def _confirmations(node: Node, warning_id: int, now: datetime) -> None:
    rows = [dict(grid=f"g{i}", state=state, not_woken_at=now if i == 2 else None)
            for i, state in enumerate(("confirmed", "confirmed", "open", "covered"))]
    async with node.db.write() as conn:
        await conn.execute(sa.insert(confirmations), [dict(warning_id=warning_id, deadline=now, created_at=now,
                                                           late=False, version=1, **r) for r in rows])
        await conn.execute(sa.insert(deliveries).values(
            warning_id=warning_id, channel="sms", recipient_kind="person", recipient_id="p1", address="+86138",
            language="zh-CN", priority=4, state="failed", next_attempt_at=now, created_at=now, updated_at=now,
            done_at=now))
        await conn.execute(sa.insert(alarms), [dict(at=now, code="grid.unconfirmed", detail={}, acknowledged_at=None),
                                               dict(at=now, code="grid.unconfirmed", detail={}, acknowledged_at=now)])


async def test_the_daily_summary_counts_the_last_day_for_every_duty_officer_once(node, clock):
    clock.set(datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc))
    submitted = await _submit(node, "S1", clock.now())
    await node.schedules.drill(node.config.schedules.drills[1])
    async with node.db.read() as conn:  # the two warnings' own requirements (one per grid), still open
        planned = (await conn.execute(sa.select(sa.func.count()).select_from(confirmations))).scalar()
    assert planned == 4
    await _confirmations(node, submitted.warning_id, clock.now())
    clock.set(datetime(2026, 7, 2, 0, 0, 20, tzinfo=timezone.utc))  # 08:00:20 in Shanghai
    counts, written = await node.schedules.summary()
    assert (counts.issued, counts.drills, counts.grids, counts.confirmed, counts.covered, counts.open,
            counts.not_woken, counts.failed, counts.open_alarms) == (1, 1, 8, 2, 1, 5, 1, 1, 1)
    assert counts.until == datetime(2026, 7, 2, 0, 0, tzinfo=timezone.utc)
    assert written == 2
    _, again = await node.schedules.summary()  # the same firing again: nobody is told twice
    assert again == 0
    rows = {r["person_id"]: r for r in await node.schedules.roster_store.notices("summary", 10)}
    assert set(rows) == {"d1", "d2"} and {r["state"] for r in rows.values()} == {"pending"}
    zh, en = rows["d1"]["body"], rows["d2"]["body"]
    assert "【值班日报】07-01 08:00至07-02 08:00" in zh and "发布预警1条（另有演练1条）" in zh
    assert "已确认2个、入户覆盖1个、仍待确认5个，未叫醒1人次；发送失败1条；未处理告警1条" in zh
    assert "1 warnings issued (and 1 drills)" in en and "1 sends failed; 1 alarms open" in en
    assert rows["d1"]["address"] == "+8613800000009" and rows["d1"]["channel"] == "sms"


async def _roster(node: Node) -> TestClient:
    app = web.Application(middlewares=[problems_middleware])
    app[NODE] = node
    app.add_routes(roster_api.routes())
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_the_roster_asks_every_responsible_person_and_lists_who_did_not_confirm(node, clock):
    clock.set(datetime(2027, 3, 1, 1, 0, 10, tzinfo=timezone.utc))  # 1 March, 09:00 in Shanghai
    asked = await node.schedules.roster()
    assert (asked.round, asked.asked, asked.notices) == ("2027-03-01T01:00Z", 3, 2)
    assert (await node.schedules.roster()).asked == 0  # fired twice: asked once
    bodies = {r["person_id"]: r["body"] for r in await node.schedules.roster_store.notices("roster", 10)}
    assert set(bodies) == {"p1", "p2"}  # p3 has no phone: listed, not asked
    assert "【名册核对】张三您好：您登记为一组的预警责任人" in bodies["p1"] and "2027-03-15 09:00前回复1" in bodies["p1"]
    assert "Please reply 1 by 2027-03-15 09:00" in bodies["p2"]

    clock.advance(3600)
    await node.answers.sms_reply("+8613800000001", "1", "SMroster1", channel="sms")
    client = await _roster(node)
    admin = await node.tokens.create(Scope("预警中心", ("*",), ("*",), Level.RED, Role.ADMIN, ("*",)))
    viewer = await node.tokens.create(Scope("预警中心", ("*",), ("*",), Level.RED, Role.VIEWER))
    try:
        resp = await client.get("/api/v1/roster", headers={"Authorization": f"Bearer {admin}"})
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert (body["round"], body["people"], body["confirmed"]) == ("2027-03-01T01:00Z", 3, 1)
        assert {x["person_id"]: x["reason"] for x in body["unconfirmed"]} == {"p2": "waiting", "p3": "no_phone"}
        assert {x["phone"] for x in body["unconfirmed"]} == {"+8613800000002", None}

        clock.advance(15 * 86400)  # past the due time: a late reply does not count
        await node.answers.sms_reply("+8613800000002", "ok", "SMroster2", channel="sms")
        resp = await client.get("/api/v1/roster", headers={"Authorization": f"Bearer {viewer}"})
        body = await resp.json()
        assert {x["person_id"]: x["reason"] for x in body["unconfirmed"]} == {"p2": "no_reply", "p3": "no_phone"}
        assert {x["phone"] for x in body["unconfirmed"]} == {None}  # numbers need the contacts right
        resp = await client.get("/api/v1/roster?round=1999-01-01T00:00Z", headers={"Authorization": f"Bearer {admin}"})
        assert resp.status == 404 and (await resp.json())["code"] == "request.not_found"
        resp = await client.get("/api/v1/notices?kind=roster", headers={"Authorization": f"Bearer {viewer}"})
        assert resp.status == 200 and {n["address"] for n in (await resp.json())["notices"]} == {None}
        assert (await client.get("/api/v1/roster")).status == 401
    finally:
        await client.close()


async def test_retention_purges_old_attempts_and_inbound_in_batches_and_keeps_the_audit_verifiable(node, clock):
    submitted = await _submit(node, "R1", clock.now())
    old, now = clock.now() - timedelta(days=200), clock.now()
    async with node.db.write() as conn:
        did = (await conn.execute(sa.insert(deliveries).values(
            warning_id=submitted.warning_id, channel="sms", recipient_kind="person", recipient_id="p1",
            address="+8613800000001", language="zh-CN", priority=4, state="delivered", next_attempt_at=old,
            created_at=old, updated_at=old).returning(deliveries.c.id))).scalar_one()
        await conn.execute(sa.insert(attempts), [
            dict(delivery_id=did, attempt=i, node="n1", started_at=at, finished_at=at, outcome="delivered")
            for i, at in enumerate([old] * 250 + [now] * 3)])
        await conn.execute(sa.insert(inbound), [
            dict(at=at, channel="sms", from_address="+8613800000001", body="1", outcome="not_asked",
                 confirmation_ids=[], provider_ref=f"SM{i}") for i, at in enumerate([old] * 120 + [now] * 2)])
    purged = await node.schedules.retention()
    assert purged.rows == {"delivery_attempts": 250, "inbound": 120}
    async with node.db.read() as conn:
        left = [(await conn.execute(sa.select(sa.func.count()).select_from(t))).scalar()
                for t in (attempts, inbound, deliveries)]
    assert left == [3, 2, 1]  # the delivery itself stays (reports are made of it)
    assert await audit.verify(node.db) is None
    entries = await audit.entries(node.db, audit.Filter(action="retention.purge"))
    assert [e.detail["rows"] for e in entries] == [{"delivery_attempts": 250, "inbound": 120}]
    assert (await node.schedules.retention()).rows == {"delivery_attempts": 0, "inbound": 0}
    assert await audit.verify(node.db) is None


@pytest.mark.parametrize("schedules, key", [
    ({"drills": [{**DRILLS[0], "cron": "61 9 1 * *"}]}, "schedules.drills.0.cron"),
    ({"summary": {"cron": "0 8 * *"}}, "schedules.summary.cron"),
    ({"roster": {"cron": "every spring"}}, "schedules.roster.cron"),
    ({"retention": {"cron": "30 3 * * 8"}}, "schedules.retention.cron"),
    ({"retention": {"days": 0}}, "schedules.retention.days"),
])
def test_bad_schedules_are_refused_at_load_naming_the_key(schedules, key):
    with pytest.raises(WarndError) as refused:
        load_config(None, schedules=schedules)
    assert [p.field for p in refused.value.problems] == [key]


def test_retention_is_on_by_default_and_can_be_turned_off():
    assert load_config(None).schedules.retention.days == 180
    assert load_config(None, schedules={"retention": None}).schedules.retention is None
