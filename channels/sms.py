"""SMS through Twilio (messages.create_async).

One message per delivery; its StatusCallback URL carries the delivery id,
signed by the engine, so a receipt settles the delivery even if the SID was
never stored. Nobody de-duplicates an SMS, so a send whose outcome is unknown
(a timeout after the request went out) is UNCERTAIN, never blindly re-sent.
The rendered segment count goes into `Rendered.content_type`, where the API
and the logs show what a message costs, and the dispatcher's rate counts it
(`sms.rate_per_second` is segments a second, as Twilio counts a long code's).
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from warnd.config import SmsConfig, TwilioConfig
from warnd.domain.rate_limit import segments_in
from warnd.domain.sms_segments import segment_info
from warnd.render import render as render_template
from warnd.render import warning_context

from . import twilio_inbound
from .base import Audience, ChannelSpec, Inbound, InboundKind, Message, Outcome, Rendered, SendResult
from .twilio_common import (LOOKUP_PAGE, CallbackUrl, ProviderReply, ProviderSend, Receipt, TwilioApi,
                            message_receipt, sender)

log = logging.getLogger("warnd_channels.sms")
TEMPLATES = {"warning": "text", "door_ask": "door_ask", "door_to_door": "door_to_door", "door_alarm": "door_alarm"}
REPLIES_PAGE = 1000  # Twilio's largest page
REPLIES_LIMIT = 50_000  # replies read per catch-up at most (a county's people, several times over)
REPLIES_SECONDS = 60.0  # for the whole catch-up: it pages through Twilio's log


class SmsChannel:
    name = "sms"

    def __init__(self, twilio: TwilioConfig, sms: SmsConfig, callback_url: CallbackUrl) -> None:
        self.twilio = twilio
        self.config = sms
        self.callback_url = callback_url
        self.api = TwilioApi(twilio)
        self._sender = sender(twilio)  # fails at build time when neither is configured

    def render(self, message: Message) -> Rendered:
        language = message.recipient.language
        context = warning_context(message.alert, message.level, language)
        context.update(signature=self.config.signature, must_confirm=message.must_confirm,
                       short_code=message.short_code, link=message.link, about=message.about or {})
        text = render_template("sms", TEMPLATES.get(message.purpose, "text"), language, context)
        info = segment_info(text)
        log.debug("sms rendered", extra={"delivery": message.delivery_id, "segments": info.segments,
                                         "encoding": info.encoding, "chars": info.chars})
        return Rendered(text.encode("utf-8"),
                        f"text/plain; charset=utf-8; segments={info.segments}; encoding={info.encoding}",
                        text)

    async def send(self, message: Message, rendered: Rendered) -> SendResult:
        """messages.create once; never raises (cancellation still propagates)."""
        status_callback = self.callback_url("sms-status", message.delivery_id)
        result = await self.api.create(
            lambda client: client.messages.create_async(
                to=message.recipient.address, body=rendered.text, status_callback=status_callback,
                **self._sender),
            self.config.timeout_seconds)
        log.log(logging.DEBUG if result.outcome is Outcome.SENT else logging.INFO, "sms send",
                extra={"delivery": message.delivery_id, "outcome": result.outcome.value, "code": result.code,
                       "sid": result.provider_ref, "segments": segments_of(rendered)})
        return result

    async def send_notice(self, address: str, text: str) -> SendResult:
        """A text of no warning (the daily summary, a roster ask): messages.create once,
        without a status callback (a notice is settled by the provider's acceptance)."""
        return await self.api.create(
            lambda client: client.messages.create_async(to=address, body=text, **self._sender),
            self.config.timeout_seconds)

    async def status(self, sid: str) -> Receipt | None:
        """The message's state at Twilio (reconciliation, see TwilioApi.status)."""
        return await self.api.status(
            sid, lambda client: client.messages(sid).fetch_async(),
            lambda m: message_receipt({"MessageStatus": str(m.status or ""), "MessageSid": sid,
                                       "ErrorCode": "" if m.error_code is None else str(m.error_code)}),
            self.config.timeout_seconds)

    async def find(self, to: str, since: datetime) -> list[ProviderSend] | None:
        """Messages from us to `to` created since `since`, newest first (an uncertain send: is
        it at Twilio?); None when the lookup failed. Twilio filters DateSent by day (UTC), so
        the list asks for `since`'s day on and the rest is cut by creation time."""
        sender = {"from_": self._sender["from_"]} if "from_" in self._sender else {}
        day = since.astimezone(timezone.utc).strftime("%Y-%m-%d")
        return await self.api.find(
            lambda client: client.messages.stream_async(to=to, date_sent_after=day, page_size=LOOKUP_PAGE, **sender),
            _message_send, since, self.config.timeout_seconds)

    async def replies_since(self, since: datetime) -> list[ProviderReply] | None:
        """SMS people sent us that Twilio received since `since`, newest first: replies
        warnd may have missed while it was down; None when the lookup failed. With a sender
        number, the list asks for messages to it; with a Messaging Service, for all of them
        (inbound ones are kept). DateSent is filtered by day, the rest by time."""
        to = {"to": self._sender["from_"]} if "from_" in self._sender else {}
        day = since.astimezone(timezone.utc).strftime("%Y-%m-%d")
        return await self.api.find(
            lambda client: client.messages.stream_async(date_sent_after=day, page_size=REPLIES_PAGE, **to),
            _reply, since, REPLIES_SECONDS, limit=REPLIES_LIMIT)

    async def close(self) -> None:
        await self.api.close()


def _message_send(m: Any) -> ProviderSend:
    """A listed message, read like its status callback."""
    sid = str(m.sid)
    receipt = message_receipt({"MessageStatus": str(m.status or ""), "MessageSid": sid,
                               "ErrorCode": "" if m.error_code is None else str(m.error_code)})
    created = m.date_created or m.date_sent or datetime.now(timezone.utc)
    return ProviderSend(sid, created, receipt or Receipt("sent", f"twilio.{m.status or ''}", sid))


def _reply(m: Any) -> ProviderReply | None:
    """A listed message if it is one a person sent us."""
    if str(m.direction or "") != "inbound":
        return None
    received = m.date_sent or m.date_created or datetime.now(timezone.utc)
    return ProviderReply(str(m.sid), str(m.from_ or ""), str(m.body or ""), received)


def segments_of(rendered: Rendered) -> int | None:
    """The segment count render() put into the content type (what the shared rate counts)."""
    return segments_in(rendered.content_type)


SPEC = ChannelSpec(
    name="sms", audience=Audience.PERSON, address="phone",
    dedupes=False,  # a second SMS is a real duplicate
    public=False, config_model=SmsConfig,
    build=lambda section, config, callback_url: SmsChannel(config.twilio, section, callback_url),
    callbacks=True, confirm_by_text=True, status_lookup=True, replies_lookup=True, door_list=True, notices=True,
    inbound={"status": Inbound(InboundKind.RECEIPTS, twilio_inbound.message_status, "/twilio/sms/status"),
             "replies": Inbound(InboundKind.REPLIES, twilio_inbound.sms_reply, "/twilio/sms/inbound")})
