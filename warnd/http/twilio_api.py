"""Twilio webhooks: message and call status, inbound SMS replies, key presses.

Every request's X-Twilio-Signature is checked against the configured public
base URL (what Twilio called, not what a proxy forwarded); a bad one gets 403
and changes nothing. Each delivery's callback URL carries its id, signed, so a
receipt settles the delivery even if the provider's SID was never stored; a
status callback's also names the attempt, so it settles only that attempt.

Inbound is applied once per provider message: a replayed SMS reply (the same
MessageSid) or key press (the same CallSid) is answered 200 with an empty
TwiML response and changes nothing. Empty, not the first answer again: a
captured request replayed must not make warnd text or call anyone.
"""
from __future__ import annotations

from aiohttp import web

from warnd.domain.errors import WarndError
from warnd.domain.signing import verify
from warnd.engine.node import CALLBACK_PATHS as PATHS
from warnd.http.keys import NODE
from warnd_channels import twilio_common

EMPTY = twilio_common.twiml_reply(None)  # <Response/>: nothing texted back, nothing said


async def _params(request: web.Request) -> dict[str, str]:
    """The form, after the signature over it checked out."""
    node = request.app[NODE]
    form = await request.post()
    params = {k: str(v) for k, v in form.items()}
    url = node.config.public_base_url.rstrip("/") + request.path_qs
    signature = request.headers.get("X-Twilio-Signature", "")
    if not twilio_common.verify_request(node.config.twilio.auth_token, url, params, signature):
        raise WarndError("twilio.bad_signature")
    return params


def _delivery(request: web.Request, kind: str) -> tuple[int, int | None]:
    """(delivery id, attempt) signed into the URL; the attempt is None in URLs made before
    callbacks named it (still honoured, matched by SID alone)."""
    node = request.app[NODE]
    value = verify(node.secret_key, kind, request.query.get("d", ""), node.clock.now())
    delivery, _, attempt = value.partition(".")
    return int(delivery), int(attempt) if attempt else None


def _twiml(xml: str) -> web.Response:
    return web.Response(text=xml, content_type="application/xml")


async def _status(request: web.Request, channel: str, kind: str, parse) -> web.Response:  # noqa: ANN001
    """A message or call status callback: a receipt for the delivery named in the signed URL."""
    receipt = parse(await _params(request))
    if receipt is not None:
        delivery_id, attempt = _delivery(request, kind)
        await request.app[NODE].receipts.apply(channel, delivery_id, receipt.state, receipt.code,
                                               receipt.provider_ref or None, receipt.detail, attempt)
    return web.Response(status=204)


async def sms_status(request: web.Request) -> web.Response:
    return await _status(request, "sms", "sms-status", twilio_common.message_receipt)


async def voice_status(request: web.Request) -> web.Response:
    return await _status(request, "voice", "voice-status", twilio_common.call_receipt)


async def sms_inbound(request: web.Request) -> web.Response:
    params = await _params(request)
    node = request.app[NODE]
    answer = await node.answers.sms_reply(params.get("From", ""), params.get("Body", ""),
                                          params.get("MessageSid") or None)
    node.metrics.answers.labels("sms", "replayed" if answer.replayed else answer.decision.kind.value).inc()
    return _twiml(EMPTY if answer.replayed else twilio_common.twiml_reply(answer.text))


async def voice_gather(request: web.Request) -> web.Response:
    params = await _params(request)
    node = request.app[NODE]
    delivery_id, _ = _delivery(request, "voice-gather")
    pressed = await node.answers.key_press(delivery_id, params.get("Digits", ""), params.get("To", ""),
                                           params.get("CallSid") or None)
    if pressed is None:  # this call's key press was applied before
        node.metrics.answers.labels("voice", "replayed").inc()
        return _twiml(EMPTY)
    node.metrics.answers.labels("voice", pressed.kind.value).inc()
    # in the callee's language and the call's voice, and 演练/Exercise when it is one (KeyPress.text)
    return _twiml(twilio_common.twiml_say(pressed.text, pressed.language, node.config.voice.tts))


def routes(enabled: frozenset[str]) -> list[web.RouteDef]:
    """Only the enabled channels' webhooks: a node without SMS takes no SMS reply, signed or not."""
    out = []
    if "sms" in enabled:
        out += [web.post(PATHS["sms-status"], sms_status), web.post("/twilio/sms/inbound", sms_inbound)]
    if "voice" in enabled:
        out += [web.post(PATHS["voice-status"], voice_status), web.post(PATHS["voice-gather"], voice_gather)]
    return out
