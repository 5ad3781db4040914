"""Escalation ladders on a manual clock, on SQLite and PostgreSQL: whole ladders run,
a confirmation at any rung stops the rest, Cancel stops everything, and each rung
fires exactly once however many nodes sweep and however often they restart."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import sqlalchemy as sa
from factories import COUNTY, GRIDS, NO_APPROVAL, T0, TOWNSHIP, VILLAGE, alert

from warnd.config import load_config
from warnd.domain.authority import admin_scope
from warnd.domain.directory import Household, Person, Region
from warnd.domain.model import MsgType, Reference
from warnd.engine.node import Node
from warnd.ingest.capxml import alert_to_xml
from warnd.ingest.directory import DirectoryData
from warnd.store.schema import alarms, call_list_items, call_lists, confirmations, deliveries, rungs

XML = "application/cap+xml"
G = GRIDS[0]


def directory() -> DirectoryData:
    return DirectoryData(
        regions=(Region(COUNTY, "示例县", "county"), Region(TOWNSHIP, "城关镇", "township", COUNTY),
                 Region(VILLAGE, "河口村", "village", TOWNSHIP), Region(G, "一组", "grid", VILLAGE)),
        people=(Person("resp", "张三", G, ("grid_responsible",), "+8613800000001", backup="back"),
                Person("back", "李四", G, ("liaison",), "+8613800000002"),
                Person("duty", "王镇长", TOWNSHIP, ("township_duty",), "+8613800000009")),
        households=(Household("h1", G, "河口村一组1号", "+8613900000001"),
                    Household("h2", G, "河口村一组2号", None, vulnerable=True),
                    Household("h3", G, "河口村一组3号", "+8613900000003")))


@pytest.fixture
async def nodes(database, clock):
    made: list[Node] = []

    async def make(*, start_dispatch: bool = False) -> Node:
        # SMS and voice "enabled" so the ladder plans them; nothing dispatches in these tests.
        config = load_config(None, database_url=database.url, node_id=f"n{len(made)}",
                             twilio={"from_number": "+15005550006", "api_base_url": "http://127.0.0.1:9"},
                             sms={"enabled": True}, voice={"enabled": True}, webhook={"enabled": False},
                             routing=[{"levels": ["red", "orange"], "channels": ["sms", "voice"],
                                       "roles": ["grid_responsible"]}], approval=NO_APPROVAL)
        node = Node(config, clock=clock)
        if not made:
            await node.directory.import_data(directory())
        await node.start(dispatch=start_dispatch)
        made.append(node)
        return node

    yield make
    for node in made:
        await node.stop()


async def rows(node: Node, table, *where):  # noqa: ANN001, ANN201
    async with node.db.read() as conn:
        return (await conn.execute(sa.select(table).where(*where).order_by(table.c.id))).all()


async def submit(node: Node, identifier: str = "W1", **kw) -> int:  # noqa: ANN003
    submitted, _ = await node.intake.submit(alert_to_xml(alert(identifier, codes=(VILLAGE,), **kw)).encode(), XML,
                                            admin_scope())
    return submitted.warning_id


async def at(node: Node, clock, minutes: float) -> None:  # noqa: ANN001
    """Move the clock to `minutes` after T0 and sweep (twice: a second sweep must fire nothing)."""
    clock.set(T0 + timedelta(minutes=minutes))
    await node.escalate()
    await node.escalate()


async def test_the_red_ladder_runs_to_the_end_each_rung_once(nodes, clock):
    node = await nodes()
    wid = await submit(node)
    assert [(r.step, r.action, r.state) for r in await rows(node, rungs)] == [
        (0, "notify", "pending"), (1, "door_to_door", "pending"), (2, "alarm", "pending")]
    initial = {(d.channel, d.recipient_id) for d in await rows(node, deliveries)}
    assert initial == {("sms", "resp"), ("voice", "resp")}

    await at(node, clock, 4.9)
    assert {r.state for r in await rows(node, rungs)} == {"pending"}
    await at(node, clock, 5)
    asks = {(d.channel, d.recipient_id, d.purpose) for d in await rows(node, deliveries, deliveries.c.purpose == "door_ask")}
    assert asks == {(ch, who, "door_ask") for ch in ("sms", "voice") for who in ("back", "duty")}
    # each ask says whom to wake, where: the township duty officer may be asked for many grids
    assert {tuple(sorted(d.params.items())) for d in await rows(node, deliveries, deliveries.c.purpose == "door_ask")} \
        == {(("grid", G), ("grid_name", "河口村一组"), ("person", "张三"), ("phone", "+8613800000001"))}
    (req,) = await rows(node, confirmations)
    assert req.not_woken_at == clock.now()  # 未叫醒

    await at(node, clock, 10)
    (lst,) = await rows(node, call_lists)
    assert lst.assignee_id == "back"
    items = await rows(node, call_list_items)
    assert [i.household_id for i in sorted(items, key=lambda i: i.position)] == ["h2", "h1", "h3"]  # vulnerable first
    door = await rows(node, deliveries, deliveries.c.purpose.in_(["door_to_door", "household"]))
    assert {(d.channel, d.recipient_id) for d in door} == {("sms", "back"), ("voice", "h1"), ("voice", "h3")}

    await at(node, clock, 15)
    (alarm,) = await rows(node, alarms)
    assert (alarm.warning_id, alarm.grid, alarm.code) == (wid, G, "escalation.red.unconfirmed")
    assert [r.state for r in await rows(node, rungs)] == ["fired"] * 3


@pytest.mark.parametrize("confirm_after", [1, 6, 12])
async def test_a_confirmation_at_any_rung_stops_the_rest_and_queued_sends(nodes, clock, confirm_after):
    node = await nodes()
    wid = await submit(node)
    await at(node, clock, confirm_after)
    answer = await node.answers.sms_reply("+8613800000001", "1", "SMx")
    assert answer.decision.kind.value == "confirmed"
    await at(node, clock, 60)
    states = [r.state for r in await rows(node, rungs)]
    fired_before = sum(1 for m in (5, 10, 15) if m <= confirm_after)
    assert states == ["fired"] * fired_before + ["skipped"] * (3 - fired_before)
    assert not await rows(node, alarms)
    assert not await rows(node, deliveries, deliveries.c.state == "pending")  # nothing left to bother anyone
    (req,) = await rows(node, confirmations, confirmations.c.warning_id == wid)
    assert (req.state, req.channel, req.late) == ("confirmed", "sms", confirm_after > 5)


async def test_cancel_stops_every_rung(nodes, clock):
    node = await nodes()
    await submit(node)
    await at(node, clock, 6)
    ref = (Reference("dept@example.cn", "W1", "2026-07-01T00:00:00+00:00"),)
    await submit(node, "W1-cancel", msg_type=MsgType.CANCEL, references=ref)
    await at(node, clock, 60)
    assert [r.state for r in await rows(node, rungs)] == ["fired", "skipped", "skipped"]
    assert not await rows(node, alarms) and not await rows(node, call_lists)


async def test_expiry_stops_every_rung(nodes, clock):
    node = await nodes()
    await submit(node, expires=clock.now() + timedelta(minutes=7))
    await at(node, clock, 8)
    await node.expire()
    await at(node, clock, 60)
    assert [r.state for r in await rows(node, rungs)] == ["fired", "skipped", "skipped"]


async def test_two_nodes_sweeping_at_once_fire_each_rung_once(nodes, clock):
    a, b = await nodes(), await nodes()
    for i in range(20):
        await submit(a, f"W{i}")
    clock.set(T0 + timedelta(minutes=16))
    await asyncio.gather(a.escalate(), b.escalate(), a.escalate(), b.escalate())
    fired = await rows(a, rungs)
    assert len(fired) == 60 and {r.state for r in fired} == {"fired"}
    assert len(await rows(a, alarms)) == 20 and len(await rows(a, call_lists)) == 20
    assert len(await rows(a, deliveries, deliveries.c.purpose == "door_ask")) == 20 * 4


async def test_a_restarted_node_fires_nothing_twice(nodes, clock):
    first = await nodes()
    await submit(first)
    await at(first, clock, 11)
    await first.stop()
    second = await nodes()
    await at(second, clock, 11)
    assert [r.state for r in await rows(second, rungs)] == ["fired", "fired", "pending"]
    assert len(await rows(second, call_lists)) == 1
    await at(second, clock, 15)
    assert len(await rows(second, alarms)) == 1


async def test_raising_the_level_needs_a_new_confirmation_lowering_does_not(nodes, clock):
    node = await nodes()
    await submit(node, "A", severity="Severe")  # orange
    await node.answers.sms_reply("+8613800000001", "1", None)
    ref_a = (Reference("dept@example.cn", "A", "2026-07-01T00:00:00+00:00"),)
    lower = await submit(node, "B", severity="Severe", msg_type=MsgType.UPDATE, references=ref_a)
    (kept,) = await rows(node, confirmations, confirmations.c.warning_id == lower)
    assert (kept.state, kept.channel) == ("confirmed", "carried")
    assert not await rows(node, rungs, rungs.c.warning_id == lower)
    ref_b = (Reference("dept@example.cn", "B", "2026-07-01T00:00:00+00:00"),)
    higher = await submit(node, "C", severity="Extreme", msg_type=MsgType.UPDATE, references=ref_b)
    (fresh,) = await rows(node, confirmations, confirmations.c.warning_id == higher)
    assert fresh.state == "open" and len(await rows(node, rungs, rungs.c.warning_id == higher)) == 3


async def test_an_operator_records_a_phoned_confirmation_with_a_reason(nodes, clock):
    from warnd.store import audit
    node = await nodes()
    wid = await submit(node)
    (req,) = await rows(node, confirmations)
    assert await node.answers.operator_confirm(req.id, "resp", "县预警中心值班员", "张三来电确认收到") == 1
    (req,) = await rows(node, confirmations)
    assert (req.state, req.channel, req.reason) == ("confirmed", "operator", "张三来电确认收到")
    assert await audit.verify(node.db) is None
    report = await node.coverage.report(wid)
    assert report["summary"]["confirmed"] == 1 and report["summary"]["p100_seconds"] == 0


async def test_coverage_report_counts_grids_and_times(nodes, clock):
    node = await nodes()
    wid = await submit(node)
    await at(node, clock, 3)
    await node.answers.sms_reply("+8613800000001", "收到", None)
    report = await node.coverage.report(wid)
    (grid,) = report["grids"]
    assert grid["state"] == "confirmed" and grid["confirmed_by"] == "resp" and grid["rungs_fired"] == 0
    assert report["summary"] == {"grids": 1, "confirmed": 1, "covered": 0, "open": 0, "closed": 0, "reached": 1,
                                 "reached_share": 1.0, "p50_seconds": 180.0, "p90_seconds": 180.0,
                                 "p100_seconds": 180.0}
