"""The SMS channel: classification table, rendering, and the real SDK against the Twilio simulator."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

import aiohttp
import pytest
from aiohttp import web
from twilio.base.exceptions import TwilioRestException, TwilioServiceException

from warnd.config import SmsConfig, TwilioConfig
from warnd.domain.model import MsgType, Status
from warnd.domain.sms_segments import segment_info
from warnd.sim.twilio import TwilioSimulator
from warnd.sim.twilio_behaviour import Scenario
from warnd_channels import conformance as kit
from warnd_channels.base import Outcome, Recipient
from warnd_channels.sms import SmsChannel, segments_of
from warnd_channels.twilio_common import (MAX_RETRY_AFTER, Receipt, classify, message_receipt, twiml_reply,
                                          verify_request)

ACCOUNT = "AC" + "5" * 32
TOKEN = "simulated-auth-token"
SENDER = "+15005550006"
GOOD = "+8613800000001"
INVALID = "+8613800000004"

# --- classification: the HTTP rules, Twilio's codes, transport failures ------------------------


def _http_code(status: int) -> str:
    return "twilio.20003" if status == 401 else f"http.{status}"


# Where an SMS differs from a de-duplicating webhook: a request that may have gone out is UNCERTAIN.
_TRANSPORT = {"exc-timeout": (Outcome.UNCERTAIN, "timeout"), "exc-server-timeout": (Outcome.UNCERTAIN, "timeout"),
              "exc-connection-timeout": (Outcome.RETRY, "connect"), "exc-reset": (Outcome.UNCERTAIN, "reset"),
              "exc-reset-plain": (Outcome.UNCERTAIN, "reset"),
              "exc-disconnected": (Outcome.UNCERTAIN, "disconnected")}


def _transport_cases() -> list[kit.Case]:
    rows = kit.aiohttp_transport_cases(lambda exc: (None, None, exc, {}))
    return [replace(row, outcome=_TRANSPORT[row.id][0], code=_TRANSPORT[row.id][1]) if row.id in _TRANSPORT
            else row for row in rows]


def _code(id_: str, status: int | None, code: int | None, outcome: Outcome, expected: str,
          headers: dict | None = None, retry_after: object = None) -> kit.Case:
    return kit.Case(id_, (status, code, None, headers or {}), outcome, expected, retry_after)


def _rest(status: int, code: int | None) -> TwilioRestException:
    return TwilioRestException(status, "/2010-04-01/Accounts/AC/Messages.json", "Unable to create record", code,
                               "POST")


CASES = [
    *kit.http_status_cases(lambda status, headers: (status, None, None, headers), ok=Outcome.SENT,
                           max_retry_after=MAX_RETRY_AFTER, code=_http_code),
    *_transport_cases(),
    _code("twilio-21211-invalid-to", 400, 21211, Outcome.FAILED, "twilio.21211"),
    _code("twilio-21614-not-mobile", 400, 21614, Outcome.FAILED, "twilio.21614"),
    _code("twilio-21610-unsubscribed", 400, 21610, Outcome.FAILED, "twilio.21610"),
    _code("twilio-21612-cannot-route", 400, 21612, Outcome.FAILED, "twilio.21612"),
    _code("twilio-21408-region", 400, 21408, Outcome.FAILED, "twilio.21408"),
    _code("twilio-13224-voice-number", 400, 13224, Outcome.FAILED, "twilio.13224"),
    _code("twilio-13223-voice-format", 400, 13223, Outcome.FAILED, "twilio.13223"),
    _code("twilio-21217-not-valid", 400, 21217, Outcome.FAILED, "twilio.21217"),
    _code("twilio-21604-missing-to", 400, 21604, Outcome.FAILED, "twilio.21604"),
    _code("twilio-20404-not-found", 404, 20404, Outcome.FAILED, "twilio.20404"),
    _code("twilio-20003-auth", 401, 20003, Outcome.FAILED, "twilio.20003"),
    _code("twilio-20003-code-only", None, 20003, Outcome.FAILED, "twilio.20003"),
    _code("twilio-20429", 429, 20429, Outcome.RETRY, "twilio.20429", {"Retry-After": "7"}, 7.0),
    _code("twilio-20429-no-header", 429, 20429, Outcome.RETRY, "twilio.20429"),
    _code("twilio-20429-code-only", None, 20429, Outcome.RETRY, "twilio.20429"),
    _code("twilio-20429-capped", 429, 20429, Outcome.RETRY, "twilio.20429", {"retry-after": "99999"},
          MAX_RETRY_AFTER),
    _code("twilio-20500", 500, 20500, Outcome.RETRY, "twilio.20500"),
    _code("twilio-20503-retry-after", 503, 20503, Outcome.RETRY, "twilio.20503", {"Retry-After": "2"}, 2.0),
    _code("sdk-status-as-code", 500, 500, Outcome.RETRY, "http.500"),  # no code in the body: the SDK repeats it
    _code("sdk-401-as-code", 401, 401, Outcome.FAILED, "twilio.20003"),
    kit.Case("exc-rest-21211", (None, None, _rest(400, 21211), {}), Outcome.FAILED, "twilio.21211", None),
    kit.Case("exc-rest-20429", (None, None, _rest(429, 20429), {"Retry-After": "3"}), Outcome.RETRY,
             "twilio.20429", 3.0),
    kit.Case("exc-rest-20003", (None, None, _rest(401, 20003), {}), Outcome.FAILED, "twilio.20003", None),
    kit.Case("exc-rest-no-code", (None, None, _rest(502, 502), {}), Outcome.RETRY, "http.502", None),
    kit.Case("exc-service-20429", (None, None, TwilioServiceException("about:blank", "Too many", 429, 20429), {}),
             Outcome.RETRY, "twilio.20429", None),
    kit.Case("exc-bad-json", (None, None, ValueError("Expecting value"), {}), Outcome.UNCERTAIN, "protocol", None),
    kit.Case("exc-unexpected", (None, None, RuntimeError("bug"), {}), Outcome.UNCERTAIN, "error", None),
    kit.Case("nothing", (None, None, None, {}), Outcome.RETRY, "error", None),
]


@pytest.mark.parametrize("case", CASES, ids=kit.case_id)
def test_classify(case):
    kit.check_case(classify, case, max_retry_after=MAX_RETRY_AFTER)


def test_auth_failure_asks_for_an_operator():
    assert "operator action needed" in classify(401, 20003, None, {}).detail
    assert "unsubscribed" in classify(400, 21610, None, {}).detail


# --- receipts and TwiML for the HTTP layer ------------------------------------------------------

RECEIPTS = [
    ({"MessageStatus": "delivered", "MessageSid": "SM1"}, Receipt("delivered", "twilio.delivered", "SM1")),
    ({"MessageStatus": "sent", "MessageSid": "SM1"}, Receipt("sent", "twilio.sent", "SM1")),
    ({"SmsStatus": "delivered", "SmsSid": "SM2"}, Receipt("delivered", "twilio.delivered", "SM2")),
    ({"MessageStatus": "undelivered", "MessageSid": "SM1", "ErrorCode": "30003"}, "failed:twilio.30003"),
    ({"MessageStatus": "undelivered", "MessageSid": "SM1", "ErrorCode": "30005"}, "failed:twilio.30005"),
    ({"MessageStatus": "undelivered", "MessageSid": "SM1", "ErrorCode": "30006"}, "failed:twilio.30006"),
    ({"MessageStatus": "failed", "MessageSid": "SM1", "ErrorCode": "30008"}, "failed:twilio.30008"),
    ({"MessageStatus": "failed", "MessageSid": "SM1", "ErrorCode": "30001"}, "retry:twilio.30001"),
    ({"MessageStatus": "failed", "MessageSid": "SM1"}, "failed:twilio.failed"),
    ({"MessageStatus": "undelivered", "MessageSid": "SM1", "ErrorCode": ""}, "failed:twilio.undelivered"),
    *[({"MessageStatus": s, "MessageSid": "SM1"}, None)
      for s in ("queued", "accepted", "sending", "scheduled", "receiving", "received", "")],
]


@pytest.mark.parametrize(("params", "expected"), RECEIPTS, ids=[str(i) for i in range(len(RECEIPTS))])
def test_message_receipt(params, expected):
    receipt = message_receipt(params)
    if isinstance(expected, str):
        state, code = expected.split(":")
        assert receipt is not None and (receipt.state, receipt.code, receipt.provider_ref) == (state, code, "SM1")
        assert kit.CODE_RE.match(receipt.code)
    else:
        assert receipt == expected


def test_twiml_reply_escapes_and_can_be_empty():
    assert twiml_reply(None).endswith("<Response />")
    xml = twiml_reply("已确认 <1> & OK")
    assert "<Message>已确认 &lt;1&gt; &amp; OK</Message>" in xml


# --- rendering ------------------------------------------------------------------------------------


def recipient(number: str = GOOD, language: str = "zh-CN", public: bool = False) -> Recipient:
    return Recipient(kind="person", id="p-1", address=number, language=language, public=public)


def message(number: str = GOOD, *, language: str = "zh-CN", delivery_id: int = 1, alert=None, **changes):
    msg = kit.sample_message(recipient(number, language), alert=alert, delivery_id=delivery_id)
    return replace(msg, **changes)


@dataclass
class CallbackSink:
    """Receives the simulator's signed callbacks, as warnd's public endpoints would."""

    posts: list[tuple[str, dict[str, str], str]] = field(default_factory=list)  # (url, form, signature)
    base_url: str = ""
    gather_answer: str = "<Response/>"
    runner: web.AppRunner | None = None

    def callback_url(self, kind: str, delivery_id: int) -> str:
        return f"{self.base_url}/{kind}?d={delivery_id}"

    def of(self, kind: str) -> list[tuple[str, dict[str, str], str]]:
        return [p for p in self.posts if f"/{kind}?" in p[0]]

    async def _handle(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.posts.append((self.base_url + request.path_qs, form, request.headers.get("X-Twilio-Signature", "")))
        if request.path.endswith("voice-gather"):
            return web.Response(text=self.gather_answer, content_type="application/xml")
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{kind}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"


@pytest.fixture
async def sink():
    s = CallbackSink()
    await s.start()
    yield s
    await s.runner.cleanup()


@pytest.fixture
async def sim():
    s = TwilioSimulator(ACCOUNT, TOKEN, Scenario(speed=50.0), seed=1)
    await s.start()
    yield s
    await s.stop()


def twilio_config(base_url: str | None, **changes) -> TwilioConfig:
    return TwilioConfig(account_sid=ACCOUNT, auth_token=TOKEN, api_base_url=base_url, from_number=SENDER,
                        connection_limit=8).model_copy(update=changes)


def make_channel(base_url: str | None, callback_url=None, *, timeout: float = 5.0, signature: str = "【县预警中心】",
                 **twilio_changes) -> SmsChannel:
    return SmsChannel(twilio_config(base_url, **twilio_changes),
                      SmsConfig(enabled=True, timeout_seconds=timeout, signature=signature),
                      callback_url or (lambda kind, delivery_id: f"http://127.0.0.1:9/{kind}?d={delivery_id}"))


@pytest.fixture
def offline():
    return make_channel(None)


def test_render_languages(offline):
    out = kit.check_languages(offline, lambda lang: message(language=lang))
    assert out["zh-CN"].text.startswith("【县预警中心】红色暴雨预警")
    assert "立即转移低洼地带人员" in out["zh-CN"].text
    assert "RED Rainstorm warning: Red rainstorm warning. Evacuate low-lying areas now." in out["en"].text
    for rendered in out.values():
        assert rendered.body == rendered.text.encode("utf-8")


def test_render_drill_marking(offline):
    kit.check_drill_marking(offline, lambda alert: message(alert=alert))
    drill = kit.sample_alert(status=Status.EXERCISE)
    assert offline.render(message(alert=drill)).text.startswith("【县预警中心】【演练】")
    assert offline.render(message(alert=drill, language="en")).text.startswith("【县预警中心】[EXERCISE] ")


@pytest.mark.parametrize(("language", "ask"), [("zh-CN", "回复1确认"), ("en", "Reply 1 to confirm")])
def test_render_confirmation_request(offline, language, ask):
    assert ask not in offline.render(message(language=language)).text
    text = offline.render(message(language=language, must_confirm=True)).text
    assert text.endswith(ask + ("" if language == "zh-CN" else "."))
    coded = offline.render(message(language=language, must_confirm=True, short_code="W1A")).text
    assert ask in coded and "W1A" in coded


@pytest.mark.parametrize(("language", "says"), [
    ("zh-CN", "河口村一组网格责任人张三（+8613800000001）尚未确认收到"),
    ("en", "张三 (+8613800000001), responsible for 河口村一组, has not confirmed")])
def test_a_door_ask_names_the_grid_and_the_person_to_wake(offline, language, says):
    about = {"grid": "421126001001001", "grid_name": "河口村一组", "person": "张三", "phone": "+8613800000001"}
    assert says in offline.render(message(language=language, purpose="door_ask", about=about)).text


def test_render_cancel_says_lifted(offline):
    cancel = kit.sample_alert(msg_type=MsgType.CANCEL)
    assert "解除" in offline.render(message(alert=cancel)).text
    assert "CANCELLED" in offline.render(message(alert=cancel, language="en")).text


def test_render_shows_segments(offline):
    zh = offline.render(message(must_confirm=True))
    info = segment_info(zh.text)
    assert info.encoding == "UCS-2" and info.segments == 1
    assert zh.content_type == f"text/plain; charset=utf-8; segments={info.segments}; encoding=UCS-2"
    ascii_signed = make_channel(None, signature="[County Warning Centre] ")
    en = ascii_signed.render(message(language="en", must_confirm=True))
    assert "encoding=GSM-7" in en.content_type and segments_of(en) == segment_info(en.text).segments
    long_alert = kit.sample_alert()
    long_alert = replace(long_alert, infos=(replace(long_alert.infos[0], instruction="立即转移。" * 40),))
    assert segments_of(offline.render(message(alert=long_alert))) == 4  # 14 + 200 + … UTF-16 units / 67


# --- sending: the real SDK against the simulator ---------------------------------------------------


@pytest.fixture
async def channel(sim, sink):
    ch = make_channel(sim.base_url, sink.callback_url)
    yield ch
    await ch.close()


async def send(ch: SmsChannel, msg):
    return await ch.send(msg, ch.render(msg))


async def test_send_delivers_once_with_signed_receipts(channel, sim, sink):
    msg = message(delivery_id=42, must_confirm=True)
    result = await send(channel, msg)
    kit.check_result(result, "send")
    assert result.outcome is Outcome.SENT and result.code == "twilio.queued"
    assert result.provider_ref and result.provider_ref.startswith("SM")
    [record] = sim.messages_to(GOOD)
    assert (record.sid, record.body, record.from_) == (result.provider_ref, channel.render(msg).text, SENDER)
    assert record.status_callback == sink.callback_url("sms-status", 42)
    await sim.wait_idle()
    posts = sink.of("sms-status")
    receipts = [message_receipt(form) for _, form, _ in posts]
    assert [r.state for r in receipts] == ["sent", "delivered"]
    assert all(r.provider_ref == result.provider_ref for r in receipts)
    url, form, signature = posts[-1]
    assert verify_request(TOKEN, url, form, signature)
    assert not verify_request(TOKEN, url, {**form, "MessageStatus": "failed"}, signature)
    assert not verify_request(TOKEN, url.replace("d=42", "d=43"), form, signature)
    assert not verify_request("another-token", url, form, signature)
    assert not verify_request(TOKEN, url, form, "")


async def test_many_messages_each_exactly_once(channel, sim):
    numbers = [f"+86139{i:08d}" for i in range(60)]
    results = await kit.check_send_never_raises(
        channel, [message(n, delivery_id=i) for i, n in enumerate(numbers)])
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert len({r.provider_ref for r in results}) == 60
    assert sim.counts_by_to() == {n: 1 for n in numbers} and not sim.duplicate_bodies()
    assert channel.api.client.http_client.session.connector.limit == 8


async def test_invalid_number_fails_at_once(channel, sim):
    sim.scenario.update({"numbers": {INVALID: {"invalid": True}}})
    result = await send(channel, message(INVALID))
    assert (result.outcome, result.code, result.retry_after) == (Outcome.FAILED, "twilio.21211", None)
    assert sim.stats.requests == 1  # the SDK did not retry


async def test_malformed_number_fails(channel, sim):
    result = await send(channel, message("13800000001"))
    assert (result.outcome, result.code) == (Outcome.FAILED, "twilio.21211")


async def test_429_retries_with_retry_after(channel, sim):
    sim.scenario.update({"faults": {"rate_429": 1.0, "retry_after": 7}})
    result = await send(channel, message())
    assert (result.outcome, result.code, result.retry_after) == (Outcome.RETRY, "twilio.20429", 7.0)
    assert sim.stats.requests == 1 and not sim.messages


async def test_5xx_retries(channel, sim):
    sim.scenario.update({"faults": {"rate_5xx": 1.0}})
    result = await send(channel, message())
    assert result.outcome is Outcome.RETRY and result.code in ("twilio.20500", "twilio.20503")
    assert sim.stats.requests == 1


async def test_bad_credentials_fail_for_the_operator(sim, sink):
    ch = make_channel(sim.base_url, sink.callback_url, auth_token="wrong")
    try:
        result = await send(ch, message())
    finally:
        await ch.close()
    assert (result.outcome, result.code) == (Outcome.FAILED, "twilio.20003")
    assert "operator action needed" in result.detail and not sim.messages


async def test_timeout_is_uncertain(sim, sink):
    sim.scenario.update({"speed": 1.0, "faults": {"latency": 2.0}})
    ch = make_channel(sim.base_url, sink.callback_url, timeout=0.2)
    try:
        result = await send(ch, message())
    finally:
        await ch.close()
    assert (result.outcome, result.code) == (Outcome.UNCERTAIN, "timeout")


async def test_messaging_service_sender(sim, sink):
    ch = make_channel(sim.base_url, sink.callback_url, from_number=None, messaging_service_sid="MG" + "1" * 32)
    try:
        result = await send(ch, message())
    finally:
        await ch.close()
    assert result.outcome is Outcome.SENT and result.code == "twilio.accepted"
    [record] = sim.messages.values()
    assert record.messaging_service_sid == "MG" + "1" * 32


async def test_region_and_edge_from_the_environment_are_ignored(channel, sim, monkeypatch):
    monkeypatch.setenv("TWILIO_REGION", "au1")
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    result = await send(channel, message())
    assert result.outcome is Outcome.SENT and len(sim.messages) == 1


def test_a_sender_is_required():
    with pytest.raises(ValueError, match="from_number"):
        make_channel(None, from_number=None)


# --- sending: transport trouble ---------------------------------------------------------------------


@pytest.fixture
async def trouble():
    async with kit.TroubleServer(delay=5.0) as server:
        yield server


@pytest.mark.parametrize(("behaviour", "outcome", "code"), [
    ("status/500", Outcome.RETRY, "http.500"),  # not a Twilio body: the SDK's code is the status
    ("status/429", Outcome.RETRY, "http.429"),
    ("status/410", Outcome.FAILED, "http.410"),
    ("status/401", Outcome.FAILED, "twilio.20003"),
])
async def test_trouble_statuses(trouble, behaviour, outcome, code):
    ch = make_channel(trouble.url(behaviour))
    try:
        result = await send(ch, message())
    finally:
        await ch.close()
    kit.check_result(result, behaviour)
    assert (result.outcome, result.code) == (outcome, code)


async def test_refused_connection_retries(trouble):
    ch = make_channel(trouble.refused_url)
    try:
        result = await send(ch, message())
    finally:
        await ch.close()
    assert (result.outcome, result.code) == (Outcome.RETRY, "connect")


async def test_silent_server_is_uncertain():
    release = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # take the request, never answer
        await release.wait()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ch = make_channel(f"http://127.0.0.1:{port}", timeout=0.3)
    try:
        result = await send(ch, message())
    finally:
        await ch.close()
        release.set()
        server.close()
        await server.wait_closed()
    assert (result.outcome, result.code) == (Outcome.UNCERTAIN, "timeout")


async def test_client_is_built_lazily_and_closed_once(offline):
    await offline.close()  # nothing built yet
    session = offline.api.client.http_client.session  # built on first use, inside the running loop
    assert session.connector.limit == 8 and offline.api.client.api.base_url == "https://api.twilio.com"
    await offline.close()
    assert session.closed
    await offline.close()
