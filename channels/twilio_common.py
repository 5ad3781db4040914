"""Everything Twilio that the SMS and voice channels and the HTTP layer share.

The engine never imports the SDK: the HTTP layer calls the pure helpers here
(`verify_request`, `message_receipt`, `call_receipt`, `twiml_*`), the channels
call `TwilioApi.create` and `classify`.

SDK traps handled here: the SDK applies no timeout of its own (every call is
wrapped in `asyncio.wait_for`); its retries could repeat a POST and duplicate
an SMS or a call (none are configured: `max_retries` stays None); its aiohttp
session has no connection limit (ours has); region and edge, also read from
the TWILIO_REGION / TWILIO_EDGE environment, rewrite the host (cleared); and a
`TwilioRestException` does not carry the response headers, so Retry-After is
caught on its way through the HTTP client.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from xml.sax.saxutils import escape as xml_escape

import aiohttp
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from warnd.config import TtsVoice, TwilioConfig, VoiceConfig

from .base import Outcome, ProviderSend, Receipt, ReceiptState, Reply, SendResult
from warnd.domain.sending import pick, send_window
from .webhook import MAX_RETRY_AFTER, parse_retry_after

CallbackUrl = Callable[[str, int], str]  # (kind, delivery id) → absolute signed URL
DETAIL_CHARS = 256

log = logging.getLogger("warnd_channels.twilio")
T = TypeVar("T")
# The SDK logs every request and response at INFO (numbers and headers): quiet by default.
SDK_LOG = logging.getLogger("warnd_channels.twilio.sdk")
SDK_LOG.setLevel(logging.WARNING)

# --- failure classes: Twilio error code → meaning ------------------------------------

AUTH_CODE = 20003
RATE_CODE = 20429
PERMANENT_CODES = {  # the number can't be reached this way: fail at once, escalation takes over
    21211: "invalid 'To' phone number",
    21217: "phone number does not appear to be valid",
    21408: "permission to send to this region is not enabled",
    21610: "recipient unsubscribed (replied STOP)",
    21612: "cannot route to this number",
    21614: "'To' is not a mobile number",
    13223: "invalid phone number format",
    13224: "invalid phone number",
}
RETRY_STATUSES = frozenset({408, 425, 429})


def classify(status: int | None, code: int | None, exc: BaseException | None,
             headers: Mapping[str, str], *, now: datetime | None = None) -> SendResult:
    """What one create call's HTTP status, Twilio error code or exception means.

    A Twilio exception may be passed as `exc`: its status and code are used.
    `now` only matters for a Retry-After given as an HTTP-date.
    """
    detail = ""
    if isinstance(exc, (TwilioRestException, TwilioServiceException)):
        status = exc.status if status is None else status
        code = exc.code if code is None else code
        detail = _exception_text(exc)
        exc = None
    if code is not None and code < 10000:  # the SDK puts the HTTP status here when the body had no code
        code = None
    if exc is not None:
        return _classify_exception(exc)
    if status is None and code is None:
        return SendResult(Outcome.RETRY, "error", detail="neither a status nor an exception")
    stable = f"twilio.{code}" if code is not None else f"http.{status}"
    label = " ".join(p for p in (f"HTTP {status}" if status else "", f"code {code}" if code else "") if p)
    detail = f"{label}: {detail}" if detail else label
    if code == RATE_CODE or status in RETRY_STATUSES or (status is not None and 500 <= status < 600):
        return SendResult(Outcome.RETRY, stable, retry_after=parse_retry_after(headers, now),
                          detail=_cut(detail))
    if code == AUTH_CODE or (status == 401 and code is None):
        return SendResult(Outcome.FAILED, f"twilio.{AUTH_CODE}",
                          detail=_cut(f"Twilio rejected the credentials, operator action needed "
                                      f"(check twilio.account_sid / auth_token); {detail}"), operator=True)
    if code in PERMANENT_CODES:
        return SendResult(Outcome.FAILED, stable, detail=_cut(f"{PERMANENT_CODES[code]}; {detail}"))
    if status is not None and 200 <= status < 300:
        return SendResult(Outcome.SENT, stable)
    if status is not None and 300 <= status < 400:
        return SendResult(Outcome.FAILED, stable, detail=_cut(f"{detail}: redirects are not followed"))
    return SendResult(Outcome.FAILED, stable, detail=_cut(detail))


def _classify_exception(exc: BaseException) -> SendResult:
    """Transport failures. Nothing sent → retry; maybe sent → uncertain (no receiver dedupes SMS).

    Order matters: aiohttp's exceptions inherit from several of these.
    """
    detail = _cut(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):  # never connected
        return SendResult(Outcome.RETRY, "connect", detail=detail)
    if isinstance(exc, TimeoutError):  # our wait_for: the request may have been accepted
        return SendResult(Outcome.UNCERTAIN, "timeout", detail=detail)
    if isinstance(exc, aiohttp.ClientSSLError):
        return SendResult(Outcome.RETRY, "tls", detail=detail)
    if isinstance(exc, (aiohttp.ClientConnectorError, ConnectionRefusedError, socket.gaierror)):
        return SendResult(Outcome.RETRY, "connect", detail=detail)  # refused, DNS, unreachable
    if isinstance(exc, aiohttp.ServerDisconnectedError):  # the request was written, no answer
        return SendResult(Outcome.UNCERTAIN, "disconnected", detail=detail)
    if isinstance(exc, (aiohttp.ClientOSError, OSError)):  # reset mid-request
        return SendResult(Outcome.UNCERTAIN, "reset", detail=detail)
    if isinstance(exc, aiohttp.InvalidURL):
        return SendResult(Outcome.FAILED, "url", detail=detail)
    if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ClientResponseError, ValueError)):
        return SendResult(Outcome.UNCERTAIN, "protocol", detail=detail)  # a malformed answer
    return SendResult(Outcome.UNCERTAIN, "error", detail=detail)


def _exception_text(exc: TwilioRestException | TwilioServiceException) -> str:
    if isinstance(exc, TwilioRestException):
        return str(exc.msg or "")
    return " ".join(p for p in (exc.title, exc.detail) if p)


def _cut(text: str) -> str:
    return text[:DETAIL_CHARS]


# --- the SDK client ------------------------------------------------------------------

_RESPONSE_HEADERS: ContextVar[dict | None] = ContextVar("twilio_response_headers", default=None)


class _HttpClient(AsyncTwilioHttpClient):
    """The SDK's aiohttp client on our session; keeps the last response's headers
    for the calling send (a context variable, so concurrent sends don't mix)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        super().__init__(pool_connections=False, logger=SDK_LOG)  # no retries: max_retries None
        self.session = session

    async def request(self, method: str, url: str, **kwargs: Any):  # noqa: ANN201 - twilio Response
        auth = kwargs.pop("auth", None)  # as a header: aiohttp deprecates its `auth` parameter
        if auth is not None:
            kwargs["headers"] = {**(kwargs.get("headers") or {}),
                                 "Authorization": aiohttp.encode_basic_auth(auth[0], auth[1])}
        response = await super().request(method, url, **kwargs)
        box = _RESPONSE_HEADERS.get()
        if box is not None:
            box["headers"] = dict(response.headers or {})
        return response

    def log_request(self, kwargs: dict) -> None:
        if self.logger.isEnabledFor(logging.INFO):  # skip the formatting when nobody listens
            super().log_request(kwargs)

    def log_response(self, status_code: int, response: Any) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            super().log_response(status_code, response)


class TwilioApi:
    """One SDK client per channel, built lazily inside the running loop."""

    def __init__(self, config: TwilioConfig) -> None:
        self.config = config
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            limit = self.config.connection_limit
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=limit, limit_per_host=limit, ttl_dns_cache=300),
                cookie_jar=aiohttp.DummyCookieJar())
            client = Client(self.config.account_sid, self.config.auth_token, http_client=_HttpClient(session))
            client.edge = client.region = None  # never rewrite the host (the SDK reads TWILIO_EDGE/REGION)
            if self.config.api_base_url:
                client.api.base_url = self.config.api_base_url.rstrip("/")  # the Api domain (2010-04-01)
            self._client = client
        return self._client

    async def create(self, make: Callable[[Client], Awaitable[Any]], timeout: float) -> SendResult:
        """One create call: SENT with the new resource's SID, or the classified failure.

        Never raises (cancellation still propagates). A timeout is UNCERTAIN.
        """
        client = self.client
        box: dict = {}
        token = _RESPONSE_HEADERS.set(box)  # wait_for's task copies the context: same box
        try:
            instance = await asyncio.wait_for(make(client), timeout)
        except (TwilioRestException, TwilioServiceException) as exc:
            return classify(None, None, exc, box.get("headers", {}))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a SendResult
            return classify(None, None, exc, {})
        finally:
            _RESPONSE_HEADERS.reset(token)
        status = str(getattr(instance, "status", None) or "accepted")
        return SendResult(Outcome.SENT, f"twilio.{status}", provider_ref=instance.sid)

    async def status(self, sid: str, make: Callable[[Client], Awaitable[Any]],
                     read: Callable[[Any], Receipt | None], timeout: float) -> Receipt | None:
        """A message's or call's current state at Twilio, read like a status callback
        (`read` turns the fetched resource into one); "sent" while it is still on its
        way, None when the lookup failed (logged: the next reconciliation asks again)."""
        try:
            found = await asyncio.wait_for(make(self.client), timeout)
        except Exception as exc:  # noqa: BLE001 - every failure is "not looked up"
            log.warning("twilio lookup failed", extra={"error": f"{type(exc).__name__}: {_cut(str(exc))}"})
            return None
        return read(found) or Receipt(ReceiptState.SENT, f"twilio.{found.status or ''}", sid)

    async def find(self, make: Callable[[Client], Awaitable[Any]], read: Callable[[Any], T | None],
                   since: datetime, timeout: float, limit: int | None = None) -> list[T] | None:
        """The messages or calls a list lookup returns (`make` gives the SDK's stream, newest
        first) as `read` gives them (None: not wanted), until one created before `since`;
        None when the lookup failed (5xx, 429, timeout: logged, and the caller asks again
        later, never sends blind)."""
        async def collect() -> list[T]:
            found: list[T] = []
            async for record in await make(self.client):
                created = record.date_created or record.date_sent
                if created is not None and created < since:  # newest first: the rest is older still
                    break
                item = read(record)
                if item is not None:
                    found.append(item)
                if len(found) >= (limit or LOOKUP_LIMIT):
                    break
            return found

        try:
            return await asyncio.wait_for(collect(), timeout)
        except Exception as exc:  # noqa: BLE001 - every failure is "not looked up"
            log.warning("twilio list lookup failed", extra={"error": f"{type(exc).__name__}: {_cut(str(exc))}"})
            return None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.http_client.close()
            self._client = None


def sender(config: TwilioConfig) -> dict[str, str]:
    """`from_` or `messaging_service_sid`, as configured (a from number wins)."""
    if config.from_number:
        return {"from_": config.from_number}
    if config.messaging_service_sid:
        return {"messaging_service_sid": config.messaging_service_sid}
    raise ValueError("twilio.from_number or twilio.messaging_service_sid must be set")


# --- inbound: signatures and receipts -----------------------------------------------

def verify_request(auth_token: str, url: str, params: Mapping[str, str], signature: str) -> bool:
    """Does X-Twilio-Signature match this URL (as Twilio called it) and form?"""
    if not signature:
        return False
    return bool(RequestValidator(auth_token).validate(url, dict(params), signature))


# --- uncertain sends: is it at Twilio? ------------------------------------------------
# Twilio's Message and Call resources do not return their StatusCallback, so a send whose
# outcome is unknown is matched by recipient (the lookup's To and From) and by time: it
# was created after it was handed and before its send's deadline.

LOOKUP_PAGE = 50  # records per list page
LOOKUP_LIMIT = 200  # records read per lookup at most (one number's sends around one moment)


@dataclass(frozen=True)
class ProviderReply:
    """An SMS a person sent us, as Twilio's message log lists it (fetched after a restart)."""

    sid: str
    from_number: str
    body: str
    received_at: datetime

    def reply(self) -> Reply:
        return Reply(self.sid, self.from_number, self.body, self.received_at)


MESSAGE_ERRORS = {  # ErrorCode of an undelivered/failed message
    30001: "queue overflow (not sent)",
    30002: "account suspended",
    30003: "unreachable destination handset",
    30004: "message blocked",
    30005: "unknown destination handset",
    30006: "landline or unreachable carrier",
    30007: "message filtered by the carrier",
    30008: "unknown error",
}
MESSAGE_RETRY_ERRORS = frozenset({30001})  # Twilio never sent it: safe to send again
CALL_RETRY_STATUSES = frozenset({"no-answer", "busy", "failed", "canceled"})


def message_receipt(params: Mapping[str, str]) -> Receipt | None:
    """A message status callback → what it settles; None for in-flight states."""
    status = (params.get("MessageStatus") or params.get("SmsStatus") or "").strip().lower()
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    if status == "delivered":
        return Receipt(ReceiptState.DELIVERED, "twilio.delivered", sid)
    if status == "sent":
        return Receipt(ReceiptState.SENT, "twilio.sent", sid)
    if status in ("undelivered", "failed"):
        error = (params.get("ErrorCode") or "").strip()
        if not error.isdigit():
            return Receipt(ReceiptState.FAILED, f"twilio.{status}", sid, f"message {status}")
        meaning = MESSAGE_ERRORS.get(int(error), "")
        state = ReceiptState.RETRY if int(error) in MESSAGE_RETRY_ERRORS else ReceiptState.FAILED
        return Receipt(state, f"twilio.{int(error)}", sid, f"message {status}: {meaning}".rstrip(": "))
    return None  # queued, accepting, accepted, scheduled, sending, receiving, read …


def call_receipt(params: Mapping[str, str]) -> Receipt | None:
    """A call status callback → what it settles; None while the call is in progress."""
    status = (params.get("CallStatus") or "").strip().lower()
    sid = params.get("CallSid") or ""
    if status == "completed":
        duration = params.get("CallDuration")
        return Receipt(ReceiptState.DELIVERED, "twilio.completed", sid, f"answered, {duration} s" if duration else "")
    if status in CALL_RETRY_STATUSES:
        return Receipt(ReceiptState.RETRY, f"twilio.{status}", sid, f"call {status}")
    return None  # queued, initiated, ringing, in-progress


# --- TwiML ---------------------------------------------------------------------------

SAY_LANGUAGES = {"en": "en-US", "zh": "zh-CN"}
DEFAULT_TTS: Mapping[str, TtsVoice] = VoiceConfig().tts  # Polly.Zhiyu (cmn-CN), Polly.Joanna (en-US)


def say_language(language: str) -> str:
    """A recipient language as Twilio's <Say language> wants it: en → en-US, zh → zh-CN."""
    lang = language.strip()
    if lang.lower() in SAY_LANGUAGES:
        return SAY_LANGUAGES[lang.lower()]
    head, _, tail = lang.partition("-")
    return f"{head.lower()}-{tail.upper()}" if tail else lang


@dataclass(frozen=True)
class Speech:
    """What every <Say> for one recipient carries: the language, and the TTS voice speaking it.

    Without a voice Twilio uses the account's default, which may not speak Chinese at all."""

    language: str
    voice: str | None = None


def speech_for(language: str, tts: Mapping[str, TtsVoice] | None = None) -> Speech:
    """The <Say> attributes for a recipient language (`tts`: `voice.tts`; None: the defaults)."""
    lang = say_language(language)
    for key, choice in (DEFAULT_TTS if tts is None else tts).items():
        if say_language(key) == lang:
            return Speech(choice.language or lang, choice.voice)
    return Speech(lang)


TWIML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>'


def twiml_reply(text: str | None) -> str:
    """An answer to an inbound SMS: one <Message>, or nothing. Written out, as the SDK's
    MessagingResponse writes it: building its element tree cost a tenth of a reply's CPU."""
    if not text:
        return TWIML_HEAD + "<Response />"
    return f"{TWIML_HEAD}<Response><Message>{xml_escape(text)}</Message></Response>"


def twiml_say(text: str, language: str, tts: Mapping[str, TtsVoice] | None = None) -> str:
    response = VoiceResponse()
    _say(response, text, speech_for(language, tts))
    return str(response)


def twiml_gather(texts: list[str], language: str, repeat: int, action_url: str, prompt: str,
                 tts: Mapping[str, TtsVoice] | None = None) -> str:
    """The call script: the texts `repeat` times, then one key press asked for (POSTed to action_url).

    No XML declaration: this goes into calls.create(twiml=…), which Twilio limits to 4000 chars.
    """
    speech = speech_for(language, tts)
    response = VoiceResponse()
    _say_repeated(response, texts, speech, repeat)
    gather = response.gather(num_digits=1, action=action_url, method="POST", timeout=8)
    _say(gather, prompt, speech)
    return response.to_xml(xml_declaration=False)


def twiml_announce(texts: list[str], language: str, repeat: int,
                   tts: Mapping[str, TtsVoice] | None = None) -> str:
    """The call script without a confirmation: the texts `repeat` times."""
    response = VoiceResponse()
    _say_repeated(response, texts, speech_for(language, tts), repeat)
    return response.to_xml(xml_declaration=False)


def _say_repeated(response: VoiceResponse, texts: list[str], speech: Speech, repeat: int) -> None:
    for round_ in range(max(repeat, 1)):
        if round_:
            response.pause(length=1)
        for text in texts:
            _say(response, text, speech)


def _say(parent: Any, text: str, speech: Speech) -> None:
    parent.say(text, language=speech.language, voice=speech.voice)  # None attributes are left out


__all__ = ["MAX_RETRY_AFTER", "CallbackUrl", "ProviderReply", "ProviderSend", "Receipt", "TwilioApi", "call_receipt", "classify",
           "message_receipt", "pick", "say_language", "send_window", "sender", "Speech", "speech_for",
           "twiml_announce", "twiml_gather",
           "twiml_reply", "twiml_say", "verify_request"]
