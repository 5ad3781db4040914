"""What Twilio posts to warnd: message and call status, SMS replies, key presses.

Each handler is declared in its channel's spec (`Inbound`) and reached through the
generic route `/providers/{channel}/{kind}`, or the older `/twilio/...` URL, which keeps
working. Every request's X-Twilio-Signature is checked against the configured public
base URL (what Twilio called, not what a proxy forwarded); a bad one gets 403 and
changes nothing. A status callback's URL carries its delivery (and attempt), signed by
warnd, so a receipt settles that delivery even if the SID was never stored.

A replayed reply (the same MessageSid) or key press (the same CallSid) is answered with
an empty TwiML response: a captured request replayed must not make warnd text or call
anyone.
"""
from __future__ import annotations

from warnd.domain.errors import WarndError

from .base import InboundRequest, InboundResponse, InboundSink, KeyPress, Reply
from .twilio_common import call_receipt, message_receipt, twiml_reply, twiml_say, verify_request

EMPTY = twiml_reply(None)  # <Response/>: nothing texted back, nothing said
NO_CONTENT = InboundResponse(204)


def _form(channel, request: InboundRequest) -> dict[str, str]:  # noqa: ANN001 - an SmsChannel or VoiceChannel
    """The form, after the signature over it checked out."""
    signature = request.headers.get("X-Twilio-Signature", "")
    if not verify_request(channel.twilio.auth_token, request.url, request.form, signature):
        raise WarndError("twilio.bad_signature")
    return dict(request.form)


def _twiml(xml: str) -> InboundResponse:
    return InboundResponse(200, xml.encode("utf-8"), "application/xml")


async def _status(channel, request: InboundRequest, sink: InboundSink, parse) -> InboundResponse:  # noqa: ANN001
    receipt = parse(_form(channel, request))
    if receipt is not None:
        delivery_id, attempt = request.signed_delivery()
        await sink.receipt(channel.name, delivery_id, receipt, attempt)
    return NO_CONTENT


async def message_status(channel, request: InboundRequest, sink: InboundSink) -> InboundResponse:  # noqa: ANN001
    return await _status(channel, request, sink, message_receipt)


async def call_status(channel, request: InboundRequest, sink: InboundSink) -> InboundResponse:  # noqa: ANN001
    return await _status(channel, request, sink, call_receipt)


async def sms_reply(channel, request: InboundRequest, sink: InboundSink) -> InboundResponse:  # noqa: ANN001
    form = _form(channel, request)
    answered = await sink.reply(channel.name, Reply(form.get("MessageSid", ""), form.get("From", ""),
                                                    form.get("Body", "")))
    return _twiml(EMPTY if answered.replayed else twiml_reply(answered.text or None))


async def key_press(channel, request: InboundRequest, sink: InboundSink) -> InboundResponse:  # noqa: ANN001
    form = _form(channel, request)
    delivery_id, _ = request.signed_delivery()
    answered = await sink.key_press(channel.name, KeyPress(delivery_id, form.get("Digits", ""), form.get("To", ""),
                                                           form.get("CallSid") or None))
    if answered.replayed:
        return _twiml(EMPTY)
    # in the callee's language and the call's voice, and 演练/Exercise when it is one
    return _twiml(twiml_say(answered.text, answered.language, channel.config.tts))
