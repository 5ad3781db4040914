"""Inbound is idempotent (issue 10): each provider message is applied once, and a
status callback settles only the attempt it belongs to.

Through warnd's real HTTP routes with real Twilio signatures, the real twilio SDK
against the Twilio simulator, a real Mosquitto for the speakers; SQLite and
PostgreSQL. A node's clock is manual where redials must wait for the test; waits
are bounded polls for a condition, never sleeps.
"""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient, TestServer
from factories import NO_APPROVAL, VILLAGE, alert
from mosquitto import running_mosquitto
from test_engine import until
from test_pages import Site, _item_ids
from test_pages import directory as door_directory
from test_twilio_flow import FROM, SID, TOKEN, directory, free_port, phone
from twilio.request_validator import RequestValidator

from warnd.clock import ManualClock
from warnd.config import load_config
from warnd.domain.authority import admin_scope
from warnd.domain.delivery import Decision, State
from warnd.domain.directory import Region, Speaker
from warnd.domain.signing import sign
from warnd.engine.node import CALLBACK_VALIDITY, Node
from warnd.http.app import build_app
from warnd.ingest.capxml import alert_to_xml
from warnd.ingest.directory import DirectoryData
from warnd.sim.speakers import SpeakerFleet
from warnd.sim.twilio import TwilioSimulator
from warnd.sim.twilio_api import new_sid, parse_twiml
from warnd.sim.twilio_behaviour import Scenario
from warnd.store import audit
from warnd.store.confirmations import ConfirmationStore, Inbound
from warnd.store.database import Database
from warnd.store.deliveries import Applied
from warnd.store.migrate import upgrade
from warnd.store.schema import call_list_items, confirmations, deliveries, inbound, rungs
from warnd_channels.mqtt_link import MqttLink

XML = "application/cap+xml"
EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response />'
REDIAL_SECONDS = 1.0  # voice.retry: every redial waits this long (on the node's manual clock)


class Rig:
    """A node on a real HTTP server at its public URL, the Twilio simulator, and what tests ask of them."""

    def __init__(self, node: Node, sim: TwilioSimulator, base: str, clock: ManualClock) -> None:
        self.node, self.sim, self.base, self.clock = node, sim, base, clock

    async def submit(self, identifier: str) -> int:
        xml = alert_to_xml(alert(identifier, codes=(VILLAGE,))).encode()
        return (await self.node.intake.submit(xml, XML, admin_scope()))[0].warning_id

    async def rows(self, table, *where) -> list:  # noqa: ANN001
        async with self.node.db.read() as conn:
            return (await conn.execute(sa.select(table).where(*where).order_by(table.c.id))).all()

    async def one(self, table, *where):  # noqa: ANN001, ANN201
        (row,) = await self.rows(table, *where)
        return row

    async def post(self, url: str, params: dict[str, str]) -> tuple[int, str]:
        """POST a form as Twilio does: signed over the full URL and the parameters."""
        signature = RequestValidator(TOKEN).compute_signature(url, params)
        async with ClientSession() as http, http.post(url, data=params,
                                                      headers={"X-Twilio-Signature": signature}) as resp:
            return resp.status, await resp.text()

    def sms_reply(self, number: str, text: str, sid: str) -> tuple[str, dict[str, str]]:
        """An inbound SMS as the simulator (and Twilio) posts it: the URL and the form."""
        return f"{self.base}/twilio/sms/inbound", {
            "AccountSid": SID, "ApiVersion": "2010-04-01", "Body": text, "From": number, "MessageSid": sid,
            "NumMedia": "0", "NumSegments": "1", "SmsMessageSid": sid, "SmsSid": sid, "SmsStatus": "received",
            "To": FROM}


def call_form(sid: str, status: str, to: str, **extra: str) -> dict[str, str]:
    """A call's webhook form as the simulator (and Twilio) posts it."""
    return {"AccountSid": SID, "ApiVersion": "2010-04-01", "CallSid": sid, "CallStatus": status, "Called": to,
            "Caller": FROM, "Direction": "outbound-api", "From": FROM, "To": to, **extra}


@pytest.fixture
async def rig(db_url):
    """Start (channels, scenario, dispatch) → a Rig; two people, red warnings routed to `channels`."""
    started = []

    async def start(channels: list[str], scenario: dict | None = None, *, dispatch: bool = True) -> Rig:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        sim = TwilioSimulator(SID, TOKEN, Scenario())
        sim.scenario.update(scenario or {})
        sim_url = await sim.start()
        await asyncio.to_thread(upgrade, db_url)
        clock = ManualClock()
        config = load_config(
            None, database_url=db_url, public_base_url=base, port=port,
            twilio={"account_sid": SID, "auth_token": TOKEN, "api_base_url": sim_url, "from_number": FROM},
            sms={"enabled": "sms" in channels, "rate_per_second": 1000},
            voice={"enabled": "voice" in channels, "rate_per_second": 1000, "ring_seconds": 5,
                   "retry": {"max_attempts": 3, "base_seconds": REDIAL_SECONDS, "max_seconds": REDIAL_SECONDS}},
            webhook={"enabled": False}, dispatcher={"poll_seconds": 0.05},
            routing=[{"levels": ["red"], "channels": channels, "roles": ["grid_responsible"]}],
            approval=NO_APPROVAL)
        node = Node(config, clock=clock)
        await node.directory.import_data(directory(2))
        server = TestServer(build_app(node), host="127.0.0.1", port=port)
        await server.start_server()
        await node.start(dispatch=dispatch)
        started.append((node, server, sim))
        return Rig(node, sim, base, clock)

    yield start
    for node, server, sim in started:
        await node.stop()
        await server.close()
        await sim.stop()


async def _sent_to(rig: Rig, number: str, n: int) -> bool:
    return len(rig.sim.messages_to(number)) >= n


# --- (1) and (3): an SMS reply is applied once, even replayed after a new warning -----------------

async def test_a_reply_replayed_after_a_new_red_warning_confirms_nothing(rig):
    r = await rig(["sms"])
    a = await r.submit("W-A")
    await until(lambda: _sent_to(r, phone(0), 1))
    url, form = r.sms_reply(phone(0), "1", new_sid("SM"))  # captured on its way: validly signed
    status, text = await r.post(url, form)
    assert status == 200 and "已确认收到" in text
    assert (await r.one(confirmations, confirmations.c.warning_id == a,
                        confirmations.c.person_id == "p0")).state == "confirmed"

    b = await r.submit("W-B")  # a new red warning goes out to the same person
    await until(lambda: _sent_to(r, phone(0), 2))
    status, text = await r.post(url, form)  # the captured request, posted again
    assert (status, text) == (200, EMPTY)  # 2xx for Twilio; nothing texted back

    req = await r.one(confirmations, confirmations.c.warning_id == b, confirmations.c.person_id == "p0")
    assert req.state == "open" and req.version == 1
    ladder = await r.rows(rungs, rungs.c.confirmation_id == req.id)
    assert ladder and {rung.state for rung in ladder} == {"pending"}  # its ladder was not skipped
    assert len(await r.rows(inbound, inbound.c.provider_ref == form["MessageSid"])) == 1
    assert len(await r.rows(inbound)) == 1
    assert r.node.metrics.registry.get_sample_value("warnd_answers_total",
                                                    {"channel": "sms", "outcome": "replayed"}) == 1

    status, text = await r.post(*r.sms_reply(phone(0), "1", new_sid("SM")))  # a new reply does confirm B
    assert status == 200 and "已确认收到" in text
    assert (await r.one(confirmations, confirmations.c.id == req.id)).state == "confirmed"


async def test_copies_of_one_reply_in_one_group_commit_apply_once_and_the_others_commit(rig, db_url):
    r = await rig(["sms"], dispatch=False)
    await r.submit("W-A")
    store = ConfirmationStore(r.node.db)
    other_node = ConfirmationStore(Database(db_url))  # another node's connection, racing the same message
    try:
        ids = {p: [i.confirmation_id for i in await store.open_items([p])] for p in ("p0", "p1")}

        def answer(on: ConfirmationStore, person: str, sid: str):  # noqa: ANN202 - a coroutine
            reply = Inbound(r.clock.now(), "sms", phone(int(person[1:])), "1", person, provider_ref=sid)
            return on.answer(reply, ids[person], lambda n: "confirmed" if n else "repeated")

        # Called in one turn of the loop: the same group commit (one transaction, a savepoint each);
        # the other node's copy waits for that commit (PostgreSQL: on the unique index).
        results = await asyncio.gather(answer(store, "p0", "SMx"), answer(store, "p0", "SMx"),
                                       answer(store, "p1", "SMy"), answer(other_node, "p0", "SMx"),
                                       answer(store, "p0", "SMx"))
        assert results[2] == 1  # the other person's answer in the same group committed
        assert sorted(results, key=lambda n: -1 if n is None else n) == [None, None, None, 1, 1]
        assert sorted(row.provider_ref for row in await r.rows(inbound)) == ["SMx", "SMy"]
        assert {row.state for row in await r.rows(confirmations)} == {"confirmed"}
        assert await answer(store, "p1", "SMy") is None  # and later, too
    finally:
        await other_node.db.close()


async def test_a_key_press_of_one_call_applies_once(rig):
    r = await rig(["voice"], {"speed": 10, "numbers": {phone(0): {"press": "1", "press_after": 0.1,
                                                                  "answer_after": 0.1}}})
    await r.submit("W-A")
    await until(lambda: _confirmed(r, "p0"))
    (call,) = r.sim.calls_to(phone(0))
    action = parse_twiml(call.twiml or "").gather.action
    assert action is not None
    before = await r.one(confirmations, confirmations.c.person_id == "p0")
    status, text = await r.post(action, call_form(call.sid, "in-progress", phone(0), Digits="1",
                                                  FinishedOnKey=""))  # the key press, replayed
    assert (status, text) == (200, EMPTY)
    assert await r.one(confirmations, confirmations.c.person_id == "p0") == before
    (row,) = await r.rows(inbound, inbound.c.provider_ref == call.sid)
    assert (row.channel, row.outcome, row.body) == ("voice", "confirmed", "1")
    assert len(await r.rows(inbound)) == 1


async def _confirmed(r: Rig, person: str) -> bool:
    return bool(await r.rows(confirmations, confirmations.c.person_id == person,
                             confirmations.c.state == "confirmed"))


# --- (2): a status callback settles only the attempt it belongs to ------------------------------

async def test_a_late_callback_of_call_1_leaves_the_redial_alone(rig):
    r = await rig(["voice"], {"speed": 20, "numbers": {phone(0): {"call": "no-answer"}}})
    await r.submit("W-A")
    mine = deliveries.c.address == phone(0)
    await until(lambda: _row_is(r, mine, state="pending", attempts=1, last_code="twilio.no-answer"))
    (first,) = r.sim.calls_to(phone(0))
    # Call 2 is answered and stays on the line: its end comes only when the test says so.
    r.sim.scenario.update({"numbers": {phone(0): {"call": "answer", "answer_after": 0.1, "hangup_after": 36000}}})
    r.clock.advance(REDIAL_SECONDS + 1)
    r.node.dispatcher.wake()
    await until(lambda: _calls(r, phone(0), 2))
    second = r.sim.calls_to(phone(0))[1]
    await until(lambda: _row_is(r, mine, state="sent", attempts=2, provider_ref=second.sid))
    before = await r.one(deliveries, mine)

    for status, extra in (("no-answer", {"CallDuration": "0"}), ("completed", {"CallDuration": "12"})):
        assert first.status_callback is not None
        code, _ = await r.post(first.status_callback, call_form(first.sid, status, phone(0), **extra))
        assert code == 204  # acknowledged, as Twilio expects
    assert await r.one(deliveries, mine) == before  # call 2's state is unchanged

    assert second.status_callback is not None and second.status_callback != first.status_callback
    code, _ = await r.post(second.status_callback, call_form(second.sid, "completed", phone(0), CallDuration="30"))
    assert code == 204
    after = await r.one(deliveries, mine)
    assert (after.state, after.attempts, after.provider_ref, after.last_code) == (
        "delivered", 2, second.sid, "twilio.completed")


async def test_a_callback_that_overtakes_its_send_result_is_matched_by_its_attempt(rig):
    # No dispatcher: the test claims and records as the dispatcher would, to hold call 2 in `sending`.
    r = await rig(["voice"], dispatch=False)
    await r.submit("W-A")
    store, mine = r.node.deliveries, deliveries.c.address == phone(0)
    (row,) = [c for c in await store.claim("voice", 10, 60) if c.address == phone(0)]
    first_url = r.node.callback_url("voice-status", row.id)  # as the channel builds it during the send
    await _record(r, row.id, 1, "CA1")
    assert await r.post(first_url, call_form("CA1", "no-answer", phone(0))) == (204, "")
    assert (await r.one(deliveries, mine)).state == "pending"

    r.clock.advance(REDIAL_SECONDS + 1)
    (again,) = [c for c in await store.claim("voice", 10, 60) if c.address == phone(0)]
    assert again.attempts == 2
    second_url = r.node.callback_url("voice-status", row.id)
    before = await r.one(deliveries, mine)
    assert (before.state, before.provider_ref) == ("sending", None)  # call 2's SID is not known yet
    await r.post(first_url, call_form("CA1", "completed", phone(0), CallDuration="9"))  # late, of call 1
    assert await r.one(deliveries, mine) == before
    # Call 2's own callback, before its send's result: matched by the attempt its URL names.
    assert await r.post(second_url, call_form("CA2", "completed", phone(0), CallDuration="20")) == (204, "")
    after = await r.one(deliveries, mine)
    assert (after.state, after.provider_ref, after.last_code) == ("delivered", "CA2", "twilio.completed")
    assert await store.apply([_applied(row.id, 2, "CA2", r.clock.now())]) == 0  # the result then changes nothing


async def test_callback_urls_signed_before_the_attempt_was_named_still_settle_by_sid(rig):
    r = await rig(["sms"], dispatch=False)
    await r.submit("W-A")
    store, mine = r.node.deliveries, deliveries.c.address == phone(0)
    (row,) = [c for c in await store.claim("sms", 10, 60) if c.address == phone(0)]
    await store.apply([_applied(row.id, 1, "SM1", r.clock.now())])
    token = sign(r.node.secret_key, "sms-status", str(row.id), r.clock.now() + CALLBACK_VALIDITY)
    old_url = f"{r.base}/twilio/sms/status?d={token}"  # the URL and the delivery id alone, as before
    before = await r.one(deliveries, mine)
    form = {"AccountSid": SID, "ApiVersion": "2010-04-01", "From": FROM, "To": phone(0),
            "MessageStatus": "delivered", "SmsStatus": "delivered"}
    assert await r.post(old_url, {**form, "MessageSid": "SMother", "SmsSid": "SMother"}) == (204, "")
    assert await r.one(deliveries, mine) == before  # another message's SID: not this send's
    assert await r.post(old_url, {**form, "MessageSid": "SM1", "SmsSid": "SM1"}) == (204, "")
    assert (await r.one(deliveries, mine)).state == "delivered"


async def _record(r: Rig, delivery_id: int, attempt: int, sid: str) -> None:
    assert await r.node.deliveries.apply([_applied(delivery_id, attempt, sid, r.clock.now())]) == 1


def _applied(delivery_id: int, attempt: int, sid: str, at: datetime) -> Applied:
    return Applied(delivery_id, attempt, at, at, Decision(State.SENT, None, "twilio.queued", ""), sid)


async def _row_is(r: Rig, where, **expected) -> bool:  # noqa: ANN001, ANN003
    rows = await r.rows(deliveries, where)
    return len(rows) == 1 and all(getattr(rows[0], k) == v for k, v in expected.items())


async def _calls(r: Rig, number: str, n: int) -> bool:
    return len(r.sim.calls_to(number)) >= n


# --- door-to-door marks and speaker acks ----------------------------------------------------------

@pytest.fixture
async def site(database, clock):
    config = load_config(None, database_url=database.url, public_base_url="https://warn.example.cn",
                         twilio={"from_number": FROM, "api_base_url": "http://127.0.0.1:9"},
                         sms={"enabled": True}, voice={"enabled": True}, webhook={"enabled": False},
                         routing=[{"levels": ["red"], "channels": ["sms", "voice"], "roles": ["grid_responsible"]}],
                         approval=NO_APPROVAL)
    node = Node(config, clock=clock)
    await node.directory.import_data(door_directory())
    await node.start(dispatch=False)
    client = TestClient(TestServer(build_app(node)))
    await client.start_server()
    yield Site(node, client, clock)
    await client.close()
    await node.stop()


async def test_the_same_door_to_door_mark_again_changes_nothing_and_is_answered_as_done(site):
    await site.submit()
    _, path = await site.door_list()
    first, *_ = _item_ids((await site.page(path))[2])
    status, _, location, _ = await site.post(f"{path}/items/{first}", {"mark": "not_home"})
    assert (status, location) == (303, f"{path}#i{first}")
    before = await site.rows(call_list_items)
    site.clock.advance(60)
    for _ in range(2):  # a double tap, a resent form
        status, _, location, _ = await site.post(f"{path}/items/{first}", {"mark": "not_home"})
        assert (status, location) == (303, f"{path}#i{first}")  # done, as the first time
    assert await site.rows(call_list_items) == before  # neither its time nor its version moved
    assert len(await audit.entries(site.node.db, audit.Filter(action="door.mark"))) == 1  # audited once
    status, *_ = await site.post(f"{path}/items/{first}", {"mark": "notified"})  # a different mark still counts
    assert status == 303
    assert {i.id: i.mark for i in await site.rows(call_list_items)}[first] == "notified"
    assert len(await audit.entries(site.node.db, audit.Filter(action="door.mark"))) == 2


@pytest.fixture
async def speakers(db_url, tmp_path):
    async with running_mosquitto(tmp_path) as broker:
        fleet = SpeakerFleet(["spk-1"])
        await fleet.start(broker.url)
        await asyncio.to_thread(upgrade, db_url)
        grid = VILLAGE + "001"
        config = load_config(None, database_url=db_url, webhook={"enabled": False}, mqtt={"url": broker.url},
                             speaker={"enabled": True}, dispatcher={"poll_seconds": 0.05},
                             routing=[{"levels": ["red"], "channels": ["speaker"]}], approval=NO_APPROVAL)
        node = Node(config)
        await node.directory.import_data(DirectoryData(
            regions=(Region(VILLAGE, "河口村", "village"), Region(grid, "一组", "grid", VILLAGE)),
            speakers=(Speaker("spk-1", grid),)))
        await node.start()
        link = MqttLink(broker.url, client_id="test-replayer")
        await link.start()
        try:
            yield node, link
        finally:
            await link.close()
            await node.stop()
            await fleet.stop()


async def test_a_repeated_played_ack_changes_nothing(speakers):
    node, link = speakers
    now = datetime.now(timezone.utc).replace(microsecond=0)  # speakers play on real time
    await node.intake.submit(alert_to_xml(alert("W-S", sent=now, expires=now + timedelta(hours=6))).encode(),
                             XML, admin_scope())
    played = {"channel": "speaker", "state": "delivered", "code": "mqtt.played"}
    await until(lambda: _acks(node, played, 1), timeout=30)
    async with node.db.read() as conn:
        (before,) = (await conn.execute(sa.select(deliveries))).all()
    assert before.state == "delivered"
    assert await link.wait_connected(10)
    body = json.dumps({"message_id": f"msg_warnd_{before.id}", "state": "played"}).encode()  # as the speaker acks
    await link.publish("warnd/speakers/spk-1/ack", body, qos=1)
    await until(lambda: _acks(node, played, 2), timeout=30)  # the copy was read and applied …
    async with node.db.read() as conn:
        assert (await conn.execute(sa.select(deliveries))).one() == before  # … and changed nothing


async def _acks(node: Node, labels: dict[str, str], n: int) -> bool:
    return (node.metrics.registry.get_sample_value("warnd_receipts_total", labels) or 0) >= n
