"""Provider limits end to end, on SQLite and PostgreSQL: two nodes on one database keep to
one SMS rate counted in segments; a send over a per-number cap waits and is not dropped;
a call Twilio refused (429) is tried again after its Retry-After without using a redial.
Real parts: the database, warnd's dispatcher, the twilio SDK against the simulator, the
HTTP endpoints for the status callbacks. Waits are bounded polls; the rate is checked
with wide margins over the whole run (exact figures belong in bench/)."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestServer
from factories import NO_APPROVAL, VILLAGE, alert
from test_engine import until
from test_twilio_flow import FROM, SID, TOKEN, XML, directory, free_port, live, phone

from warnd.clock import ManualClock
from warnd.config import load_config
from warnd.domain.authority import admin_scope
from warnd.domain.rate_limit import CAP_MARGIN_SECONDS, burst_seconds
from warnd.engine.node import Node
from warnd.http.app import build_app
from warnd.ingest.capxml import alert_to_xml
from warnd.sim.twilio import TwilioSimulator
from warnd.sim.twilio_behaviour import Scenario
from warnd.store.migrate import upgrade
from warnd.store.rate_limits import LimitStore
from warnd.store.schema import attempts, deliveries, number_sends

QUIET = {"sent_after": 3600, "deliver_after": 3600}  # no status callbacks during a run


@pytest.fixture
async def sim():
    s = TwilioSimulator(SID, TOKEN, Scenario())
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def nodes(db_url, sim):
    """Start a node (its id, channel settings, clock) on the shared database, served on its own port."""
    await asyncio.to_thread(upgrade, db_url)
    started: list[tuple[Node, TestServer]] = []

    async def start(node_id: str, *, clock=None, people: int = 0, **channels) -> Node:  # noqa: ANN001, ANN003
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        enabled = {name: {"enabled": name in channels, **channels.get(name, {})} for name in ("sms", "voice")}
        config = load_config(
            None, database_url=db_url, public_base_url=base, port=port, node_id=node_id,
            twilio={"account_sid": SID, "auth_token": TOKEN, "api_base_url": sim.base_url, "from_number": FROM},
            webhook={"enabled": False}, **enabled,
            dispatcher={"poll_seconds": 0.05}, ladders={},
            routing=[{"levels": ["red"], "channels": list(channels), "roles": ["grid_responsible"]}],
            approval=NO_APPROVAL)
        node = Node(config, clock=clock)
        if people:
            await node.directory.import_data(directory(people))
        server = TestServer(build_app(node), host="127.0.0.1", port=port)
        await server.start_server()
        await node.start()
        started.append((node, server))
        return node

    yield start
    for node, server in started:
        await node.stop()
        await server.close()


async def rows(node: Node, table, *where) -> list:  # noqa: ANN001
    async with node.db.read() as conn:
        return (await conn.execute(sa.select(table).where(*where).order_by(*table.primary_key))).all()


async def _true(value: bool) -> bool:
    return value


# --- one rate for every node, in segments ------------------------------------------------------------

RATE = 40.0  # segments a second, for both nodes together
PEOPLE = 40


async def test_two_nodes_on_one_database_keep_to_one_sms_rate_counted_in_segments(nodes, sim):
    sim.scenario.update({"default": QUIET})
    sms = {"rate_per_second": RATE, "concurrency": 8}
    a = await nodes("a", people=PEOPLE, sms=sms)
    await nodes("b", sms=sms)  # the second node: it only claims and sends
    await a.intake.submit(live(), XML, admin_scope())
    await until(lambda: _true(len(sim.messages) >= PEOPLE), timeout=60)

    sent = sorted(sim.messages.values(), key=lambda m: m.created_at)
    assert len(sent) == PEOPLE and set(sim.counts_by_to().values()) == {1}  # each once, none lost
    segments = [m.segments for m in sent]
    assert min(segments) >= 2  # a red warning in Chinese with its link: several UCS-2 segments
    total = sum(segments)
    # Between the first send and the last, the two nodes had at most RATE cells a second, the
    # burst, and what each may owe of one message's segments for a moment.
    slack = RATE * burst_seconds(RATE) + 2 * max(segments)
    elapsed = sent[-1].created_at - sent[0].created_at
    assert elapsed >= 0.8 * (total - max(segments) - slack) / RATE, (elapsed, total)
    busiest = max(sum(m.segments for m in sent if start.created_at <= m.created_at < start.created_at + 1)
                  for start in sent)
    assert busiest <= 1.25 * (RATE + slack), busiest  # one node alone at the rate would be ~2×, per message ~3×
    senders = {r.node.split("/")[0] for r in await rows(a, attempts)}
    assert senders == {"a", "b"}  # both took part


async def test_reserved_cells_follow_each_other_across_nodes(database):
    one, two = LimitStore(database, "a/1"), LimitStore(database, "b/1")
    first = await one.reserve("sms", 10, 10.0, now=1000.0, burst=0.1)
    assert first == pytest.approx(999.9)  # idle: the burst before now
    assert await two.reserve("sms", 5, 10.0, now=1000.0, burst=0.1) == pytest.approx(1000.9)  # after a's second
    assert await one.reserve("sms", 1, 10.0, now=1000.0, burst=0.1) == pytest.approx(1001.4)
    assert await one.reserve("voice", 1, 1.0, now=1000.0, burst=1.0) == pytest.approx(999.0)  # its own limit
    assert await two.reserve("sms", 1, 10.0, now=2000.0, burst=0.1) == pytest.approx(1999.9)  # idle again


# --- caps per called number -------------------------------------------------------------------------

async def test_a_send_over_a_per_number_cap_waits_for_it_without_using_an_attempt(nodes, sim):
    sim.scenario.update({"default": QUIET})
    clock = ManualClock()
    node = await nodes("a", clock=clock, people=1,
                       sms={"rate_per_second": 1000, "per_number": {"minute": 1, "hour": 2, "day": 10}})
    mine = deliveries.c.address == phone(0)

    async def submit(identifier: str) -> None:
        await node.intake.submit(alert_to_xml(alert(identifier, codes=(VILLAGE,))).encode(), XML, admin_scope())

    await submit("W-A")
    await until(lambda: _true(len(sim.messages_to(phone(0))) == 1))
    t_a = clock.now()
    clock.advance(10)
    await submit("W-B")  # the same person, ten seconds later: over the minute cap
    [deferred] = await until(lambda: rows(node, deliveries, mine, deliveries.c.last_code == "limit.per_number"))
    assert (deferred.state, deferred.attempts) == ("pending", 0)  # queued again, the claim's attempt given back
    assert deferred.next_attempt_at == t_a + timedelta(seconds=60 + CAP_MARGIN_SECONDS)
    assert "1 per minute" in deferred.last_detail
    assert not await rows(node, attempts, attempts.c.delivery_id == deferred.id)  # no attempt was made

    clock.set(deferred.next_attempt_at)
    node.dispatcher.wake()
    await until(lambda: _true(len(sim.messages_to(phone(0))) == 2))
    [sent] = await until(lambda: rows(node, deliveries, deliveries.c.id == deferred.id,
                                      deliveries.c.state == "sent"))
    assert sent.attempts == 1

    clock.advance(120)
    await submit("W-C")  # the hour cap (2) is full until an hour after the first
    [third] = await until(lambda: rows(node, deliveries, mine, deliveries.c.last_code == "limit.per_number",
                                       deliveries.c.id != deferred.id))
    assert third.next_attempt_at == t_a + timedelta(seconds=3600 + CAP_MARGIN_SECONDS)
    assert "2 per hour" in third.last_detail
    [history] = await rows(node, number_sends, number_sends.c.address == phone(0))
    assert history.channel == "sms" and len(history.sends.split()) == 2
    assert len(sim.messages_to(phone(0))) == 2  # nothing dropped, nothing early


# --- refusals are not redials -----------------------------------------------------------------------

async def test_a_call_twilio_refused_is_retried_per_retry_after_without_using_a_redial(nodes, sim):
    sim.scenario.update({"speed": 20, "faults": {"rate_429": 1.0, "retry_after": 4}})
    clock = ManualClock()
    # One call and one redial; at most one call a minute to a number: refusals use up neither.
    node = await nodes("a", clock=clock, people=1,
                       voice={"rate_per_second": 1000, "ring_seconds": 5, "per_number": {"minute": 1},
                              "retry": {"max_attempts": 2, "base_seconds": 100, "max_seconds": 100}})
    await node.intake.submit(alert_to_xml(alert("W-A", codes=(VILLAGE,))).encode(), XML, admin_scope())
    mine = deliveries.c.address == phone(0)
    for refusal in range(1, 4):
        await until(lambda n=refusal: _count(node, attempts, n))
        [row] = await until(lambda: rows(node, deliveries, mine, deliveries.c.state == "pending"))
        assert (row.attempts, row.last_code) == (0, "twilio.20429")
        assert row.next_attempt_at == clock.now() + timedelta(seconds=4)  # Retry-After, not the redial schedule
        if refusal == 3:  # the fourth try rings, and is not answered
            sim.scenario.update({"faults": {"rate_429": 0.0}, "numbers": {phone(0): {"call": "no-answer"}}})
        clock.advance(5)
        node.dispatcher.wake()

    # Its receipt asks for a redial, and one is left: the three refusals used none.
    [row] = await until(lambda: rows(node, deliveries, mine, deliveries.c.last_code == "twilio.no-answer"),
                        timeout=30)
    assert (row.state, row.attempts) == ("pending", 1)
    assert sim.stats.injected_429 == 3 and len(sim.calls_to(phone(0))) == 1
    logged = [(a.attempt, a.outcome, a.code) for a in await rows(node, attempts)]
    assert logged == [(1, "pending", "twilio.20429")] * 3 + [(1, "sent", "twilio.queued")]


async def _count(node: Node, table, n: int) -> bool:  # noqa: ANN001
    return len(await rows(node, table)) >= n
