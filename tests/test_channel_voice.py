"""The voice channel: call receipts, TwiML, rendering, and the real SDK against the Twilio simulator."""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import replace

import pytest
from test_channel_sms import ACCOUNT, GOOD, INVALID, SENDER, TOKEN, CallbackSink, message, recipient

from warnd.config import TtsVoice, TwilioConfig, VoiceConfig
from warnd.domain.delivery import refused
from warnd.domain.model import MsgType, Status
from warnd.sim.twilio import TwilioSimulator
from warnd.sim.twilio_behaviour import Scenario
from warnd_channels import conformance as kit
from warnd_channels.base import Outcome
from warnd_channels.twilio_common import (Receipt, Speech, call_receipt, say_language, speech_for, twiml_announce,
                                          twiml_gather, twiml_say, verify_request)
from warnd_channels.voice import TWIML_LIMIT, VoiceChannel, fit_script

ACTION = "https://warnd.example/twilio/voice/gather?d=abc&x=1"

# --- receipts and TwiML --------------------------------------------------------------------------

CALL_RECEIPTS = [
    ("completed", Receipt("delivered", "twilio.completed", "CA1", "answered, 12 s")),
    ("no-answer", Receipt("retry", "twilio.no-answer", "CA1", "call no-answer")),
    ("busy", Receipt("retry", "twilio.busy", "CA1", "call busy")),
    ("failed", Receipt("retry", "twilio.failed", "CA1", "call failed")),
    ("canceled", Receipt("retry", "twilio.canceled", "CA1", "call canceled")),
    *[(status, None) for status in ("queued", "initiated", "ringing", "in-progress", "")],
]


@pytest.mark.parametrize(("status", "expected"), CALL_RECEIPTS, ids=[s or "empty" for s, _ in CALL_RECEIPTS])
def test_call_receipt(status, expected):
    params = {"CallSid": "CA1", "CallStatus": status}
    if status == "completed":
        params["CallDuration"] = "12"
    assert call_receipt(params) == expected


@pytest.mark.parametrize(("language", "expected"),
                         [("zh-CN", "zh-CN"), ("zh", "zh-CN"), ("en", "en-US"), ("EN", "en-US"), ("en-gb", "en-GB")])
def test_say_language(language, expected):
    assert say_language(language) == expected


def says_of(twiml: str) -> list[tuple[str | None, str | None]]:
    """(voice, language) of every <Say>, inside a <Gather> too."""
    return [(s.get("voice"), s.get("language")) for s in ElementTree.fromstring(twiml).iter("Say")]


# Twilio's <Say> voice names: "Polly.<VoiceId>" for Amazon Polly; Polly's Mandarin voice Zhiyu
# speaks cmn-CN. Without a voice the account's default speaks, which may not know Chinese.
SPEECH = [("zh-CN", Speech("cmn-CN", "Polly.Zhiyu")), ("zh", Speech("cmn-CN", "Polly.Zhiyu")),
          ("en", Speech("en-US", "Polly.Joanna")), ("EN-us", Speech("en-US", "Polly.Joanna")),
          ("fr-FR", Speech("fr-FR"))]


@pytest.mark.parametrize(("language", "expected"), SPEECH, ids=[lang for lang, _ in SPEECH])
def test_every_language_gets_its_configured_voice(language, expected):
    assert speech_for(language) == speech_for(language, VoiceConfig().tts) == expected


def test_a_configured_voice_replaces_the_default_and_keeps_the_recipients_language_when_it_names_none():
    tts = {"zh": TtsVoice(voice="Google.cmn-CN-Standard-A", language="cmn-CN"), "en-GB": TtsVoice(voice="Polly.Amy")}
    assert speech_for("zh-CN", tts) == Speech("cmn-CN", "Google.cmn-CN-Standard-A")
    assert speech_for("en-gb", tts) == Speech("en-GB", "Polly.Amy")
    assert speech_for("en", tts) == Speech("en-US")  # not configured: the account's default voice


def test_twiml_gather_is_valid_xml_with_the_action():
    xml = twiml_gather(["暴雨红色预警 <立即> 转移 & 撤离"], "zh-CN", 2, ACTION, "确认收到请按1。")
    root = ElementTree.fromstring(xml)
    assert root.tag == "Response"
    says = root.findall("Say")
    assert [s.text for s in says] == ["暴雨红色预警 <立即> 转移 & 撤离"] * 2 and len(root.findall("Pause")) == 1
    [gather] = root.findall("Gather")
    assert (gather.get("numDigits"), gather.get("action"), gather.get("method")) == ("1", ACTION, "POST")
    assert gather.find("Say").text == "确认收到请按1。"
    assert list(root)[-1] is gather  # asked after the warning
    assert says_of(xml) == [("Polly.Zhiyu", "cmn-CN")] * 3  # the prompt inside the Gather too


def test_twiml_say_and_announce_name_the_voice():
    root = ElementTree.fromstring(twiml_say("已确认收到预警，谢谢。", "en"))
    assert root.find("Say").text == "已确认收到预警，谢谢。"
    assert says_of(twiml_say("已确认收到预警，谢谢。", "en")) == [("Polly.Joanna", "en-US")]
    assert says_of(twiml_say("已确认", "zh-CN")) == [("Polly.Zhiyu", "cmn-CN")]
    assert says_of(twiml_announce(["a", "b"], "en", 2)) == [("Polly.Joanna", "en-US")] * 4
    own = {"en-US": TtsVoice(voice="Polly.Matthew")}
    assert says_of(twiml_announce(["a"], "en", 1, own)) == [("Polly.Matthew", "en-US")]


def test_fit_script_keeps_short_texts_whole():
    twiml, spoken = fit_script("短的预警。", "zh-CN", 3, ACTION)
    assert spoken == "短的预警。" and twiml.count("短的预警。") == 3


@pytest.mark.parametrize("action", [ACTION, None])
@pytest.mark.parametrize("unit", ["撤离低洼地带。", "A & B <go> now. ", "预警🌧"])
def test_fit_script_truncates_to_twilios_limit(action, unit):
    text = unit * 2000
    twiml, spoken = fit_script(text, "zh-CN", 3, action)
    assert len(twiml) <= TWIML_LIMIT and len(twiml) > TWIML_LIMIT - 200
    assert text.startswith(spoken.removesuffix("……"))
    root = ElementTree.fromstring(twiml)  # escaping never cut in half
    assert [s.text for s in root.findall("Say")][:3] == [spoken] * 3
    assert (root.find("Gather") is not None) == (action is not None)


def test_fit_script_cuts_at_a_sentence_end():
    _, spoken = fit_script("第一句话很长。" * 300, "zh-CN", 2, ACTION)
    assert spoken.endswith("。") and not spoken.endswith("……")


def test_fit_script_refuses_an_impossible_url():
    with pytest.raises(ValueError):
        fit_script("预警", "zh-CN", 1, "https://x/" + "a" * 5000)


# --- rendering -----------------------------------------------------------------------------------


def twilio_config(base_url: str | None, **changes) -> TwilioConfig:
    return TwilioConfig(account_sid=ACCOUNT, auth_token=TOKEN, api_base_url=base_url, from_number=SENDER,
                        connection_limit=4).model_copy(update=changes)


def make_channel(base_url: str | None, callback_url=None, *, timeout: float = 5.0, **changes) -> VoiceChannel:
    return VoiceChannel(twilio_config(base_url, **changes),
                        VoiceConfig(enabled=True, timeout_seconds=timeout, repeat=2, ring_seconds=20),
                        callback_url or (lambda kind, delivery_id: f"http://127.0.0.1:9/{kind}?d={delivery_id}"))


@pytest.fixture
def offline():
    return make_channel(None)


def test_render_languages(offline):
    out = kit.check_languages(offline, lambda lang: message(language=lang))
    assert out["zh-CN"].text == "长沙市气象台发布红色暴雨预警。暴雨红色预警。立即转移低洼地带人员。"
    assert out["en"].text.startswith("Changsha Meteorological Observatory has issued a red Rainstorm warning.")
    assert "language=cmn-CN; voice=Polly.Zhiyu" in out["zh-CN"].content_type
    assert "language=en-US; voice=Polly.Joanna" in out["en"].content_type


def test_render_drill_marking(offline):
    kit.check_drill_marking(offline, lambda alert: message(alert=alert))
    text = offline.render(message(alert=kit.sample_alert(status=Status.EXERCISE))).text
    assert text.startswith("演练，演练。") and text.endswith("以上为演练信息。")


def test_render_cancel(offline):
    assert "解除" in offline.render(message(alert=kit.sample_alert(msg_type=MsgType.CANCEL))).text


def test_a_from_number_is_required():
    with pytest.raises(ValueError, match="from_number"):
        make_channel(None, from_number=None, messaging_service_sid="MG" + "1" * 32)


# --- calls: the real SDK against the simulator -----------------------------------------------------


@pytest.fixture
async def sink():
    s = CallbackSink(gather_answer='<Response><Say language="zh-CN">已确认收到预警，谢谢。</Say></Response>')
    await s.start()
    yield s
    await s.runner.cleanup()


@pytest.fixture
async def sim():
    s = TwilioSimulator(ACCOUNT, TOKEN, Scenario(speed=50.0), seed=1)
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def channel(sim, sink):
    ch = make_channel(sim.base_url, sink.callback_url)
    yield ch
    await ch.close()


async def call(ch: VoiceChannel, msg):
    return await ch.send(msg, ch.render(msg))


async def test_call_answered_with_1_is_confirmed_and_completed(channel, sim, sink):
    sim.scenario.update({"numbers": {GOOD: {"press": "1", "answer_after": 1, "press_after": 1}}})
    msg = message(delivery_id=7, must_confirm=True)
    result = await call(channel, msg)
    kit.check_result(result, "call")
    assert result.outcome is Outcome.SENT and result.code == "twilio.queued" and result.provider_ref.startswith("CA")
    [record] = sim.calls_to(GOOD)
    assert record.sid == result.provider_ref and record.from_ == SENDER and record.timeout == 20
    assert record.events == {"initiated", "ringing", "answered", "completed"}
    assert record.status_callback == sink.callback_url("voice-status", 7)
    await sim.wait_idle()
    spoken = channel.render(msg).text
    assert [s.text for s in record.says] == [spoken, spoken, "确认收到请按1。", "已确认收到预警，谢谢。"]
    # the call's script as Twilio got it: every Say in the configured voice (the sink's answer is its own)
    assert says_of(record.twiml) == [("Polly.Zhiyu", "cmn-CN")] * 3
    assert [(s.voice, s.language) for s in record.says[:3]] == [("Polly.Zhiyu", "cmn-CN")] * 3 and not record.errors
    [(url, form, signature)] = sink.of("voice-gather")
    assert form["Digits"] == "1" and url == sink.callback_url("voice-gather", 7)
    assert verify_request(TOKEN, url, form, signature)
    assert not verify_request(TOKEN, url, {**form, "Digits": "2"}, signature)
    statuses = [call_receipt(form) for _, form, _ in sink.of("voice-status")]
    assert [r.state for r in statuses if r] == ["delivered"]
    assert statuses[-1].provider_ref == result.provider_ref
    assert all(verify_request(TOKEN, u, f, s) for u, f, s in sink.of("voice-status"))


async def test_call_without_confirmation_only_speaks(channel, sim, sink):
    sim.scenario.update({"numbers": {GOOD: {"press": "1"}}})
    result = await call(channel, message(language="en"))
    assert result.outcome is Outcome.SENT
    await sim.wait_idle()
    [record] = sim.calls_to(GOOD)
    assert "<Gather" not in record.twiml and record.digits is None and not sink.of("voice-gather")
    assert says_of(record.twiml) == [("Polly.Joanna", "en-US")] * 2
    assert [(s.voice, s.language) for s in record.says] == [("Polly.Joanna", "en-US")] * 2


async def test_a_configured_voice_is_used_in_every_say_of_a_long_call(sim, sink):
    tts = {"zh-CN": TtsVoice(voice="Polly.Zhiyu-Neural", language="cmn-CN")}
    ch = VoiceChannel(twilio_config(sim.base_url), VoiceConfig(enabled=True, repeat=3, tts=tts), sink.callback_url)
    alert = kit.sample_alert()
    alert = replace(alert, infos=(replace(alert.infos[0], instruction="立即转移低洼地带人员。" * 400),))
    try:
        result = await call(ch, message(alert=alert, must_confirm=True))
    finally:
        await ch.close()
    assert result.outcome is Outcome.SENT
    [record] = sim.calls.values()
    assert len(record.twiml) <= TWIML_LIMIT  # shortened with the voice attributes counted
    assert says_of(record.twiml) == [("Polly.Zhiyu-Neural", "cmn-CN")] * 4


@pytest.mark.parametrize("behaviour", ["no-answer", "busy"])
async def test_unanswered_call_asks_for_a_redial(channel, sim, sink, behaviour):
    sim.scenario.update({"numbers": {GOOD: {"call": behaviour}}})
    await call(channel, message(must_confirm=True))
    await sim.wait_idle()
    final = call_receipt(sink.of("voice-status")[-1][1])
    assert (final.state, final.code) == ("retry", f"twilio.{behaviour}")


async def test_invalid_number_fails_without_retry(channel, sim):
    sim.scenario.update({"numbers": {INVALID: {"invalid": True}}})
    result = await call(channel, message(INVALID, must_confirm=True))
    assert (result.outcome, result.code, result.retry_after) == (Outcome.FAILED, "twilio.21211", None)
    assert sim.stats.requests == 1 and not sim.calls


async def test_429_retries_with_retry_after(channel, sim):
    sim.scenario.update({"faults": {"rate_429": 1.0, "retry_after": 4}})
    result = await call(channel, message())
    assert (result.outcome, result.code, result.retry_after) == (Outcome.RETRY, "twilio.20429", 4.0)
    assert refused(result)  # not a redial: see test_delivery_state


async def test_a_5xx_is_a_refusal_too(channel, sim):
    sim.scenario.update({"faults": {"rate_5xx": 1.0}})
    result = await call(channel, message())
    assert result.outcome is Outcome.RETRY and result.code in ("twilio.20500", "twilio.20503") and refused(result)
    assert not sim.calls


async def test_bad_credentials_fail_for_the_operator(sim, sink):
    ch = make_channel(sim.base_url, sink.callback_url, auth_token="wrong")
    try:
        result = await call(ch, message())
    finally:
        await ch.close()
    assert (result.outcome, result.code) == (Outcome.FAILED, "twilio.20003") and not sim.calls


async def test_long_warning_is_shortened_to_fit(channel, sim):
    alert = kit.sample_alert()
    alert = replace(alert, infos=(replace(alert.infos[0], instruction="立即转移低洼地带人员。" * 400),))
    result = await call(channel, message(alert=alert, must_confirm=True))
    assert result.outcome is Outcome.SENT
    [record] = sim.calls.values()
    assert len(record.twiml) <= TWIML_LIMIT and "<Gather" in record.twiml
