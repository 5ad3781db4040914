"""The engine end to end in one process: real database (SQLite and PostgreSQL), real
webhook channel, real signed-webhook receiver. The clock is manual; waits are
bounded waits for a condition, never sleeps that hope."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import sqlalchemy as sa
from factories import COUNTY, GRIDS, NO_APPROVAL, SENDER, TOWNSHIP, VILLAGE, alert

from warnd.config import load_config
from warnd.domain.authority import Scope, admin_scope
from warnd.domain.directory import Person, Region, Subscriber
from warnd.domain.errors import WarndError
from warnd.domain.model import Level, MsgType, Reference, Status
from warnd.engine.node import Node
from warnd.ingest.capxml import alert_to_xml
from warnd.ingest.directory import DirectoryData
from warnd.sim.webhook_sink import WebhookSink
from warnd.store import audit
from warnd.store.deliveries import DeliveryStore
from warnd.store.schema import deliveries
from warnd_channels.webhook import new_secret

SECRET = new_secret()
XML = "application/cap+xml"


async def until(predicate, timeout: float = 15.0):  # noqa: ANN001, ANN201
    """Wait for a condition the system must reach; fail loudly if it does not."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached in {timeout}s")
        await asyncio.sleep(0.02)


@pytest.fixture
async def sink():
    s = WebhookSink(secrets=SECRET, keep_bodies=True)
    await s.start()
    yield s
    await s.stop()


def directory(sink: WebhookSink, *subs: Subscriber) -> DirectoryData:
    return DirectoryData(
        regions=(Region(COUNTY, "示例县", "county"), Region(TOWNSHIP, "城关镇", "township", COUNTY),
                 Region(VILLAGE, "河口村", "village", TOWNSHIP), Region(GRIDS[0], "一组", "grid", VILLAGE),
                 Region(GRIDS[1], "二组", "grid", VILLAGE)),
        people=(Person("p1", "张三", GRIDS[0], ("grid_responsible",), "+8613800000001"),),
        subscribers=subs or (Subscriber("tv", sink.url("/tv"), SECRET),
                             Subscriber("web", sink.url("/web"), SECRET, format="json")))


@pytest.fixture
async def make_node(database, clock, sink):
    nodes = []

    async def make(*subs: Subscriber, start: bool = True, node_id: str = "n1", **webhook) -> Node:  # noqa: ANN003
        config = load_config(None, database_url=database.url, node_id=node_id,
                             webhook={"allow_private_urls": True, "timeout_seconds": 2.0,
                                      "retry": {"max_attempts": 4, "base_seconds": 1, "max_seconds": 60},
                                      **webhook},
                             dispatcher={"poll_seconds": 0.05}, approval=NO_APPROVAL)
        node = Node(config, clock=clock)
        if not nodes:
            await node.directory.import_data(directory(sink, *subs))
        nodes.append(node)
        if start:
            await node.start()
        return node

    yield make
    for node in nodes:
        await node.stop()


def cap(a) -> bytes:  # noqa: ANN001
    return alert_to_xml(a).encode()


async def states(node: Node, warning_id: int) -> dict[str, int]:
    w = await node.queries.warning(warning_id)
    return {state: n for by_state in w["deliveries_by_channel"].values() for state, n in by_state.items()}


async def test_a_warning_reaches_every_subscriber_signed_once(make_node, sink):
    node = await make_node()
    submitted, _ = await node.intake.submit(cap(alert()), XML, admin_scope())
    await until(lambda: _true(len(sink.records) == 2))
    assert await until(lambda: _eq(states(node, submitted.warning_id), {"delivered": 2}))
    assert sink.stats.unique == 2 and sink.stats.duplicates == 0 and sink.stats.rejected == 0
    tv = next(b for (path, _), b in sink.bodies.items() if path == "/tv")
    assert b"<identifier>W1</identifier>" in tv
    web = next(b for (path, _), b in sink.bodies.items() if path == "/web")
    assert b'"level": "red"' in web or b'"level":"red"' in web


async def test_the_same_warning_twice_is_one_resource_and_sends_once(make_node, sink):
    node = await make_node()
    first, _ = await node.intake.submit(cap(alert()), XML, admin_scope())
    again, _ = await node.intake.submit(cap(alert()), XML, admin_scope())
    assert (again.warning_id, again.created) == (first.warning_id, False)
    await until(lambda: _eq(states(node, first.warning_id), {"delivered": 2}))
    assert sink.stats.unique == 2


async def test_an_update_supersedes_pending_sends_so_no_stale_text_leaves(make_node, sink):
    node = await make_node(start=False)
    old, _ = await node.intake.submit(cap(alert("W1")), XML, admin_scope())
    ref = (Reference("dept@example.cn", "W1", "2026-07-01T00:00:00+00:00"),)
    new, _ = await node.intake.submit(cap(alert("W2", msg_type=MsgType.UPDATE, references=ref)), XML,
                                      admin_scope())
    assert await states(node, old.warning_id) == {"superseded": 2}
    detail = await node.queries.warning(old.warning_id)
    assert detail["state"] == "superseded"
    assert {c["state"] for c in detail["confirmations"]} == {"closed"}
    await node.start()
    await until(lambda: _eq(states(node, new.warning_id), {"delivered": 2}))
    assert len(sink.bodies) == 2
    assert all(b"W2" in body and b"<identifier>W1<" not in body and b'"W1"' not in body
               for body in sink.bodies.values())


async def test_an_old_send_in_flight_at_the_update_never_goes_out_again(make_node, clock, database):
    from warnd.domain.delivery import Decision, State
    from warnd.store.deliveries import Applied
    node = await make_node(start=False)
    old, _ = await node.intake.submit(cap(alert("W1")), XML, admin_scope())
    in_flight = DeliveryStore(database, clock, "n1/this-life")
    claimed = await in_flight.claim("webhook", 10, 60)
    ref = (Reference("dept@example.cn", "W1", "2026-07-01T00:00:00+00:00"),)
    await node.intake.submit(cap(alert("W2", msg_type=MsgType.UPDATE, references=ref)), XML, admin_scope())
    retry = Decision(State.PENDING, clock.now(), "http.503", "")
    await in_flight.apply([Applied(r.id, 1, clock.now(), clock.now(), retry, None) for r in claimed])
    assert {r.warning_id for r in await in_flight.claim("webhook", 10, 60)} == {old.warning_id + 1}
    await node.expire()
    assert await states(node, old.warning_id) == {"superseded": 2}


async def test_a_cancel_goes_to_those_who_had_the_warning(make_node, sink):
    node = await make_node()
    first, _ = await node.intake.submit(cap(alert("W1")), XML, admin_scope())
    await until(lambda: _eq(states(node, first.warning_id), {"delivered": 2}))
    ref = (Reference("dept@example.cn", "W1", "2026-07-01T00:00:00+00:00"),)
    cancel, _ = await node.intake.submit(cap(alert("W3", msg_type=MsgType.CANCEL, references=ref)), XML,
                                         admin_scope())
    await until(lambda: _eq(states(node, cancel.warning_id), {"delivered": 2}))
    detail = await node.queries.warning(first.warning_id)
    assert detail["state"] == "cancelled"
    assert sink.stats.unique == 4


async def test_retry_after_is_stored_and_honoured(make_node, sink, clock):
    sink.configure("/tv", fail_rate=1.0, fail_status=429, retry_after=30)
    node = await make_node()
    submitted, _ = await node.intake.submit(cap(alert()), XML, admin_scope())
    row = await until(lambda: _tv_row(node, lambda r: r.attempts == 1 and r.state == "pending"))
    assert row.next_attempt_at >= clock.now() + timedelta(seconds=30)
    assert row.last_code == "http.429"
    sink.configure("/tv", reset=True)
    clock.advance(31)
    await until(lambda: _eq(states(node, submitted.warning_id), {"delivered": 2}))


async def test_a_permanent_error_fails_at_once_without_retry(make_node, sink):
    sink.configure("/tv", status=410)
    node = await make_node()
    await node.intake.submit(cap(alert()), XML, admin_scope())
    row = await until(lambda: _tv_row(node, lambda r: r.state == "failed"))
    assert (row.attempts, row.last_code) == (1, "http.410")


async def test_a_dead_nodes_claims_are_resent_when_receivers_dedupe(make_node, sink, clock, database):
    node = await make_node(start=False, node_id="n1")
    submitted, _ = await node.intake.submit(cap(alert()), XML, admin_scope())
    dead = DeliveryStore(database, clock, "n1/previous-life")
    assert len(await dead.claim("webhook", 10, lease_seconds=600)) == 2
    await node.start()  # same node id, new incarnation: recovers its own old claims at once
    await until(lambda: _eq(states(node, submitted.warning_id), {"delivered": 2}))


async def test_handed_claims_of_channels_that_do_not_dedupe_become_uncertain(make_node, clock, database):
    node = await make_node(start=False)
    await node.intake.submit(cap(alert()), XML, admin_scope())
    dead = DeliveryStore(database, clock, "other/1")
    claimed = await dead.claim("webhook", 10, lease_seconds=60)
    assert await dead.hand([claimed[0].id]) == {claimed[0].id}  # one reached the provider's door, one did not
    clock.advance(61)  # the lease ran out
    counts = await DeliveryStore(database, clock, "n1/now").recover("n1", dedupe_channels=set())
    assert counts == {"unsent": 1, "resent": 0, "uncertain": 1}


async def test_a_claim_this_process_lost_track_of_is_recovered_once_its_lease_ran_out(make_node, clock, database):
    node = await make_node(start=False)
    await node.intake.submit(cap(alert()), XML, admin_scope())
    await node.deliveries.claim("webhook", 10, lease_seconds=60)  # claimed, never sent nor written
    clock.advance(59)
    assert await node.deliveries.recover("n1", dedupe_channels={"webhook"}) == {"unsent": 0, "resent": 0,
                                                                                "uncertain": 0}
    clock.advance(2)
    assert await node.deliveries.recover("n1", dedupe_channels={"webhook"}) == {"unsent": 2, "resent": 0,
                                                                                "uncertain": 0}


def test_a_lease_shorter_than_a_send_is_refused():
    with pytest.raises(WarndError, match="lease_seconds"):
        load_config(None, dispatcher={"lease_seconds": 30}, voice={"timeout_seconds": 25})


async def test_two_nodes_never_claim_the_same_delivery(make_node, clock, database, sink):
    subs = tuple(Subscriber(f"s{i}", sink.url(f"/s{i}"), SECRET) for i in range(300))
    node = await make_node(*subs, start=False)
    await node.intake.submit(cap(alert()), XML, admin_scope())
    a, b = DeliveryStore(database, clock, "a/1"), DeliveryStore(database, clock, "b/1")
    got_a, got_b = [], []

    async def drain(store: DeliveryStore, into: list) -> None:
        while batch := await store.claim("webhook", 7, 60):
            into += [r.id for r in batch]

    await asyncio.gather(drain(a, got_a), drain(b, got_b))
    assert not set(got_a) & set(got_b)
    assert len(got_a) + len(got_b) == 300


async def test_red_is_claimed_before_an_earlier_blue_fan_out(make_node, clock, database, sink):
    subs = tuple(Subscriber(f"s{i}", sink.url(f"/s{i}"), SECRET) for i in range(50))
    node = await make_node(*subs, start=False)
    await node.intake.submit(cap(alert("BLUE", severity="Minor")), XML, admin_scope())
    clock.advance(1)
    await node.intake.submit(cap(alert("RED", severity="Extreme")), XML, admin_scope())
    claimed = await DeliveryStore(database, clock, "x/1").claim("webhook", 60, 60)
    assert [r.priority for r in claimed[:50]] == [int(Level.RED)] * 50


async def test_a_red_warning_overtakes_a_rate_limited_blue_fan_out(make_node, sink):
    subs = tuple(Subscriber(f"s{i}", sink.url(f"/s{i}"), SECRET) for i in range(40))
    node = await make_node(*subs, rate_per_second=20)  # 5 rows claimed ahead (a quarter second)
    await node.intake.submit(cap(alert("BLUE", severity="Minor")), XML, admin_scope())
    await until(lambda: _true(len(sink.received()) >= 5))
    await node.intake.submit(cap(alert("RED", severity="Extreme")), XML, admin_scope())
    blue_before = len(sink.received())
    await until(lambda: _true(len(sink.received()) == 80), timeout=30)
    red = ["RED" in sink.bodies[(r.path, r.id)].decode() for r in sink.received()]
    last_red = max(i for i, is_red in enumerate(red) if is_red)
    # the blue rows claimed when the red one came in go first, the 30-odd others after it
    assert red[blue_before:last_red + 1].count(False) <= 8, red


async def _true(value: bool) -> bool:
    return value


async def test_expiry_ends_pending_sends_and_open_confirmations(make_node, clock):
    node = await make_node(start=False)
    submitted, _ = await node.intake.submit(cap(alert(expires=clock.now() + timedelta(hours=1))), XML,
                                            admin_scope())
    clock.advance(2 * 3600)
    await node.expire()
    detail = await node.queries.warning(submitted.warning_id)
    assert detail["state"] == "expired"
    assert await states(node, submitted.warning_id) == {"expired": 2}
    assert {c["state"] for c in detail["confirmations"]} == {"closed"}


async def test_out_of_scope_is_refused_and_nothing_is_stored(make_node):
    node = await make_node(start=False)
    weather = Scope("县气象局", ("暴雨",), ("421126",), Level.ORANGE, senders=(SENDER,))
    with pytest.raises(WarndError) as err:
        await node.intake.submit(cap(alert(severity="Extreme")), XML, weather)
    assert err.value.code == "auth.level_out_of_scope"
    with pytest.raises(WarndError) as err:
        await node.intake.submit(cap(alert(severity="Severe", event="山洪")), XML, weather)
    assert err.value.code == "auth.event_out_of_scope"
    with pytest.raises(WarndError) as err:
        await node.intake.submit(cap(alert(severity="Severe", codes=("110101",))), XML, weather)
    assert err.value.code == "auth.region_out_of_scope"
    assert await node.queries.warnings() == []
    async with node.db.read() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(deliveries))).scalar() == 0


async def test_the_audit_log_is_an_intact_hash_chain(make_node):
    node = await make_node(start=False)
    await node.intake.submit(cap(alert("A1")), XML, admin_scope())
    await node.intake.submit(cap(alert("A2")), XML, admin_scope())
    assert await audit.verify(node.db) is None
    with pytest.raises(sa.exc.DatabaseError):  # the database refuses to rewrite the record
        async with node.db.write() as conn:
            await conn.execute(sa.text("UPDATE audit_log SET actor = 'mallory' WHERE id = 1"))
    async with node.db.write() as conn:  # someone with the database's owner rights drops the guard
        for statement in audit.DROP_APPEND_ONLY[conn.dialect.name]:
            await conn.execute(sa.text(statement))
        await conn.execute(sa.text("UPDATE audit_log SET actor = 'mallory' WHERE id = 1"))
    assert (await audit.verify(node.db)).id == 1


async def _true(value: bool) -> bool:
    return value


async def _eq(coro, expected) -> bool:  # noqa: ANN001
    return (await coro) == expected


async def _tv_row(node: Node, check):  # noqa: ANN001, ANN202
    async with node.db.read() as conn:
        row = (await conn.execute(sa.select(deliveries).where(deliveries.c.recipient_id == "tv"))).first()
    return row if row is not None and check(row) else None


async def test_a_drill_reaches_no_outlet_made_public_after_planning(make_node, sink, database):
    """Planning keeps drills from public outlets; the dispatcher checks once more before each
    send (the one place after planning): a subscriber flagged public meanwhile gets nothing."""
    node = await make_node(Subscriber("tv", sink.url("/tv"), SECRET, public=False), start=False)
    await node.intake.submit(cap(alert(status=Status.EXERCISE)), XML, admin_scope())
    async with database.write() as conn:
        await conn.execute(sa.text("UPDATE subscribers SET public = :t"), {"t": True})
    await node.start()
    d = deliveries.c

    async def failed():  # noqa: ANN202
        async with database.read() as conn:
            return (await conn.execute(sa.select(d.state, d.last_code))).all()
    assert await until(lambda: _settled(failed)) == [("failed", "drill.public")]
    assert sink.stats.requests == 0


async def _settled(rows):  # noqa: ANN001, ANN202
    found = await rows()
    return found if found and all(state != "pending" and state != "sending" for state, _ in found) else None
