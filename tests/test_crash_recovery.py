"""What a crash costs (issue 10): claims a dead node never handed to the provider go out
again at once; SMS and calls it handed are asked about at Twilio (the simulator, through
the real SDK) before anything is sent again; a node that stops beating has its claims
taken over within `takeover_seconds`, a live node never; a speaker command published
late is given its full ack time from that publish. Real databases (SQLite and
PostgreSQL), real simulators; manual clocks where the store allows, bounded polls else."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestServer
from factories import COUNTY, NO_APPROVAL, T0, TOWNSHIP, VILLAGE, alert
from test_engine import cap, until
from test_twilio_flow import FROM, SID, TOKEN, XML, directory, free_port, live, phone

from warnd.clock import ManualClock, ScaledClock
from warnd.config import load_config
from warnd.domain.authority import admin_scope
from warnd.domain.delivery import Decision, State
from warnd.domain.directory import Person, Region, Speaker
from warnd.clock import provider_time
from warnd.engine.node import Node
from warnd.http.app import build_app
from warnd.ingest.directory import DirectoryData
from warnd.sim.twilio import TwilioSimulator
from warnd.sim.twilio_behaviour import Scenario
from warnd.store.deliveries import Applied, DeliveryStore, after_crash
from warnd.store.migrate import upgrade
from warnd.store.nodes import NodeStore
from warnd.store.schema import confirmations, deliveries
from warnd.store.schema import inbound as inbound_table
from warnd_channels.twilio_common import ProviderSend, Receipt, pick, send_window

# --- the pure decisions ----------------------------------------------------------------


@pytest.mark.parametrize("handed,dedupes,fate", [(False, False, "unsent"), (False, True, "unsent"),
                                                 (True, True, "resent"), (True, False, "uncertain")])
def test_a_dead_claim_is_queued_again_unless_it_was_handed_where_a_duplicate_is_real(handed, dedupes, fate):
    assert after_crash(handed, dedupes) == fate


def _sent(sid: str, seconds: float) -> ProviderSend:
    return ProviderSend(sid, T0 + timedelta(seconds=seconds), Receipt("sent", "twilio.sent", sid))


def test_a_provider_send_is_matched_within_its_window_once_and_never_one_a_delivery_owns():
    a = (1, *send_window(T0, T0, T0, 15))  # handed at T0, may have been created until T0+15 (+ skew)
    b = (2, *send_window(T0 + timedelta(seconds=1), T0, T0, 15))
    sends = [_sent("SMowned", 0.5), _sent("SMfirst", 1), _sent("SMlate", 60)]
    picked = pick([b, a], sends, taken={"SMowned"})
    assert picked[1].sid == "SMfirst" and picked[2] is None  # one send is one delivery's; 60 s is too late
    assert pick([a], [_sent("SMbefore", -30)], set()) == {1: None}


def test_a_simulations_scaled_time_is_turned_into_the_providers_real_time_for_matching():
    scaled = ScaledClock(10.0, 1_000_000.0, T0)  # ten simulated seconds a real one
    assert provider_time(scaled, T0 + timedelta(seconds=100)) == datetime.fromtimestamp(1_000_010.0, timezone.utc)
    assert provider_time(ManualClock(), T0) == T0


# --- stores on both databases, a manual clock --------------------------------------------


def sms_config(url: str, **dispatcher) -> object:  # noqa: ANN003
    return load_config(None, database_url=url, node_id="n1", webhook={"enabled": False},
                       twilio={"account_sid": SID, "auth_token": TOKEN, "api_base_url": "http://127.0.0.1:9",
                               "from_number": FROM},
                       sms={"enabled": True}, dispatcher=dispatcher,
                       routing=[{"levels": ["red"], "channels": ["sms"], "roles": ["grid_responsible"]}],
                       approval=NO_APPROVAL)


@pytest.fixture
async def planned(database, clock):
    """A node that is not started, with 4 red SMS planned (its database, its clock)."""
    node = Node(sms_config(database.url), clock=clock)
    await node.directory.import_data(directory(4))
    await node.intake.submit(cap(alert()), XML, admin_scope())
    yield node
    await node.stop()


async def rows(db, *where) -> dict[int, sa.Row]:  # noqa: ANN001
    async with db.read() as conn:
        return {r.id: r for r in await conn.execute(sa.select(deliveries).where(*where).order_by(deliveries.c.id))}


async def test_a_dead_nodes_unhanded_claims_are_queued_again_with_their_attempt_given_back(planned, clock):
    nodes = NodeStore(planned.db, clock)
    await nodes.register("n2/dead", "n2")
    dead = DeliveryStore(planned.db, clock, "n2/dead")
    claimed = await dead.claim("sms", 10, lease_seconds=600)
    await dead.hand([claimed[0].id])  # one was on its way to Twilio when n2 died
    await nodes.stopped("n2/dead")  # (a kill leaves its beats behind instead: see below)
    await planned.recover()  # one sweep, the lease far from over
    after = await rows(planned.db)
    unsent = [after[r.id] for r in claimed[1:]]
    assert {(r.state, r.attempts, r.claimed_by) for r in unsent} == {("pending", 0, None)}
    assert all(r.next_attempt_at <= clock.now() for r in unsent)
    assert (after[claimed[0].id].state, after[claimed[0].id].attempts) == ("uncertain", 1)


async def test_a_silent_nodes_claims_are_taken_over_after_takeover_seconds_and_a_live_nodes_never(planned, clock):
    nodes = NodeStore(planned.db, clock)
    await nodes.register(planned.incarnation, "n1")  # the node that sweeps
    await nodes.register("n2/a", "n2")
    await nodes.register("n3/b", "n3")
    silent, live_ = DeliveryStore(planned.db, clock, "n2/a"), DeliveryStore(planned.db, clock, "n3/b")
    mine = {r.id for r in await silent.claim("sms", 2, lease_seconds=600)}
    theirs = {r.id for r in await live_.claim("sms", 2, lease_seconds=600)}
    for second in range(1, 31):  # n3 beats every 2 s, n2 never again; the takeover time is 10 s
        clock.advance(1)
        if second % 2 == 0:
            assert await nodes.beat("n3/b")
            assert await nodes.beat(planned.incarnation)
        await planned.heartbeat()
        now = await rows(planned.db)
        assert {i for i in theirs if now[i].state == "sending"} == theirs  # a live node's: never taken
        taken = {i for i in mine if now[i].state != "sending"}
        assert taken == (mine if second > 10 else set()), second
    assert await silent.hand(sorted(mine)) == set()  # should n2 wake up: those are no longer its to send
    assert await live_.hand(sorted(theirs)) == theirs


def test_a_takeover_must_outlast_a_few_heartbeats():
    with pytest.raises(Exception, match="takeover_seconds"):
        load_config(None, dispatcher={"heartbeat_seconds": 5, "takeover_seconds": 10})


# --- SMS and calls against the Twilio simulator, through the real SDK -------------------


@pytest.fixture
async def twilio_node(db_url):
    """Start (n, channels, scenario, **dispatcher) → (node, simulator); nothing dispatched until
    the test starts the dispatcher; sweeps only when the test runs them (bar the heartbeat)."""
    started = []

    async def start(n: int, channels: list[str], scenario: dict | None = None, node_id: str = "n1",  # noqa: ANN202
                    lookup_after: float = 0.0, recover_every: float = 3600.0, sim: TwilioSimulator | None = None,
                    **dispatcher):  # noqa: ANN003
        port = free_port()
        if sim is None:  # else: the same Twilio for a node started again
            plan = Scenario()
            plan.update(scenario or {})
            sim = TwilioSimulator(SID, TOKEN, plan)
            await sim.start()
        sim_url = sim.base_url
        upgrade(db_url)
        config = load_config(
            None, database_url=db_url, public_base_url=f"http://127.0.0.1:{port}", port=port, node_id=node_id,
            twilio={"account_sid": SID, "auth_token": TOKEN, "api_base_url": sim_url, "from_number": FROM,
                    "lookup_uncertain_after_seconds": lookup_after},
            sweeps={"recover_seconds": recover_every, "reconcile_seconds": 3600},
            sms={"enabled": "sms" in channels, "rate_per_second": 5000, "concurrency": 8},
            voice={"enabled": "voice" in channels, "rate_per_second": 5000, "ring_seconds": 5},
            webhook={"enabled": False}, dispatcher={"poll_seconds": 0.05, **dispatcher},
            routing=[{"levels": ["red"], "channels": channels, "roles": ["grid_responsible"]}],
            approval=NO_APPROVAL)
        node = Node(config)
        if not started:
            await node.directory.import_data(directory(n))
        server = TestServer(build_app(node), host="127.0.0.1", port=port)
        await server.start_server()
        await node.start(dispatch=False)
        started.append((node, server, sim))
        return node, sim

    yield start
    for node, server, sim in started:
        await node.stop()
        await server.close()
        await sim.stop()  # (twice for a shared one: harmless)


async def states(node: Node) -> dict[str, int]:
    async with node.db.read() as conn:
        got = await conn.execute(sa.select(deliveries.c.state, sa.func.count()).group_by(deliveries.c.state))
        return dict(got.all())


async def _settled(node: Node, n: int) -> bool:
    s = await states(node)
    return s.get("delivered", 0) + s.get("sent", 0) >= n


async def kill_during_fan_out(node: Node, channel: str, handed: int) -> list:
    """A dead earlier life of this node ("n1/old") claimed every send and handed the first
    `handed` of them to Twilio before it was killed: nothing written since."""
    await NodeStore(node.db, node.clock).register("n1/old", "n1")
    dead = DeliveryStore(node.db, node.clock, "n1/old")
    claimed = await dead.claim(channel, 100, lease_seconds=600)
    await dead.hand([r.id for r in claimed[:handed]])
    return claimed


async def test_sends_a_kill_left_unhanded_go_out_once_within_one_recover_sweep(twilio_node):
    node, sim = await twilio_node(5, ["sms"])
    await node.intake.submit(live(), XML, admin_scope())
    claimed = await kill_during_fan_out(node, "sms", handed=0)
    await node.recover()  # the sweep a restart runs first: no lease to wait for
    assert await states(node) == {"pending": 5}
    await node.dispatcher.start()
    await until(lambda: _settled(node, 5), timeout=30)
    assert sorted(sim.counts_by_to().items()) == sorted((r.address, 1) for r in claimed)
    after = (await rows(node.db)).values()
    assert {r.attempts for r in after} == {1}
    assert all(r.handed_at is not None and r.handed_at <= r.sent_at for r in after)  # marked before the send


async def _create_at_twilio(node: Node, channel: str, to: str) -> str:
    """What the dead node's send did before the kill: Twilio took it (no status callback
    reaches warnd: it was down), through the very client the channel uses."""
    client = node.channels[channel].api.client
    if channel == "sms":
        return (await client.messages.create_async(to=to, from_=FROM, body="【县预警中心】before the kill")).sid
    return (await client.calls.create_async(to=to, from_=FROM, twiml="<Response><Say>x</Say></Response>")).sid


@pytest.mark.parametrize("channel", ["sms", "voice"])
async def test_handed_sends_are_settled_at_twilio_not_resent_and_never_resent_blind_while_it_is_down(
        twilio_node, channel):
    node, sim = await twilio_node(3, [channel], {"speed": 20})
    await node.intake.submit(live(), XML, admin_scope())
    claimed = await kill_during_fan_out(node, channel, handed=2)
    at_twilio, lost, never_handed = claimed
    sid = await _create_at_twilio(node, channel, at_twilio.address)
    created = sim.messages if channel == "sms" else sim.calls
    await until(lambda: _true(created[sid].status not in ("queued", "accepted")))  # Twilio sent / dialled it
    sim.scenario.update({"faults": {"rate_5xx": 1.0}})  # Twilio's API answers 500/503 from now on
    for sweep in range(3):  # the uncertain ones are neither settled nor sent again while Twilio is down
        await node.recover()
        assert await states(node) == {"uncertain": 2, "pending": 1}
        assert sim.stats.injected_5xx == 2 * (sweep + 1)  # one lookup per number a sweep, refused
    assert len(created) == 1
    sim.scenario.update({"faults": {"rate_5xx": 0.0}})
    await node.recover()  # Twilio answers: one it has (settled), one it never got (queued now)
    assert (await states(node)).get("uncertain", 0) == 0
    await node.dispatcher.start()
    await until(lambda: _settled(node, 3), timeout=30)
    after = await rows(node.db)
    assert (after[at_twilio.id].provider_ref, after[at_twilio.id].attempts) == (sid, 1)
    assert after[at_twilio.id].last_code != "uncertain_resent"
    assert (after[lost.id].attempts, after[never_handed.id].attempts) == (2, 1)
    per_number = sim.counts_by_to() if channel == "sms" else {r.address: len(sim.calls_to(r.address))
                                                              for r in claimed}
    assert {r.address: per_number[r.address] for r in claimed} == {r.address: 1 for r in claimed}


async def _true(value: bool) -> bool:
    return value


async def test_the_simulators_lists_filter_and_page_like_twilio_through_the_sdk(twilio_node):
    node, sim = await twilio_node(1, ["sms"])
    client = node.channels["sms"].api.client
    sids = [(await client.messages.create_async(to=phone(0), from_=FROM, body=f"m{i}")).sid for i in range(7)]
    await client.messages.create_async(to=phone(1), from_=FROM, body="another number")
    await until(lambda: _true(all(sim.messages[s].sent_at for s in sids)))
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    lists_before = sim.stats.lists  # (the start's look for replies missed while down is one)
    listed = [m.sid async for m in await client.messages.stream_async(to=phone(0), date_sent_after=today, page_size=3)]
    assert listed == sids[::-1] and sim.stats.lists - lists_before == 3  # newest first, three pages
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%d")
    assert await client.messages.list_async(to=phone(0), date_sent_after=tomorrow) == []


async def test_a_silent_nodes_claims_are_sent_by_another_node_once_its_beats_are_takeover_seconds_old(
        twilio_node):
    node, sim = await twilio_node(4, ["sms"], heartbeat_seconds=0.1, takeover_seconds=1.0, lease_seconds=600)
    await node.intake.submit(live(), XML, admin_scope())
    nodes = NodeStore(node.db, node.clock)
    await nodes.register("n2/killed", "n2")  # another node: its last beat is now, then it is killed
    dead = DeliveryStore(node.db, node.clock, "n2/killed")
    claimed = await dead.claim("sms", 100, lease_seconds=600)
    await dead.hand([claimed[0].id])
    beat = next(n for n in await nodes.all() if n["incarnation"] == "n2/killed")["heartbeat_at"]
    await node.dispatcher.start()  # no recover sweep runs (an hour): the heartbeat takes over
    await until(lambda: _settled(node, 3), timeout=10)
    after = await rows(node.db)
    first = min(after[r.id].sent_at for r in claimed[1:])
    assert first - beat >= timedelta(seconds=1.0)  # not before the takeover time …
    assert first - beat < timedelta(seconds=5.0)  # … and not a lease (600 s) later
    assert after[claimed[0].id].state == "uncertain"  # handed: Twilio is asked first (the recover sweep)


async def test_time_from_a_restart_to_the_first_sms_of_rows_a_kill_left_claimed(twilio_node):
    """The figure for the README: a kill 45 s ago left 20 SMS claimed, 4 of them handed to
    Twilio (not there); the node starts again and sends them."""
    node, sim = await twilio_node(20, ["sms"], lookup_after=10.0)
    await node.intake.submit(live(), XML, admin_scope())
    claimed = await kill_during_fan_out(node, "sms", handed=4)
    async with node.db.write() as conn:  # the kill was 45 s ago: so were the claims and hands
        await conn.execute(sa.update(deliveries).values(
            handed_at=sa.case((deliveries.c.handed_at.is_not(None),
                               datetime.now(timezone.utc) - timedelta(seconds=45)), else_=None)))
    await node.stop()
    restart = time.time()  # the process starts again: a new node, the same id, database and Twilio
    node2, _ = await twilio_node(20, ["sms"], lookup_after=10.0, sim=sim)
    await node2.dispatcher.start()
    await until(lambda: _settled(node2, 20), timeout=30)
    by_to = {}
    for m in sim.messages.values():
        by_to.setdefault(m.to, []).append(m.created_at)
    handed = {r.address for r in claimed[:4]}
    first_unhanded = min(t for to, ts in by_to.items() if to not in handed for t in ts) - restart
    first_handed = min(t for to, ts in by_to.items() if to in handed for t in ts) - restart
    print(f"\nrestart → first SMS: never handed {first_unhanded * 1000:.0f} ms, "
          f"handed and not at Twilio {first_handed * 1000:.0f} ms")
    assert set(sim.counts_by_to().values()) == {1} and len(sim.messages) == 20
    assert first_unhanded < 5 and first_handed < 5


# --- speakers: the ack timeout runs from the publish ------------------------------------


def speaker_directory() -> DirectoryData:
    grid = VILLAGE + "001"
    return DirectoryData(
        regions=(Region(COUNTY, "示例县", "county"), Region(TOWNSHIP, "城关镇", "township", COUNTY),
                 Region(VILLAGE, "河口村", "village", TOWNSHIP), Region(grid, "一组", "grid", VILLAGE)),
        people=(Person("p1", "张三", grid, ("grid_responsible",), "+8613800000001"),),
        speakers=(Speaker("spk-1", grid),))


@pytest.fixture
async def speaker_node(database, clock):
    config = load_config(None, database_url=database.url, node_id="n1", webhook={"enabled": False},
                         speaker={"enabled": True, "ack_timeout_seconds": 120},
                         routing=[{"levels": ["red"], "channels": ["speaker"]}], approval=NO_APPROVAL)
    node = Node(config, clock=clock)
    await node.directory.import_data(speaker_directory())
    await node.intake.submit(cap(alert()), XML, admin_scope())
    yield node
    await node.stop()


async def uncovered(node: Node) -> list[str]:
    await node.speakers.mark_uncovered()
    async with node.db.read() as conn:
        return list((await conn.execute(sa.select(confirmations.c.uncovered_reason)
                                        .where(confirmations.c.uncovered_at.is_not(None)))).scalars())


def result(row, state: State, at: datetime, code: str) -> Applied:  # noqa: ANN001
    return Applied(row.id, row.attempts, at, at, Decision(state, None if state is not State.PENDING else at,
                                                          code, ""), None)


async def test_a_speaker_published_late_after_a_restart_gets_its_full_ack_time_from_that_publish(
        speaker_node, clock):
    dead = DeliveryStore(speaker_node.db, clock, "n1/old")
    assert len(await dead.claim("speaker", 10, lease_seconds=600)) == 1  # then killed, before publishing
    clock.advance(300)  # down for five minutes: longer than the ack timeout
    assert await uncovered(speaker_node) == []  # never published: nothing a speaker could have acked
    again = DeliveryStore(speaker_node.db, clock, "n1/new")
    assert (await again.recover("n1", {"speaker"}))["unsent"] == 1
    (row,) = await again.claim("speaker", 10, lease_seconds=600)
    await again.apply([result(row, State.SENT, clock.now(), "mqtt.puback")])  # published now, T+300
    clock.advance(119)
    assert await uncovered(speaker_node) == []
    clock.advance(2)
    assert await uncovered(speaker_node) == ["no_played_ack"]


async def test_a_speaker_command_the_broker_kept_refusing_still_times_out_from_the_first_try(speaker_node, clock):
    store = DeliveryStore(speaker_node.db, clock, "n1/x")
    (row,) = await store.claim("speaker", 10, lease_seconds=600)
    await store.apply([result(row, State.PENDING, clock.now(), "mqtt.disconnected")])  # retried later
    clock.advance(119)
    assert await uncovered(speaker_node) == []
    clock.advance(2)
    assert await uncovered(speaker_node) == ["no_played_ack"]


# --- replies Twilio took while warnd was down --------------------------------------------


async def _confirmations(node: Node) -> dict[str, tuple[int, str, datetime | None]]:
    """person → (warning id, state, confirmed_at) of their requirements, newest warning last."""
    c = confirmations.c
    async with node.db.read() as conn:
        found = await conn.execute(sa.select(c.person_id, c.warning_id, c.state, c.confirmed_at).order_by(c.id))
        return {f"{r.person_id}/{r.warning_id}": (r.warning_id, r.state, r.confirmed_at) for r in found}


async def test_replies_twilio_took_while_warnd_was_down_are_applied_after_the_restart_once_at_their_time(
        twilio_node):
    node, sim = await twilio_node(4, ["sms"])
    await node.dispatcher.start()
    first = (await node.intake.submit(live(identifier="W-DOWN-1"), XML, admin_scope()))[0].warning_id
    await until(lambda: _settled(node, 4), timeout=30)
    sim.scenario.update({"inbound_sms_url": node.config.public_base_url + "/twilio/sms/inbound"})
    sim.reply_now({phone(0): "1"})  # while warnd is up: through the webhook, as always
    await until(lambda: _count_replies(sim, 1))
    # warnd is down now (its webhook unreachable); two people reply, and a new warning is
    # issued after their replies, before warnd is back
    sim.scenario.update({"inbound_sms_url": f"http://127.0.0.1:{free_port()}/twilio/sms/inbound"})
    sim.reply_now({phone(1): "1", phone(2): "1"})
    await until(lambda: _count_replies(sim, 3))
    assert [r.http_status for r in sim.replies] == [200, None, None]
    second = (await node.intake.submit(live(identifier="W-DOWN-2"), XML, admin_scope()))[0].warning_id
    await until(lambda: _settled(node, 8), timeout=30)

    again, _ = await twilio_node(4, ["sms"], sim=sim)  # the restart fetches what it missed
    got = await _confirmations(again)
    sent = {r.from_: datetime.fromtimestamp(r.sent_at, timezone.utc) for r in sim.replies}
    for i in (1, 2):  # the warning open when they replied, at the time they replied
        warning_id, state, at = got[f"p{i}/{first}"]
        assert state == "confirmed" and abs((at - sent[phone(i)]).total_seconds()) <= 1.0
        assert got[f"p{i}/{second}"][1] == "open"  # not the warning issued after their reply
    assert got[f"p0/{first}"][1] == "confirmed" and got[f"p3/{first}"][1] == "open"
    assert await again.catch_up_replies() == 0  # once: a second restart applies nothing again
    async with again.db.read() as conn:
        stored = (await conn.execute(sa.select(sa.func.count()).select_from(inbound_table)
                                     .where(inbound_table.c.channel == "sms"))).scalar()
    assert stored == 3


async def _count_replies(sim: TwilioSimulator, n: int) -> bool:
    await sim.wait_idle()
    return len(sim.replies) >= n


async def test_a_first_outage_longer_than_a_minute_and_a_failed_lookup_lose_no_reply(twilio_node):
    node, sim = await twilio_node(2, ["sms"])
    await node.dispatcher.start()
    first = (await node.intake.submit(live(identifier="W-LONG"), XML, admin_scope()))[0].warning_id
    await until(lambda: _settled(node, 2), timeout=30)
    sim.reply_now({phone(0): "1"})  # no webhook configured: warnd never heard of it
    await until(lambda: _count_replies(sim, 1))
    # as if it all happened earlier: the warning ten minutes ago, the reply five (warnd
    # down since); nothing recorded, so "since the newest reply" has nothing to go by
    async with node.db.write() as conn:
        await conn.execute(sa.update(confirmations).values(
            created_at=datetime.now(timezone.utc) - timedelta(minutes=10)))
    reply = next(iter(sim.inbound.values()))
    reply.created_at = reply.sent_at = reply.sent_at - 300
    sim.scenario.update({"faults": {"rate_5xx": 1.0}})  # Twilio's list fails at the restart …
    again, _ = await twilio_node(2, ["sms"], sim=sim)
    assert not again.caught_up and (await _confirmations(again))[f"p0/{first}"][1] == "open"
    sim.scenario.update({"faults": {"rate_5xx": 0.0}})  # … and answers on the next sweep
    await again.retry_catch_up()
    warning_id, state, at = (await _confirmations(again))[f"p0/{first}"]
    assert again.caught_up and state == "confirmed"
    assert abs((at - datetime.fromtimestamp(reply.sent_at, timezone.utc)).total_seconds()) <= 1.0


async def test_a_provider_that_stays_unreachable_is_asked_for_replies_less_and_less_often(twilio_node, caplog):
    node, sim = await twilio_node(2, ["sms"])
    sim.scenario.update({"faults": {"rate_5xx": 1.0}})
    again, _ = await twilio_node(2, ["sms"], sim=sim)
    assert not again.caught_up
    caplog.clear()
    await again.retry_catch_up()  # the first sweep after the start asks again …
    failed = [r for r in caplog.records if r.getMessage() == "twilio list lookup failed"]
    assert len(failed) == 1
    await again.retry_catch_up()  # … the next one, moments later, does not (backed off)
    await again.retry_catch_up()
    assert [r for r in caplog.records if r.getMessage() == "twilio list lookup failed"] == failed
    assert not again.caught_up
