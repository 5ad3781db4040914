"""Automatic voice calls (智能外呼) through Twilio (calls.create_async).

The call says the warning in the recipient's language `voice.repeat` times, in
the TTS voice `voice.tts` names for that language (Polly.Zhiyu for Chinese);
when the person must confirm (叫应) it then asks for a key press, which Twilio
POSTs to the signed Gather action URL. Twilio limits inline TwiML to 4000
characters, so the spoken text is shortened, at a sentence end when one is
near, until the script fits. A second call is a real duplicate: a call whose
create timed out is UNCERTAIN.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from warnd.config import TtsVoice, TwilioConfig, VoiceConfig
from warnd.render import render as render_template
from warnd.render import warning_context

from . import twilio_inbound
from .base import Audience, ChannelSpec, Inbound, InboundKind, Message, Outcome, Rendered, SendResult
from .twilio_common import (LOOKUP_PAGE, CallbackUrl, ProviderSend, Receipt, TwilioApi, call_receipt, sender,
                            speech_for, twiml_announce, twiml_gather)

log = logging.getLogger("warnd_channels.voice")

TWIML_LIMIT = 4000  # characters Twilio accepts in calls.create(twiml=…)
STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]
PROMPTS = {"zh": "确认收到请按1。", "en": "To confirm that you received this warning, press 1."}
SENTENCE_END = re.compile(r"[。！？；.!?;]")
ELLIPSIS = "……"


def prompt_for(language: str) -> str:
    return PROMPTS.get(language.split("-")[0].lower(), PROMPTS["zh"])


def fit_script(text: str, language: str, repeat: int, action_url: str | None,
               limit: int = TWIML_LIMIT, tts: Mapping[str, TtsVoice] | None = None) -> tuple[str, str]:
    """(TwiML, the text it says): the longest prefix of `text` whose script fits `limit`.

    `action_url` None: no key press is asked for. `tts`: the voice per language (every
    <Say> names it; None: the defaults). Raises ValueError when not even a one-character
    text fits (an absurd callback URL).
    """
    def script(spoken: str) -> str:
        if action_url is None:
            return twiml_announce([spoken], language, repeat, tts)
        return twiml_gather([spoken], language, repeat, action_url, prompt_for(language), tts)

    full = script(text)
    if len(full) <= limit:
        return full, text
    low, high = 0, len(text)  # the longest cut (plus ELLIPSIS) that fits: escaping makes it non-linear
    while low < high:
        mid = (low + high + 1) // 2
        if len(script(text[:mid] + ELLIPSIS)) <= limit:
            low = mid
        else:
            high = mid - 1
    if low == 0:
        raise ValueError(f"the call script does not fit {limit} characters")
    cut = text[:low]
    ends = [m.end() for m in SENTENCE_END.finditer(cut)]
    spoken = cut[:ends[-1]] if ends and ends[-1] >= low * 3 // 4 else cut + ELLIPSIS
    return script(spoken), spoken


class VoiceChannel:
    name = "voice"

    def __init__(self, twilio: TwilioConfig, voice: VoiceConfig, callback_url: CallbackUrl) -> None:
        self.twilio = twilio
        self.config = voice
        self.callback_url = callback_url
        self.api = TwilioApi(twilio)
        self._from = sender(twilio).get("from_")
        if not self._from:
            raise ValueError("voice calls need twilio.from_number (a Messaging Service can't call)")

    def render(self, message: Message) -> Rendered:
        language = message.recipient.language
        context = warning_context(message.alert, message.level, language)
        context["about"] = message.about or {}
        template = "door_ask" if message.purpose == "door_ask" else "say"
        text = render_template("voice", template, language, context)
        speech = speech_for(language, self.config.tts)
        content_type = (f"text/plain; charset=utf-8; language={speech.language}; voice={speech.voice or 'default'}; "
                        f"repeat={self.config.repeat}; confirm={'yes' if message.must_confirm else 'no'}")
        return Rendered(text.encode("utf-8"), content_type, text)

    async def send(self, message: Message, rendered: Rendered) -> SendResult:
        """calls.create once; never raises (cancellation still propagates)."""
        language = message.recipient.language
        action = self.callback_url("voice-gather", message.delivery_id) if message.must_confirm else None
        try:
            twiml, spoken = fit_script(rendered.text, language, self.config.repeat, action, tts=self.config.tts)
        except ValueError as exc:
            return SendResult(Outcome.FAILED, "twiml.too-long", detail=str(exc))
        if spoken != rendered.text:
            log.warning("call text shortened to fit TwiML", extra={
                "delivery": message.delivery_id, "chars": len(rendered.text), "spoken": len(spoken)})
        status_callback = self.callback_url("voice-status", message.delivery_id)
        result = await self.api.create(
            lambda client: client.calls.create_async(
                to=message.recipient.address, from_=self._from, twiml=twiml,
                status_callback=status_callback, status_callback_event=STATUS_EVENTS,
                status_callback_method="POST", timeout=self.config.ring_seconds),
            self.config.timeout_seconds)
        log.log(logging.DEBUG if result.outcome is Outcome.SENT else logging.INFO, "voice call",
                extra={"delivery": message.delivery_id, "outcome": result.outcome.value, "code": result.code,
                       "sid": result.provider_ref})
        return result

    async def status(self, sid: str) -> Receipt | None:
        """The call's state at Twilio (reconciliation, see TwilioApi.status)."""
        return await self.api.status(
            sid, lambda client: client.calls(sid).fetch_async(),
            lambda c: call_receipt({"CallStatus": str(c.status or ""), "CallSid": sid,
                                    "CallDuration": "" if c.duration is None else str(c.duration)}),
            self.config.timeout_seconds)

    async def find(self, to: str, since: datetime) -> list[ProviderSend] | None:
        """Calls from us to `to` created since `since`, newest first (an uncertain call: is it
        at Twilio?); None when the lookup failed. Not filtered by StartTime: Twilio leaves it
        empty until a call is dialled, and a queued call missed would ring twice."""
        return await self.api.find(
            lambda client: client.calls.stream_async(to=to, from_=self._from, page_size=LOOKUP_PAGE),
            _call_send, since, self.config.timeout_seconds)

    async def close(self) -> None:
        await self.api.close()


def _call_send(c: Any) -> ProviderSend:
    """A listed call, read like its status callback."""
    sid = str(c.sid)
    receipt = call_receipt({"CallStatus": str(c.status or ""), "CallSid": sid,
                            "CallDuration": "" if c.duration is None else str(c.duration)})
    created = c.date_created or datetime.now(timezone.utc)
    return ProviderSend(sid, created, receipt or Receipt("sent", f"twilio.{c.status or ''}", sid))


SPEC = ChannelSpec(
    name="voice", audience=Audience.PERSON, address="phone",
    dedupes=False,  # a second call is a real duplicate
    public=False, config_model=VoiceConfig,
    build=lambda section, config, callback_url: VoiceChannel(config.twilio, section, callback_url),
    callbacks=True, status_lookup=True, calls=True,
    inbound={"status": Inbound(InboundKind.RECEIPTS, twilio_inbound.call_status, "/twilio/voice/status"),
             "gather": Inbound(InboundKind.KEY_PRESSES, twilio_inbound.key_press, "/twilio/voice/gather")})
