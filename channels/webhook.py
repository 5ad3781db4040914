"""Signed webhooks to downstream systems (Standard Webhooks).

One POST per delivery, signed with the subscriber's `whsec_` secret. The
webhook id is stable across retries (`msg_warnd_<delivery id>`), so receivers
that de-duplicate by `webhook-id` make a re-send harmless. Redirects are never
followed (a redirect could point the request at an internal address). Every
failure is mapped to a `SendResult` by one pure function, `classify`.

The SSRF guard runs again at connect time, on the very address the socket is
about to connect to (`GuardedConnector`): a name that now resolves to 127.0.0.1
(DNS rebinding), or a loopback subscriber stored while `allow_private_urls` was
on, is refused as `webhook.unsafe_address` and never retried.
连接时再做一次 SSRF 检查：只连接通过检查的 IP，被拒的投递记为永久失败。
"""
from __future__ import annotations

import base64
import binascii
import json
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from functools import lru_cache

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from standardwebhooks import Webhook
from standardwebhooks.webhooks import EmptyWebhookSecretError

from warnd.config import WebhookConfig
from warnd.domain.model import MsgType
from warnd.domain.urlsafety import UnsafeAddress, connect_problem
from warnd.ingest.capjson import alert_to_dict
from warnd.render import render as render_template
from warnd.render import warning_context

from .base import Audience, ChannelSpec, Message, Outcome, Rendered, SendResult

USER_AGENT = "warnd/0.1"
CAP_CONTENT_TYPE = "application/cap+xml; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"
MAX_RETRY_AFTER = 600.0  # seconds; a warning older than this is stale anyway
RETRY_STATUSES = frozenset({408, 425, 429})
DETAIL_BYTES = 256  # how much of an error response body is kept as detail
DRAIN_BYTES = 65536  # a longer answer is not read to its end (the connection is dropped)
UNSAFE_ADDRESS = "webhook.unsafe_address"  # the code of a send the SSRF guard refused at connect time
EVENT_TYPES = {MsgType.ALERT: "warning.alert", MsgType.UPDATE: "warning.update",
               MsgType.CANCEL: "warning.cancel"}

SessionFactory = Callable[[], aiohttp.ClientSession]


class InvalidSecret(ValueError):
    """The subscriber's secret is missing or not `whsec_`-prefixed base64."""


def webhook_id(delivery_id: int) -> str:
    """The `webhook-id` of a delivery: the same on every attempt."""
    return f"msg_warnd_{delivery_id}"


def new_secret() -> str:
    """A fresh subscriber secret: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


@lru_cache(maxsize=4096)
def _signer(secret: str) -> Webhook:
    try:
        return Webhook(secret)
    except (EmptyWebhookSecretError, binascii.Error, ValueError) as exc:
        raise InvalidSecret(f"invalid webhook secret: {type(exc).__name__}") from None


def sign_headers(secret: str, msg_id: str, body: bytes, now: datetime) -> dict[str, str]:
    """The three Standard Webhooks headers for one request."""
    timestamp = datetime.fromtimestamp(int(now.timestamp()), tz=timezone.utc)
    signature = _signer(secret).sign(msg_id, timestamp, body.decode("utf-8"))
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": signature}


def classify(status: int | None, exc: BaseException | None, headers: Mapping[str, str],
             *, now: datetime | None = None) -> SendResult:
    """What one attempt's HTTP status or exception means for the delivery.

    `now` only matters for a Retry-After given as an HTTP-date.
    """
    if exc is not None:
        return _classify_exception(exc)
    if status is None:
        return SendResult(Outcome.RETRY, "error", detail="neither a status nor an exception")
    code = f"http.{status}"
    if 200 <= status < 300:
        return SendResult(Outcome.DELIVERED, code)
    if status in RETRY_STATUSES or 500 <= status < 600:
        return SendResult(Outcome.RETRY, code, retry_after=parse_retry_after(headers, now),
                          detail=f"HTTP {status}")
    if 300 <= status < 400:
        return SendResult(Outcome.FAILED, code, detail=f"HTTP {status}: redirects are not followed")
    return SendResult(Outcome.FAILED, code, detail=f"HTTP {status}")


def _classify_exception(exc: BaseException) -> SendResult:
    if isinstance(exc, UnsafeAddress):  # the SSRF guard: the address will not become safe by waiting
        return SendResult(Outcome.FAILED, UNSAFE_ADDRESS, detail=str(exc)[:DETAIL_BYTES])
    detail = f"{type(exc).__name__}: {exc}"[:DETAIL_BYTES]
    # Order matters: aiohttp's exceptions inherit from several of these.
    if isinstance(exc, TimeoutError):  # asyncio.TimeoutError, aiohttp.ServerTimeoutError
        return SendResult(Outcome.RETRY, "timeout", detail=detail)
    if isinstance(exc, aiohttp.ServerDisconnectedError):  # sent, no answer: receivers dedupe
        return SendResult(Outcome.RETRY, "disconnected", detail=detail)
    if isinstance(exc, aiohttp.ClientSSLError):
        return SendResult(Outcome.RETRY, "tls", detail=detail)
    if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ClientOSError, OSError)):
        return SendResult(Outcome.RETRY, "connect", detail=detail)  # refused, DNS, reset
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        return SendResult(Outcome.FAILED, "url", detail=detail)
    if isinstance(exc, InvalidSecret):
        return SendResult(Outcome.FAILED, "secret", detail=detail)
    if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ClientResponseError)):
        return SendResult(Outcome.RETRY, "protocol", detail=detail)  # a malformed answer
    return SendResult(Outcome.RETRY, "error", detail=detail)


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Retry-After as seconds (delay-seconds or HTTP-date), capped; None if absent or bad."""
    value = _header(headers, "retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    for key, val in headers.items():  # plain dicts are case-sensitive
        if key.lower() == name:
            return val
    return None


# --- the SSRF guard at connect time


def screen(host: str, results: list[ResolveResult], allow_private: bool) -> list[ResolveResult]:
    """The addresses of `host` the guard lets us connect to.

    Refused ones are dropped rather than failing the whole answer: what is left is
    safe to connect to. Raises UnsafeAddress when the guard refused them all.
    """
    kept, refused = [], []
    for result in results:
        reason = connect_problem(result["host"], allow_private=allow_private)
        if reason is None:
            kept.append(result)
        else:
            refused.append((result["host"], reason))
    if refused and not kept:
        raise UnsafeAddress(host, refused)
    return kept


class GuardedResolver(AbstractResolver):
    """A resolver that hands on only the answers the guard accepts.

    It wraps the real DNS, so aiohttp's DNS cache, which stores what the
    resolver returns, only ever holds guarded answers.
    """

    def __init__(self, dns: AbstractResolver, *, allow_private: bool) -> None:
        self._dns = dns
        self._allow_private = allow_private

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return screen(host, await self._dns.resolve(host, port, family), self._allow_private)

    async def close(self) -> None:
        await self._dns.close()


class GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector that connects only to addresses the guard accepts.

    aiohttp asks its resolver only about names it has not cached: an IP literal
    in the URL and a DNS-cache hit go to the socket without it. `_resolve_host`
    is where all three meet right before connecting, so its answer is screened
    too (a test pins this override to aiohttp's behaviour).
    """

    def __init__(self, *, allow_private: bool, dns: AbstractResolver | None = None, **kwargs) -> None:
        resolver = GuardedResolver(dns or aiohttp.DefaultResolver(), allow_private=allow_private)
        super().__init__(resolver=resolver, **kwargs)
        self._guarded_resolver = resolver  # passed in, so not closed by aiohttp: see close()
        self._allow_private = allow_private

    async def _resolve_host(self, host: str, port: int, traces=None) -> list[ResolveResult]:  # noqa: ANN001
        return screen(host, await super()._resolve_host(host, port, traces=traces), self._allow_private)

    async def close(self, *, abort_ssl: bool = False) -> None:
        await super().close(abort_ssl=abort_ssl)
        await self._guarded_resolver.close()


def guarded_session(config: WebhookConfig, dns: AbstractResolver | None = None) -> aiohttp.ClientSession:
    """The channel's HTTP session: every connection through the guard.

    `dns` replaces the system resolver (tests give a fake DNS). The environment's
    proxy settings are ignored: a proxy would resolve the name itself, past the guard.
    """
    connector = GuardedConnector(allow_private=config.allow_private_urls, dns=dns, limit=config.concurrency,
                                 limit_per_host=config.concurrency, ttl_dns_cache=300)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=config.timeout_seconds),
                                 cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)


RENDER_CACHE = 256


@dataclass(frozen=True)
class _Shared:
    cap_body: bytes
    text: str
    payload: dict  # the JSON body without the per-delivery id and timestamp


class WebhookChannel:
    name = "webhook"

    new_secret = staticmethod(new_secret)

    def __init__(self, config: WebhookConfig, session_factory: SessionFactory | None = None) -> None:
        """`session_factory` is for tests; one it gives should come from `guarded_session`,
        or the connect-time SSRF guard is not in the path."""
        self.config = config
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)
        self._session_factory = session_factory or (lambda: guarded_session(config))
        self._session: aiohttp.ClientSession | None = None
        self._rendered: dict[tuple, _Shared] = {}

    def render(self, message: Message) -> Rendered:
        recipient = message.recipient
        shared = self._shared(message)
        if recipient.format == "cap":
            return Rendered(shared.cap_body, CAP_CONTENT_TYPE, shared.text)
        payload = {**shared.payload, "id": webhook_id(message.delivery_id), "timestamp": _iso(message.created_at)}
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return Rendered(body, JSON_CONTENT_TYPE, shared.text)

    def _shared(self, message: Message) -> "_Shared":
        """What every subscriber of a warning gets alike, rendered once per (warning, language)."""
        alert = message.alert
        key = (message.warning_id, alert.identifier, alert.status, alert.msg_type, message.recipient.language,
               message.level)
        found = self._rendered.get(key)
        if found is None:
            if len(self._rendered) >= RENDER_CACHE:
                self._rendered.clear()
            found = self._rendered[key] = self._render_shared(message)
        return found

    def _render_shared(self, message: Message) -> "_Shared":
        alert, recipient = message.alert, message.recipient
        context = warning_context(alert, message.level, recipient.language)
        text = render_template("webhook", "text", recipient.language, context)
        info = context["info"]
        payload = {
            "type": EVENT_TYPES.get(alert.msg_type, f"warning.{alert.msg_type.value.lower()}"),
            "id": webhook_id(message.delivery_id),
            "timestamp": _iso(message.created_at),
            "warning": {
                "id": message.warning_id,
                "level": message.level.label,
                "level_zh": message.level.zh,
                "drill": alert.status.is_drill,
                "status": alert.status.value,
                "msgType": alert.msg_type.value,
                "sender": alert.sender,
                "identifier": alert.identifier,
                "event": info.event if info else "",
                "headline": context["headline"],
                "expires": _iso(alert.expires) if alert.expires else None,
            },
            "text": text,
            "cap": alert_to_dict(alert),
        }
        return _Shared(message.cap_xml.encode("utf-8"), text, payload)

    async def send(self, message: Message, rendered: Rendered) -> SendResult:
        """POST once; never raises (cancellation, a BaseException, still propagates)."""
        msg_id = webhook_id(message.delivery_id)
        try:
            headers = sign_headers(message.recipient.secret, msg_id, rendered.body,
                                   datetime.now(timezone.utc))
            headers["content-type"] = rendered.content_type
            headers["user-agent"] = USER_AGENT
            if self._session is None:  # created lazily, inside the running loop
                self._session = self._session_factory()
            async with self._session.post(message.recipient.address, data=rendered.body,
                                          headers=headers, allow_redirects=False,
                                          timeout=self._timeout) as response:
                status = response.status
                snippet = await _drain(response)  # a drained connection is kept alive
                if 200 <= status < 300:  # the common case, without a second SendResult
                    return SendResult(Outcome.DELIVERED, f"http.{status}", msg_id)
                result = classify(status, None, response.headers)
                if snippet:
                    text = snippet.decode("utf-8", "replace").strip()
                    result = replace(result, detail=f"{result.detail}: {text}"[:DETAIL_BYTES])
        except Exception as exc:  # noqa: BLE001 - every failure becomes a SendResult
            result = classify(None, exc, {})
        return replace(result, provider_ref=msg_id)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _drain(response: aiohttp.ClientResponse) -> bytes:
    """Read the answer up to DRAIN_BYTES; return its beginning.

    The status has already decided the outcome, so a failure here is ignored.
    """
    head, total = b"", 0
    try:
        if response.content_length is not None and response.content_length <= DRAIN_BYTES:
            return (await response.read())[:DETAIL_BYTES]  # short and of known length: at once
        async for chunk in response.content.iter_chunked(8192):
            if len(head) < DETAIL_BYTES:
                head += chunk[: DETAIL_BYTES - len(head)]
            total += len(chunk)
            if total >= DRAIN_BYTES:
                break
    except (aiohttp.ClientError, OSError):  # TimeoutError is an OSError
        pass
    return head


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.isoformat()


SPEC = ChannelSpec(
    name="webhook", audience=Audience.SUBSCRIBER, address="url",
    dedupes=True,  # Standard Webhooks receivers de-duplicate by webhook-id
    public=True, config_model=WebhookConfig,
    build=lambda section, config, callback_url: WebhookChannel(section))
