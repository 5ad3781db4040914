"""SMS and voice end to end: warnd's dispatcher → the real twilio SDK → the Twilio
simulator → signed status callbacks, replies and key presses → warnd's HTTP
endpoints → confirmations. The outside view (what the simulator received) is
checked against the inside view (warnd's rows)."""
from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from factories import COUNTY, NO_APPROVAL, TOWNSHIP, VILLAGE, alert
from test_engine import until

from warnd.config import load_config
from warnd.domain.authority import admin_scope
from warnd.domain.directory import Person, Region
from warnd.engine.node import RECONCILE_PARALLEL, Node
from warnd.http.app import build_app
from warnd.ingest.capxml import alert_to_xml
from warnd.ingest.directory import DirectoryData
from warnd.sim.twilio import TwilioSimulator
from warnd.sim.twilio_behaviour import Scenario
from warnd.store.deliveries import DeliveryStore
from warnd.store.schema import confirmations, deliveries, inbound
from warnd.store.migrate import upgrade

SID, TOKEN, FROM = "AC" + "1" * 32, "test-auth-token", "+15005550006"
XML = "application/cap+xml"


def live(**kw) -> bytes:  # noqa: ANN003
    """A red warning in force now (the simulator and callbacks run on real time)."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    return alert_to_xml(alert(sent=now, expires=now + timedelta(hours=6), **kw)).encode()


def phone(i: int) -> str:
    return f"+86138{i:08d}"


def grid(i: int) -> str:
    return f"{VILLAGE}{i:04d}"


def directory(n: int) -> DirectoryData:
    regions = [Region(COUNTY, "示例县", "county"), Region(TOWNSHIP, "城关镇", "township", COUNTY),
               Region(VILLAGE, "河口村", "village", TOWNSHIP)]
    regions += [Region(grid(i), f"{i}组", "grid", VILLAGE) for i in range(n)]
    people = [Person(f"p{i}", f"网格员{i}", grid(i), ("grid_responsible",), phone(i)) for i in range(n)]
    return DirectoryData(regions=tuple(regions), people=tuple(people))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def flow(tmp_path):
    """Start (people, scenario, channels) → (node, simulator, base_url)."""
    started = []

    async def start(n: int, scenario: dict, channels: list[str], auth_token: str = TOKEN,  # noqa: ANN202
                    reconcile_after: float = 300.0, reconcile_every: float = 0.2,
                    resend_uncertain_after: float | None = 600.0, lookup_after: float = 10.0):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        plan = Scenario()
        plan.update({**scenario, "inbound_sms_url": f"{base}/twilio/sms/inbound"})
        sim = TwilioSimulator(SID, TOKEN, plan)
        sim_url = await sim.start()
        url = f"sqlite:///{tmp_path / 'flow.db'}"
        upgrade(url)
        config = load_config(
            None, database_url=url, public_base_url=base, port=port,
            twilio={"account_sid": SID, "auth_token": auth_token, "api_base_url": sim_url, "from_number": FROM,
                    "reconcile_after_seconds": reconcile_after,
                    "resend_uncertain_after_seconds": resend_uncertain_after,
                    "lookup_uncertain_after_seconds": lookup_after},
            sweeps={"reconcile_seconds": reconcile_every, "recover_seconds": 0.2},
            sms={"enabled": "sms" in channels, "rate_per_second": 5000, "concurrency": 64,
                 # 60: a 429 storm at 60 % exhausts 20 attempts for one of 200 rows in 140 runs
                 "retry": {"max_attempts": 60, "base_seconds": 0.05, "max_seconds": 0.5}},
            voice={"enabled": "voice" in channels, "rate_per_second": 5000, "ring_seconds": 5,
                   "retry": {"max_attempts": 3, "base_seconds": 0.05, "max_seconds": 0.2}},
            webhook={"enabled": False}, dispatcher={"poll_seconds": 0.05},
            routing=[{"levels": ["red"], "channels": channels, "roles": ["grid_responsible"]}],
            approval=NO_APPROVAL)
        node = Node(config)
        await node.directory.import_data(directory(n))
        server = TestServer(build_app(node), host="127.0.0.1", port=port)
        await server.start_server()
        await node.start()
        started.append((node, server, sim))
        return node, sim, base

    yield start
    for node, server, sim in started:
        await node.stop()
        await server.close()
        await sim.stop()


async def count(node: Node, table, *where) -> int:  # noqa: ANN001
    async with node.db.read() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(table).where(*where))).scalar()


async def test_a_thousand_sms_each_once_all_delivered_and_replies_confirm_exactly(flow):
    repliers = {phone(i) for i in range(1000) if i % 10 < 3}  # 30 %
    node, sim, _ = await flow(1000, {"numbers": {p: {"reply": {"after": 0.2, "text": "1"}} for p in repliers}},
                              ["sms"])
    await node.intake.submit(live(), XML, admin_scope())
    await until(lambda: _ge(count(node, deliveries, deliveries.c.state == "delivered"), 1000), timeout=60)
    await until(lambda: _ge(count(node, confirmations, confirmations.c.state == "confirmed"), 300), timeout=60)
    await sim.wait_idle(timeout=30)
    assert len(sim.messages) == 1000
    assert set(sim.counts_by_to().values()) == {1} and not sim.duplicate_bodies()
    assert all("回复1确认" in m.body and m.body.startswith("【县预警中心】") for m in sim.messages.values())
    async with node.db.read() as conn:
        rows = await conn.execute(sa.select(confirmations.c.person_id).where(confirmations.c.state == "confirmed"))
        confirmed = {r.person_id for r in rows}
    assert confirmed == {f"p{i}" for i in range(1000) if i % 10 < 3}
    assert await count(node, confirmations, confirmations.c.channel == "sms") == 300
    assert await count(node, inbound, inbound.c.outcome == "confirmed") == 300


async def test_a_voice_call_answered_with_1_confirms(flow):
    node, sim, _ = await flow(2, {"numbers": {phone(0): {"press": "1", "press_after": 0.1, "answer_after": 0.1},
                                              phone(1): {"press": None, "answer_after": 0.1, "hangup_after": 0.1}}},
                              ["voice"])
    await node.intake.submit(live(), XML, admin_scope())
    await until(lambda: _ge(count(node, confirmations, confirmations.c.state == "confirmed"), 1), timeout=30)
    await until(lambda: _ge(count(node, deliveries, deliveries.c.state == "delivered"), 2), timeout=30)
    async with node.db.read() as conn:
        row = (await conn.execute(sa.select(confirmations).where(confirmations.c.state == "confirmed"))).one()
    assert (row.person_id, row.channel) == ("p0", "voice")
    call = sim.calls_to(phone(0))[0]
    assert call.digits == "1" and any("暴雨" in say.text for say in call.says)


async def test_unanswered_calls_are_redialled_per_policy(flow):
    # Ringing out takes the call's ring timeout; speed 20 plays 5 s of ringing in 0.25 s.
    node, sim, _ = await flow(1, {"speed": 20, "numbers": {phone(0): {"call": "no-answer"}}}, ["voice"])
    await node.intake.submit(live(), XML, admin_scope())
    await until(lambda: _ge(count(node, deliveries, deliveries.c.state == "failed"), 1), timeout=30)
    assert len(sim.calls_to(phone(0))) == 3  # voice.retry.max_attempts
    async with node.db.read() as conn:
        assert (await conn.execute(sa.select(deliveries.c.last_code))).scalar() == "retries_exhausted"


async def test_invalid_numbers_fail_at_once_without_retry(flow):
    node, sim, _ = await flow(3, {"numbers": {phone(1): {"invalid": True}}}, ["sms"])
    await node.intake.submit(live(), XML, admin_scope())
    await until(lambda: _ge(count(node, deliveries, deliveries.c.state.in_(["delivered", "failed"])), 3))
    async with node.db.read() as conn:
        row = (await conn.execute(sa.select(deliveries).where(deliveries.c.address == phone(1)))).one()
    assert (row.state, row.attempts, row.last_code) == ("failed", 1, "twilio.21211")


async def test_a_429_storm_sends_everything_eventually_and_nothing_twice(flow):
    node, sim, _ = await flow(200, {"faults": {"rate_429": 0.6, "retry_after": 0.1}}, ["sms"])
    await node.intake.submit(live(), XML, admin_scope())
    try:
        await until(lambda: _ge(count(node, deliveries, deliveries.c.state == "delivered"), 200), timeout=90)
    except AssertionError:
        raise AssertionError(f"not all delivered: {await by_state(node)}, simulator {sim.stats}") from None
    assert len(sim.messages) == 200 and set(sim.counts_by_to().values()) == {1}
    assert sim.stats.injected_429 > 0


async def test_sends_whose_status_callbacks_were_lost_are_settled_by_looking_them_up(flow):
    # No status callback ever arrives: the sweep asks Twilio (the simulator) for each send.
    node, sim, _ = await flow(20, {"faults": {"callback_loss": 1.0},
                                   "speed": 5, "numbers": {phone(0): {"sms": "undelivered", "sms_error": 30005}}},
                              ["sms", "voice"], reconcile_after=0.5)
    await node.intake.submit(live(), XML, admin_scope())
    await until(lambda: _ge(count(node, deliveries, deliveries.c.state.in_(["delivered", "failed"])), 40),
                timeout=60)
    assert await by_state(node) == {"delivered": 39, "failed": 1}
    async with node.db.read() as conn:
        failed = (await conn.execute(sa.select(deliveries.c.address, deliveries.c.channel, deliveries.c.last_code)
                                     .where(deliveries.c.state == "failed"))).one()
    assert tuple(failed) == (phone(0), "sms", "twilio.30005")
    assert sim.stats.callbacks == 0 and sim.stats.fetches >= 40
    assert len(sim.messages) == 20 and len(sim.calls) == 20  # looked up, never sent again
    assert node.metrics.reconciled.labels("sms", "delivered")._value.get() == 19


async def test_a_send_still_in_flight_at_twilio_is_left_as_sent(flow):
    node, sim, _ = await flow(1, {"default": {"deliver_after": 3600}}, ["sms"], reconcile_after=0.2)
    await node.intake.submit(live(), XML, admin_scope())
    await until(lambda: _ge(count(node, deliveries, deliveries.c.state == "sent"), 1))
    await until(lambda: _ge(_fetches(sim), 2))
    assert await by_state(node) == {"sent": 1} and len(sim.messages) == 1


async def test_lookups_stop_at_the_first_failure_while_twilio_is_down(flow):
    node, sim, _ = await flow(20, {"default": {"deliver_after": 3600}}, ["sms"], reconcile_after=0.01,
                              reconcile_every=3600)
    await node.intake.submit(live(), XML, admin_scope())
    await until(lambda: _ge(count(node, deliveries, deliveries.c.state == "sent"), 20))
    await until(lambda: _ge(_overdue(node, 0.01), 20))  # quiet long enough to be looked up
    sim.scenario.update({"faults": {"rate_5xx": 1.0}})  # every API request answers 5xx now
    before = sim.stats.requests
    await node.reconcile()
    assert sim.stats.requests - before == RECONCILE_PARALLEL  # one round of lookups, then it gave up
    sim.scenario.update({"faults": {"rate_5xx": 0.0}})
    await node.reconcile()
    assert sim.stats.fetches == 20 and await by_state(node) == {"sent": 20}


async def test_sms_a_crash_left_uncertain_go_out_once_unless_twilio_answered_for_them(flow, tmp_path):
    node, sim, _ = await flow(4, {}, ["sms"], lookup_after=0.0)
    await node.dispatcher.stop()  # this node sends nothing itself until the dead one's claims are settled
    await node.intake.submit(live(), XML, admin_scope())
    dead = DeliveryStore(node.db, node.clock, "dead/1")
    claimed = await dead.claim("sms", 10, lease_seconds=1.0)  # (long enough to hand them before it runs out)
    assert len(claimed) == 4
    assert len(await dead.hand([r.id for r in claimed])) == 4  # then it "crashed" mid-send: nothing written
    # Twilio had taken one of them before the crash: its status callback settles it.
    taken = claimed[0]
    await node.receipts.apply("sms", taken.id, "delivered", "twilio.delivered", "SMtaken")
    # recovery makes the other three uncertain, and (lookup_after 0) asks Twilio at once: not
    # there, so queued again; either way none is sent before the dispatcher starts
    await until(lambda: _ge(count(node, deliveries, deliveries.c.state.in_(["uncertain", "pending"])), 3))
    await node.dispatcher.start()
    await until(lambda: _ge(count(node, deliveries, deliveries.c.state == "delivered"), 4), timeout=30)
    assert sorted(m.to for m in sim.messages.values()) == sorted(r.address for r in claimed[1:])
    async with node.db.read() as conn:
        codes = {r.id: r.attempts for r in await conn.execute(sa.select(deliveries.c.id, deliveries.c.attempts))}
    assert codes[taken.id] == 1 and {codes[r.id] for r in claimed[1:]} == {2}


async def _fetches(sim: TwilioSimulator) -> int:
    return sim.stats.fetches


async def test_a_forged_callback_is_refused_and_changes_nothing(flow):
    node, sim, base = await flow(1, {"default": {"deliver_after": 3600}}, ["sms"])
    await node.intake.submit(live(), XML, admin_scope())
    await until(lambda: _ge(count(node, deliveries, deliveries.c.state == "sent"), 1))
    async with node.db.read() as conn:
        delivery_id = (await conn.execute(sa.select(deliveries.c.id))).scalar()
    url = node.callback_url("sms-status", delivery_id)
    async with ClientSession() as http:
        forged = await http.post(url, data={"MessageStatus": "delivered", "MessageSid": "SMx"},
                                 headers={"X-Twilio-Signature": "bm90LWEtc2lnbmF0dXJl"})
        reply = await http.post(f"{base}/twilio/sms/inbound", data={"From": phone(0), "Body": "1"})
    assert forged.status == 403 and reply.status == 403
    assert await count(node, deliveries, deliveries.c.state == "sent") == 1
    assert await count(node, confirmations, confirmations.c.state == "open") == 1


async def by_state(node: Node) -> dict[str, int]:
    async with node.db.read() as conn:
        rows = await conn.execute(sa.select(deliveries.c.state, sa.func.count()).group_by(deliveries.c.state))
        return {state: n for state, n in rows}


async def _ge(coro, n: int) -> bool:  # noqa: ANN001
    return (await coro) >= n



async def test_the_sms_text_and_its_segment_count_can_be_previewed(flow):
    node, _, base = await flow(1, {}, ["sms"])
    submitted, _ = await node.intake.submit(live(), XML, admin_scope())
    token = await node.tokens.create(admin_scope())
    async with ClientSession() as http:
        resp = await http.get(f"{base}/api/v1/warnings/{submitted.warning_id}/preview?channel=sms",
                              headers={"Authorization": f"Bearer {token}"})
        body = await resp.json()
    assert resp.status == 200 and body["encoding"] == "UCS-2" and body["segments"] >= 1
    assert body["text"].startswith("【县预警中心】") and "回复1确认" in body["text"]


async def test_refused_credentials_fail_without_retry_and_raise_an_operator_alarm(flow):
    node, sim, _ = await flow(2, {}, ["sms"], auth_token="wrong-token")
    at_start = sim.stats.unauthorized  # the start's look for missed replies was refused too
    await node.intake.submit(live(), XML, admin_scope())
    await until(lambda: _ge(count(node, deliveries, deliveries.c.state == "failed"), 2))
    assert await count(node, deliveries, deliveries.c.last_code == "twilio.20003", deliveries.c.attempts == 1) == 2
    assert node.metrics.registry.get_sample_value("warnd_operator_alarms_total", {"code": "twilio.20003"}) == 2
    assert sim.stats.unauthorized - at_start == 2 and not sim.messages


async def _overdue(node: Node, quiet_seconds: float) -> int:
    """How many sends the reconcile sweep would look up now."""
    now = node.clock.now()
    return len(await node.deliveries.overdue_sent(["sms"], now - timedelta(seconds=quiet_seconds),
                                                  now - timedelta(hours=1), 500))
