"""The Twilio simulator, driven by the real twilio SDK (async client) over real HTTP.

Webhooks land on a local aiohttp receiver that checks every X-Twilio-Signature with the
SDK's RequestValidator. Waits are bounded waits for events, never sleeps.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from warnd.sim.twilio import TwilioSimulator
from warnd.sim.twilio_api import parse_twiml, segments, signature
from warnd.sim.twilio_behaviour import Behaviour, Reply, Scenario

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "secret-auth-token"
SENDER = "+15005550006"
PERSON = "+8613800000001"

VOICE = """<?xml version="1.0" encoding="UTF-8"?>
<Response><Say language="zh-CN" loop="2">红色暴雨预警</Say>
<Gather numDigits="1" action="/gather" method="POST"><Say language="zh-CN">收到请按1</Say></Gather></Response>"""


class Receiver:
    """Records every signed webhook per path; answers TwiML where Twilio expects some."""

    def __init__(self, token: str) -> None:
        self.validator = RequestValidator(token)
        self.received: dict[str, list[dict[str, str]]] = defaultdict(list)
        self.forged = 0
        self.answers = {"/voice": VOICE, "/gather": "<Response><Say language=\"zh-CN\">已确认</Say></Response>",
                        "/inbound": "<Response><Message>已收到</Message></Response>"}
        self._changed = asyncio.Condition()
        self.base_url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/{name}", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        return self.base_url

    async def stop(self) -> None:
        await self._runner.cleanup()

    def url(self, path: str) -> str:
        return self.base_url + path

    async def _receive(self, request: web.Request) -> web.Response:
        params = dict(await request.post())
        if not self.validator.validate(str(request.url), params, request.headers.get("X-Twilio-Signature", "")):
            self.forged += 1
            return web.Response(status=403)
        async with self._changed:
            self.received[request.path].append(params)
            self._changed.notify_all()
        answer = self.answers.get(request.path)
        return web.Response(text=answer, content_type="application/xml") if answer else web.Response()

    async def wait_for(self, path: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, str]]:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.received[path]) >= count)
        return self.received[path]


@pytest.fixture
async def receiver():
    r = Receiver(TOKEN)
    await r.start()
    yield r
    await r.stop()
    assert r.forged == 0


@pytest.fixture
async def sim(receiver):
    scenario = Scenario(speed=50.0, inbound_sms_url=receiver.url("/inbound"))
    s = TwilioSimulator(SID, TOKEN, scenario, seed=7)
    await s.start()
    yield s
    await s.stop()


async def make_client(sim: TwilioSimulator, sid: str = SID, token: str = TOKEN) -> Client:
    client = Client(sid, token, http_client=AsyncTwilioHttpClient())
    sim.point(client)
    return client


@pytest.fixture
async def client(sim):
    c = await make_client(sim)
    yield c
    await c.http_client.close()


def configure(sim: TwilioSimulator, number: str, **behaviour) -> None:
    sim.scenario.numbers[number] = Behaviour.from_dict(behaviour, sim.scenario.default)


# -- REST through the SDK --

async def test_message_create_and_fetch(sim, client):
    message = await client.messages.create_async(to=PERSON, from_=SENDER, body="【县预警中心】暴雨红色预警，回复1确认")
    assert message.sid.startswith("SM") and len(message.sid) == 34
    assert (message.status, message.to, message.from_, message.account_sid) == ("queued", PERSON, SENDER, SID)
    assert message.num_segments == "1" and message.date_created is not None
    assert message.uri == f"/2010-04-01/Accounts/{SID}/Messages/{message.sid}.json"
    await sim.wait_idle(timeout=5)
    fetched = await client.messages(message.sid).fetch_async()
    assert (fetched.sid, fetched.status, fetched.body, fetched.error_code) == (
        message.sid, "delivered", message.body, None)
    assert fetched.date_sent is not None
    record = sim.messages[message.sid]
    assert (record.to, record.body, record.segments, record.status) == (PERSON, message.body, 1, "delivered")


async def test_call_create_and_fetch(sim, client):
    call = await client.calls.create_async(to=PERSON, from_=SENDER, twiml=VOICE.replace("/gather", "http://x/g"))
    assert call.sid.startswith("CA") and len(call.sid) == 34
    assert (call.status, call.to, call._from, call.account_sid) == ("queued", PERSON, SENDER, SID)
    await sim.wait_idle(timeout=5)
    fetched = await client.calls(call.sid).fetch_async()
    assert (fetched.status, fetched.duration) == ("completed", "5")  # answered, nothing pressed, 5 s talk
    assert fetched.start_time is not None and fetched.end_time is not None
    assert [(s.language, s.text) for s in sim.calls[call.sid].says] == [("zh-CN", "红色暴雨预警"), ("zh-CN", "收到请按1")]


async def test_fetch_unknown_sid_is_20404(sim, client):
    with pytest.raises(TwilioRestException) as caught:
        await client.messages("SM" + "0" * 32).fetch_async()
    assert (caught.value.status, caught.value.code) == (404, 20404)


@pytest.mark.parametrize("sid, token", [(SID, "wrong-token"), ("AC" + "f" * 32, TOKEN)])
async def test_bad_auth_is_20003(sim, sid, token):
    client = await make_client(sim, sid, token)
    try:
        with pytest.raises(TwilioRestException) as caught:
            await client.messages.create_async(to=PERSON, from_=SENDER, body="x")
    finally:
        await client.http_client.close()
    assert (caught.value.status, caught.value.code) == (401, 20003)
    assert sim.messages == {} and sim.stats.unauthorized == 1


@pytest.mark.parametrize("to", ["+12", "13800000001", "+8613800000099"])
async def test_invalid_number_is_21211(sim, client, to):
    configure(sim, "+8613800000099", invalid=True)
    with pytest.raises(TwilioRestException) as caught:
        await client.messages.create_async(to=to, from_=SENDER, body="x")
    assert (caught.value.status, caught.value.code) == (400, 21211)
    assert f"The 'To' number {to} is not a valid phone number." in caught.value.msg
    with pytest.raises(TwilioRestException) as caught:
        await client.calls.create_async(to=to, from_=SENDER, twiml="<Response/>")
    assert caught.value.code == 21211
    assert sim.messages == {} and sim.calls == {}


async def test_missing_fields_are_rejected(client):
    with pytest.raises(TwilioRestException) as caught:
        await client.messages.create_async(to=PERSON, body="x")
    assert caught.value.code == 21603
    with pytest.raises(TwilioRestException) as caught:
        await client.messages.create_async(to=PERSON, from_=SENDER, body="")
    assert caught.value.code == 21602
    with pytest.raises(TwilioRestException) as caught:
        await client.calls.create_async(to=PERSON, from_=SENDER)
    assert caught.value.code == 21205


async def test_injected_429_through_the_control_endpoint(sim, client):
    async with aiohttp.ClientSession() as http:
        async with http.post(sim.base_url + "/_control", json={"faults": {"rate_429": 1.0, "retry_after": 3}}) as r:
            assert r.status == 200
        with pytest.raises(TwilioRestException) as caught:
            await client.messages.create_async(to=PERSON, from_=SENDER, body="x")
        assert (caught.value.status, caught.value.code) == (429, 20429)
        async with http.post(sim.base_url + f"/2010-04-01/Accounts/{SID}/Messages.json",
                             headers={"Authorization": aiohttp.encode_basic_auth(SID, TOKEN)},
                             data={"To": PERSON, "From": SENDER, "Body": "x"}) as r:
            assert (r.status, r.headers["Retry-After"], (await r.json())["code"]) == (429, "3", 20429)
        async with http.post(sim.base_url + "/_control", json={"faults": {"rate_429": 0, "rate_5xx": 1.0}}):
            pass
        with pytest.raises(TwilioRestException) as caught:
            await client.messages.create_async(to=PERSON, from_=SENDER, body="x")
        assert (caught.value.status, caught.value.code) in {(500, 20500), (503, 20503)}
        async with http.post(sim.base_url + "/_control", json={"faults": {"rate_5xx": 0}}):
            pass
        await client.messages.create_async(to=PERSON, from_=SENDER, body="x")
        async with http.get(sim.base_url + "/_stats") as r:
            stats = await r.json()
    assert (stats["messages"], stats["injected_429"], stats["injected_5xx"]) == (1, 2, 1)


async def test_max_per_second_answers_429_beyond_it(sim, client):
    sim.scenario.update({"faults": {"max_per_second": 1}})
    results = await asyncio.gather(*(client.messages.create_async(to=PERSON, from_=SENDER, body=str(i))
                                     for i in range(5)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, TwilioRestException)]
    assert refused and all(r.code == 20429 for r in refused)
    assert len(sim.messages) == 5 - len(refused) <= 2


# -- status callbacks --

async def test_message_callbacks_are_signed_and_ordered(sim, client, receiver):
    configure(sim, "+8613800000002", phone_off=True)
    configure(sim, "+8613800000003", sms="failed", sms_error=30005)
    sent = {to: await client.messages.create_async(to=to, from_=SENDER, body="x", status_callback=receiver.url("/s"))
            for to in (PERSON, "+8613800000002", "+8613800000003")}
    await sim.wait_idle(timeout=5)
    received = await receiver.wait_for("/s", 5)
    by_sid = defaultdict(list)
    for params in received:
        by_sid[params["MessageSid"]].append((params["MessageStatus"], params.get("ErrorCode")))
        assert params["SmsSid"] == params["MessageSid"] and params["SmsStatus"] == params["MessageStatus"]
        assert (params["AccountSid"], params["ApiVersion"], params["From"]) == (SID, "2010-04-01", SENDER)
    assert by_sid[sent[PERSON].sid] == [("sent", None), ("delivered", None)]
    assert by_sid[sent["+8613800000002"].sid] == [("sent", None), ("undelivered", "30003")]
    assert by_sid[sent["+8613800000003"].sid] == [("failed", "30005")]


async def test_messaging_service_is_accepted_then_queued(sim, client, receiver):
    message = await client.messages.create_async(to=PERSON, messaging_service_sid="MG" + "1" * 32, body="x",
                                                 status_callback=receiver.url("/s"))
    assert (message.status, message.from_) == ("accepted", None)
    received = await receiver.wait_for("/s", 3)
    assert [p["MessageStatus"] for p in received] == ["queued", "sent", "delivered"]
    assert {p["From"] for p in received} == {sim.messaging_service_from}
    assert {p["MessagingServiceSid"] for p in received} == {"MG" + "1" * 32}


async def test_call_callbacks_only_the_requested_events_and_the_final_one(sim, client, receiver):
    configure(sim, "+8613800000002", call="busy")
    all_events = await client.calls.create_async(
        to=PERSON, from_=SENDER, twiml="<Response><Say>hi</Say></Response>", status_callback=receiver.url("/all"),
        status_callback_event=["initiated", "ringing", "answered", "completed"])
    await client.calls.create_async(to=PERSON, from_=SENDER, twiml="<Response/>", status_callback=receiver.url("/a"),
                                    status_callback_event=["answered"])
    await client.calls.create_async(to="+8613800000002", from_=SENDER, twiml="<Response/>",
                                    status_callback=receiver.url("/busy"))
    await sim.wait_idle(timeout=5)
    calls = await receiver.wait_for("/all", 4)
    assert [p["CallStatus"] for p in calls] == ["initiated", "ringing", "in-progress", "completed"]
    assert [p["SequenceNumber"] for p in calls] == ["0", "1", "2", "3"]
    assert {p["CallSid"] for p in calls} == {all_events.sid}
    assert (calls[-1]["CallDuration"], calls[-1]["To"], calls[-1]["From"]) == ("5", PERSON, SENDER)
    assert [p["CallStatus"] for p in await receiver.wait_for("/a", 2)] == ["in-progress", "completed"]
    assert [(p["CallStatus"], p["CallDuration"]) for p in await receiver.wait_for("/busy")] == [("busy", "0")]


async def test_unanswered_call_rings_out(sim, client, receiver):
    configure(sim, PERSON, call="no-answer")
    call = await client.calls.create_async(to=PERSON, from_=SENDER, twiml="<Response/>", timeout=10,
                                           status_callback=receiver.url("/s"))
    assert [p["CallStatus"] for p in await receiver.wait_for("/s")] == ["no-answer"]
    assert sim.calls[call.sid].says == [] and sim.calls[call.sid].status == "no-answer"


# -- voice: TwiML, key presses --

async def test_pressing_1_posts_digits_to_the_gather_action(sim, client, receiver):
    configure(sim, PERSON, press="1", press_after=2)
    call = await client.calls.create_async(to=PERSON, from_=SENDER, url=receiver.url("/voice"),
                                           status_callback=receiver.url("/s"))
    fetch, = await receiver.wait_for("/voice")
    assert (fetch["CallSid"], fetch["CallStatus"], fetch["To"]) == (call.sid, "in-progress", PERSON)
    gathered, = await receiver.wait_for("/gather")
    assert (gathered["CallSid"], gathered["Digits"], gathered["From"], gathered["To"], gathered["AccountSid"]) == (
        call.sid, "1", SENDER, PERSON, SID)
    final, = await receiver.wait_for("/s")
    assert (final["CallStatus"], final["CallDuration"]) == ("completed", "3")
    record = sim.calls[call.sid]
    assert record.digits == "1" and record.errors == []
    assert [(s.text, s.loop) for s in record.says] == [("红色暴雨预警", 2), ("收到请按1", 1), ("已确认", 1)]


async def test_no_gather_or_no_press_just_completes(sim, client, receiver):
    configure(sim, PERSON, press="1")
    call = await client.calls.create_async(to=PERSON, from_=SENDER, twiml="<Response><Say>hi</Say></Response>")
    await sim.wait_idle(timeout=5)
    assert (sim.calls[call.sid].status, sim.calls[call.sid].digits) == ("completed", None)
    assert receiver.received["/gather"] == []


# -- replies, speed --

async def test_reply_reaches_the_inbound_url_scaled_by_speed(sim, client, receiver):
    sim.scenario.speed = 20.0
    configure(sim, PERSON, reply={"after": 10, "text": "1"})
    started = time.monotonic()
    message = await client.messages.create_async(to=PERSON, from_=SENDER, body="回复1确认")
    inbound, = await receiver.wait_for("/inbound", timeout=2.0)  # 10 s at speed 20: about 0.55 s
    assert time.monotonic() - started >= 0.45
    assert (inbound["From"], inbound["To"], inbound["Body"], inbound["NumMedia"], inbound["AccountSid"]) == (
        PERSON, SENDER, "1", "0", SID)
    assert inbound["MessageSid"].startswith("SM") and inbound["MessageSid"] != message.sid
    await sim.wait_idle(timeout=2)
    reply, = sim.replies
    assert (reply.from_, reply.to, reply.body, reply.http_status, reply.answers) == (PERSON, SENDER, "1", 200, ("已收到",))


async def test_stop_cancels_pending_timelines(receiver):
    scenario = Scenario(default=Behaviour(reply=Reply(after=3600)), inbound_sms_url=receiver.url("/inbound"))
    sim = TwilioSimulator(SID, TOKEN, scenario)
    await sim.start()
    client = await make_client(sim)
    try:
        await client.messages.create_async(to=PERSON, from_=SENDER, body="x")
    finally:
        await client.http_client.close()
    with pytest.raises(TimeoutError):
        await sim.wait_idle(timeout=0.2)
    await sim.stop()
    await sim.wait_idle(timeout=1)
    assert receiver.received["/inbound"] == [] and sim.stats.crashed == 0


# -- records --

async def test_counts_and_duplicate_bodies(sim, client):
    for to, body in [(PERSON, "a"), (PERSON, "a"), (PERSON, "b"), ("+8613800000002", "a")]:
        await client.messages.create_async(to=to, from_=SENDER, body=body)
    assert sim.counts_by_to() == {PERSON: 3, "+8613800000002": 1}
    assert sim.duplicate_bodies() == {(PERSON, "a"): 2}


# -- pure parts --

@pytest.mark.parametrize("body, expected", [
    ("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3), ("{" * 80, 1), ("€" * 81, 2),
    ("中" * 70, 1), ("中" * 71, 2), ("中" * 134, 2), ("中" * 135, 3), ("a" * 69 + "😀", 2), ("", 1),
])
def test_segments(body, expected):
    assert segments(body) == expected


def test_signature_matches_the_sdks_validator():
    url = "https://warnd.example/twilio/status?delivery=42&sig=abc"
    params = {"MessageStatus": "delivered", "Body": "收到 1", "To": "+8613800000001", "A": ""}
    assert RequestValidator(TOKEN).validate(url, params, signature(TOKEN, url, params))
    assert not RequestValidator("other").validate(url, params, signature(TOKEN, url, params))


def test_twiml_gather_action_resolves_against_the_document_url():
    doc = parse_twiml(VOICE, "http://h:1/voice?x=1")
    assert doc.gather is not None and doc.gather.action == "http://h:1/gather"
    assert parse_twiml(VOICE).gather.action is None  # inline TwiML: a relative action goes nowhere
    with pytest.raises(ValueError):
        parse_twiml("<html/>")
    with pytest.raises(ValueError):
        parse_twiml('<!DOCTYPE r [<!ENTITY a "b">]><Response/>')


def test_scenario_file(tmp_path: Path):
    path = tmp_path / "behaviours.yaml"
    path.write_text("""
speed: 10
faults: {rate_429: 0.1, max_per_second: 50}
default: {answer_after: 3}
numbers:
  "+8613800000001": {reply: {after: 10, text: "1"}, press: 1}
  +8613800000002: {phone_off: true}
""", encoding="utf-8")
    scenario = Scenario.load(path)
    assert (scenario.speed, scenario.faults.rate_429, scenario.faults.max_per_second) == (10, 0.1, 50)
    first = scenario.behaviour("+8613800000001")
    assert (first.reply, first.press, first.answer_after) == (Reply(10, "1"), "1", 3)
    assert scenario.behaviour("+8613800000002").sms_error_code == 30003
    assert scenario.behaviour("+8613800000002").call_outcome == "no-answer"
    assert scenario.behaviour("+1555").sms_outcome == "deliver"
    with pytest.raises(ValueError, match="unknown behaviour"):
        Behaviour.from_dict({"sms": "deliver", "colour": "red"})
    with pytest.raises(ValueError):
        Behaviour.from_dict({"call": "maybe"})
    with pytest.raises(ValueError):
        scenario.update({"faults": {"rate_429": 2}})


# -- as a process --

async def test_runs_as_a_process_and_records(tmp_path: Path):
    record = tmp_path / "record.jsonl"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "warnd.sim.twilio", "--port", "0", "--account-sid", SID, "--auth-token", TOKEN,
        "--record", str(record), "--speed", "100", stdout=asyncio.subprocess.PIPE)
    try:
        base_url = (await asyncio.wait_for(process.stdout.readline(), 20)).decode().strip()
        assert base_url.startswith("http://127.0.0.1:")
        client = Client(SID, TOKEN, http_client=AsyncTwilioHttpClient())
        client.api.base_url = base_url
        try:
            message = await client.messages.create_async(to=PERSON, from_=SENDER, body="x")
        finally:
            await client.http_client.close()
    finally:
        process.terminate()
        out, _ = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 0 and json.loads(out.decode().strip().splitlines()[-1])["messages"] == 1
    lines = [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]
    assert lines[0]["kind"] == "message" and lines[0]["sid"] == message.sid and lines[0]["to"] == PERSON


async def test_point_refuses_a_client_with_a_region_or_edge(sim):
    for options in ({"region": "au1"}, {"edge": "sydney"}):
        with pytest.raises(ValueError, match="region or edge"):
            sim.point(Client(SID, TOKEN, **options))
