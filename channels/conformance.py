"""Conformance kit: the checks every channel's tests run.

A channel's test module supplies its own data — its classify table, messages
for a zh-CN and an en recipient, messages aimed at misbehaving targets — and
calls these checks. They use plain asserts (pytest rewrites nothing here), so
a failure names the row or message that broke the rule.

    CASES = http_status_cases(lambda status, headers: (status, None, headers))
    @pytest.mark.parametrize("case", CASES, ids=case_id)
    def test_classify(case): check_case(my_channel.classify, case)

HTTP-based channels also get `TroubleServer`, a local server that answers
each request path in a different bad way (slow, redirect, drop, garbage …).
"""
from __future__ import annotations

import asyncio
import re
import socket
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any
from xml.sax.saxutils import escape

import aiohttp

from warnd.domain.model import Alert, Area, Info, Level, MsgType, Status

from .base import Channel, Message, Outcome, Recipient, Rendered, SendResult

UNSET: Any = type("Unset", (), {"__repr__": lambda self: "UNSET"})()
CODE_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
DRILL_MARKS = ("演练", "EXERCISE")
CJK_RE = re.compile(r"[\u4e00-\u9fff]")


# --- classification tables ---------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One row of a classify table: the channel's inputs and what they must mean."""

    id: str
    args: tuple
    outcome: Outcome
    code: str | None = None  # None: any valid code
    retry_after: Any = UNSET  # UNSET: not checked; a number is compared ±1 s


def case_id(case: Case) -> str:
    return case.id


def check_result(result: object, where: str = "", *, max_retry_after: float = 3600.0) -> None:
    """Rules every SendResult of every channel follows."""
    assert isinstance(result, SendResult), f"{where}: {result!r} is not a SendResult"
    assert isinstance(result.outcome, Outcome), f"{where}: outcome {result.outcome!r}"
    assert CODE_RE.match(result.code or ""), f"{where}: unstable code {result.code!r}"
    if result.retry_after is not None:
        assert result.outcome is Outcome.RETRY, f"{where}: retry_after on {result.outcome}"
        assert 0 <= result.retry_after <= max_retry_after, f"{where}: retry_after {result.retry_after}"


def check_case(classify: Callable[..., SendResult], case: Case, *,
               max_retry_after: float = 3600.0) -> None:
    result = classify(*case.args)
    check_result(result, case.id, max_retry_after=max_retry_after)
    assert result.outcome is case.outcome, f"{case.id}: {result.outcome} != {case.outcome} ({result})"
    if case.code is not None:
        assert result.code == case.code, f"{case.id}: code {result.code!r} != {case.code!r}"
    if case.retry_after is not UNSET:
        if case.retry_after is None:
            assert result.retry_after is None, f"{case.id}: retry_after {result.retry_after}"
        else:
            assert result.retry_after is not None and abs(result.retry_after - case.retry_after) <= 1, \
                f"{case.id}: retry_after {result.retry_after} != {case.retry_after}"


def check_classify_table(classify: Callable[..., SendResult], cases: Iterable[Case], *,
                         max_retry_after: float = 3600.0) -> None:
    """Check every row; report all the rows that fail, not only the first."""
    failures = []
    for case in cases:
        try:
            check_case(classify, case, max_retry_after=max_retry_after)
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "classify table:\n" + "\n".join(failures)


def http_status_cases(args: Callable[[int, dict[str, str]], tuple], *,
                      ok: Outcome = Outcome.DELIVERED, max_retry_after: float,
                      code: Callable[[int], str] = lambda status: f"http.{status}") -> list[Case]:
    """The HTTP rules: 2xx ok; 408/425/429/5xx retry (honouring Retry-After);
    3xx fail (redirects are never followed); every other 4xx fails.

    `args(status, headers)` builds the channel's classify arguments.
    """
    def row(status: int, outcome: Outcome, headers: dict[str, str] | None = None,
            retry_after: Any = UNSET, note: str = "") -> Case:
        return Case(f"http-{status}{note}", args(status, headers or {}), outcome, code(status), retry_after)

    rows = [row(s, ok, retry_after=None) for s in (200, 201, 202, 204)]
    rows += [row(s, Outcome.FAILED, retry_after=None) for s in (301, 302, 303, 307, 308)]
    rows += [row(s, Outcome.FAILED, retry_after=None)
             for s in (400, 401, 403, 404, 405, 409, 410, 413, 415, 422, 451)]
    rows += [row(s, Outcome.RETRY, retry_after=None) for s in (408, 425, 429, 500, 502, 503, 504, 599)]
    rows += [
        row(503, Outcome.RETRY, {"Retry-After": "7"}, 7.0, "-retry-after-7"),
        row(429, Outcome.RETRY, {"retry-after": "30"}, 30.0, "-retry-after-lowercase"),
        row(503, Outcome.RETRY, {"Retry-After": " 2.5 "}, 2.5, "-retry-after-decimal"),
        row(429, Outcome.RETRY, {"Retry-After": "86400000"}, max_retry_after, "-retry-after-capped"),
        row(503, Outcome.RETRY, {"Retry-After": "-5"}, 0.0, "-retry-after-negative"),
        row(503, Outcome.RETRY, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0, "-retry-after-past-date"),
        row(503, Outcome.RETRY, {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}, max_retry_after,
            "-retry-after-far-date"),
        row(429, Outcome.RETRY, {"Retry-After": "soon"}, None, "-retry-after-garbage"),
        row(410, Outcome.FAILED, {"Retry-After": "7"}, None, "-retry-after-ignored"),
    ]
    return rows


def _conn_key(host: str = "receiver.invalid", port: int = 443) -> SimpleNamespace:
    return SimpleNamespace(host=host, port=port, ssl=True, is_ssl=True)


def aiohttp_transport_cases(args: Callable[[BaseException], tuple]) -> list[Case]:
    """How aiohttp's transport failures are classified (webhook, Twilio's aiohttp client …).

    Nothing reached the receiver, or it may have (the request was written but
    no answer came): both are retried, which is safe for de-duplicating receivers.
    """
    key = _conn_key()
    rows = [
        ("timeout", asyncio.TimeoutError(), Outcome.RETRY, "timeout"),
        ("server-timeout", aiohttp.ServerTimeoutError("read timeout"), Outcome.RETRY, "timeout"),
        ("connection-timeout", aiohttp.ConnectionTimeoutError("connect timeout"), Outcome.RETRY, "timeout"),
        ("refused", aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connection refused")),
         Outcome.RETRY, "connect"),
        ("dns", aiohttp.ClientConnectorDNSError(key, socket.gaierror(-2, "Name or service not known")),
         Outcome.RETRY, "connect"),
        ("reset", aiohttp.ClientOSError(104, "Connection reset by peer"), Outcome.RETRY, "connect"),
        ("reset-plain", ConnectionResetError(104, "Connection reset by peer"), Outcome.RETRY, "connect"),
        ("disconnected", aiohttp.ServerDisconnectedError(), Outcome.RETRY, "disconnected"),
        ("invalid-url", aiohttp.InvalidURL("not a url"), Outcome.FAILED, "url"),
    ]
    return [Case(f"exc-{name}", args(exc), outcome, code, None) for name, exc, outcome, code in rows]


# --- sample warnings ------------------------------------------------------------

SAMPLE_SENT = datetime(2025, 7, 1, 8, 0, tzinfo=timezone(timedelta(hours=8)))


def sample_alert(*, status: Status = Status.ACTUAL, msg_type: MsgType = MsgType.ALERT,
                 identifier: str = "CN-HN-2025-0701-001") -> Alert:
    """A red rainstorm warning with a zh-CN and an en info block."""
    expires = SAMPLE_SENT + timedelta(hours=6)
    area_zh = Area("岳麓区莲花镇", geocodes=(("GB2260", "430104"),))
    area_en = Area("Lianhua Town, Yuelu District", geocodes=(("GB2260", "430104"),))
    common = dict(categories=("Met",), urgency="Immediate", severity="Extreme", certainty="Likely",
                  response_types=("Prepare",), effective=SAMPLE_SENT, expires=expires)
    zh = Info(language="zh-CN", event="暴雨", sender_name="长沙市气象台", headline="暴雨红色预警",
              description="预计未来3小时莲花镇降雨量将达100毫米以上。",
              instruction="立即转移低洼地带人员。", areas=(area_zh,), **common)
    en = Info(language="en", event="Rainstorm", sender_name="Changsha Meteorological Observatory",
              headline="Red rainstorm warning", description="Over 100 mm of rain expected within 3 hours.",
              instruction="Evacuate low-lying areas now.", areas=(area_en,), **common)
    return Alert(identifier=identifier, sender="cs@hunan.weather.cn", sent=SAMPLE_SENT, status=status,
                 msg_type=msg_type, scope="Public", infos=(zh, en))


def sample_cap_xml(alert: Alert) -> str:
    """A small CAP 1.2 document for an alert (header and first info only)."""
    info = alert.infos[0]
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">'
            f"<identifier>{escape(alert.identifier)}</identifier><sender>{escape(alert.sender)}</sender>"
            f"<sent>{alert.sent.isoformat()}</sent><status>{alert.status.value}</status>"
            f"<msgType>{alert.msg_type.value}</msgType><scope>{alert.scope}</scope>"
            f"<info><language>{info.language}</language><category>Met</category>"
            f"<event>{escape(info.event)}</event><urgency>{info.urgency}</urgency>"
            f"<severity>{info.severity}</severity><certainty>{info.certainty}</certainty>"
            f"<headline>{escape(info.headline or '')}</headline></info></alert>")


def sample_message(recipient: Recipient, *, alert: Alert | None = None, level: Level = Level.RED,
                   delivery_id: int = 1, warning_id: int = 1, attempt: int = 1) -> Message:
    alert = alert or sample_alert()
    return Message(delivery_id=delivery_id, warning_id=warning_id, alert=alert,
                   cap_xml=sample_cap_xml(alert), level=level, recipient=recipient, attempt=attempt,
                   created_at=SAMPLE_SENT + timedelta(minutes=1))


# --- rendering -----------------------------------------------------------------

def check_render(channel: Channel, message: Message) -> Rendered:
    """render() gives a non-empty body, a content type and a text, and is deterministic."""
    where = f"{channel.name} render({message.recipient.language}, {message.recipient.format})"
    rendered = channel.render(message)
    assert isinstance(rendered, Rendered), f"{where}: {rendered!r}"
    assert isinstance(rendered.body, bytes) and rendered.body, f"{where}: empty body"
    assert rendered.content_type, f"{where}: no content type"
    assert isinstance(rendered.text, str) and rendered.text.strip(), f"{where}: empty text"
    assert channel.render(message) == rendered, f"{where}: not deterministic (retries must re-render alike)"
    return rendered


def check_languages(channel: Channel, make_message: Callable[[str], Message]) -> dict[str, Rendered]:
    """A zh-CN and an en recipient each get a rendering in their language."""
    out = {lang: check_render(channel, make_message(lang)) for lang in ("zh-CN", "en")}
    assert CJK_RE.search(out["zh-CN"].text), f"{channel.name}: zh-CN text has no Chinese: {out['zh-CN'].text!r}"
    assert out["en"].text != out["zh-CN"].text, f"{channel.name}: en text is the zh-CN text"
    return out


def check_drill_marking(channel: Channel, make_message: Callable[[Alert], Message]) -> None:
    """Exercise and Test warnings say so (演练 / EXERCISE); Actual ones do not."""
    for status in (Status.EXERCISE, Status.TEST):
        text = check_render(channel, make_message(sample_alert(status=status))).text
        assert any(m in text for m in DRILL_MARKS), f"{channel.name} {status.value}: unmarked: {text!r}"
    text = check_render(channel, make_message(sample_alert(status=Status.ACTUAL))).text
    assert not any(m in text for m in DRILL_MARKS), f"{channel.name} Actual marked as a drill: {text!r}"


# --- sending -------------------------------------------------------------------

async def check_send_never_raises(channel: Channel, messages: Sequence[Message], *,
                                  deadline: float = 30.0) -> list[SendResult]:
    """send() answers every message with a valid SendResult; it never raises or hangs."""
    async def one(message: Message) -> SendResult:
        rendered = channel.render(message)
        try:
            result = await asyncio.wait_for(channel.send(message, rendered), deadline)
        except Exception as exc:  # noqa: BLE001 - the point of the check
            raise AssertionError(f"{channel.name} send() to {message.recipient.address!r} raised {exc!r}")
        check_result(result, f"{channel.name} send() to {message.recipient.address!r}")
        return result

    return list(await asyncio.gather(*(one(m) for m in messages)))


class TroubleServer:
    """A raw local HTTP server; the first path segment says how it answers.

    ok · status/NNN[?retry_after=S] · slow (waits `delay` s) · redirect (302) ·
    drop (reads the request, closes without answering) · reset (RST) ·
    garbage (not HTTP) · huge (a 1 MiB answer). `refused_url` has no listener.
    """

    BEHAVIOURS = ("ok", "status/500", "status/410", "status/429", "slow", "redirect",
                  "drop", "reset", "garbage", "huge")

    def __init__(self, delay: float = 5.0,
                 redirect_to: str = "http://169.254.169.254/latest/meta-data/") -> None:
        self.delay = delay
        self.redirect_to = redirect_to
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._closing = asyncio.Event()
        self.base_url = ""
        self.refused_url = ""

    async def __aenter__(self) -> "TroubleServer":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            self.refused_url = f"http://127.0.0.1:{probe.getsockname()[1]}/refused"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            self._closing.set()  # slow answers give up (cancelling them logs noise on 3.11)
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

    def url(self, behaviour: str) -> str:
        return f"{self.base_url}/{behaviour}"

    def urls(self) -> list[str]:
        return [self.url(b) for b in self.BEHAVIOURS] + [self.refused_url, "not a url"]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            target = lines[0].split(" ")[1] if " " in lines[0] else "/"
            length = next((int(h.split(":", 1)[1]) for h in lines[1:]
                           if h.lower().startswith("content-length:")), 0)
            await reader.readexactly(length)
            self.requests += 1
            await self._answer(target, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _answer(self, target: str, writer: asyncio.StreamWriter) -> None:
        path, _, query = target.partition("?")
        name = path.strip("/")
        if name == "drop":
            return
        if name == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if name == "garbage":
            writer.write(b"this is not HTTP\r\n\r\n")
            return await writer.drain()
        status, headers, body = 200, [], b"ok"
        if name == "slow":
            try:
                await asyncio.wait_for(self._closing.wait(), self.delay)
                return  # shutting down: no answer
            except TimeoutError:
                pass
        elif name == "redirect":
            status, headers = 302, [f"Location: {self.redirect_to}"]
        elif name == "huge":
            body = b"x" * (1 << 20)
        elif name.startswith("status/"):
            status, body = int(name.split("/")[1]), b"trouble"
            for pair in filter(None, query.split("&")):
                key, _, value = pair.partition("=")
                if key == "retry_after":
                    headers.append(f"Retry-After: {value}")
        head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close", *headers]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()

