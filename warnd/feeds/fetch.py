"""The HTTP side of a feed: conditional GET, bodies read within a limit, backoff.

- The index is fetched with the validators of the last one received
  (If-None-Match, If-Modified-Since); a 304 is a successful poll with nothing
  new. Validators are merged one by one: a response that carries only a new
  ETag keeps the Last-Modified known before, and vice versa.
- A body is read chunk by chunk and refused (`feed.too_large`) as soon as it
  passes the limit, or at once when Content-Length already says it will: an
  over-size answer is never read whole. (aiohttp decompresses as it reads, so
  the limit holds for what a compressed answer expands to.)
- Credentials go only to the feed's own scheme, host and port, never to a
  host an entry links to.
- `backoff_seconds` is the pure rule for how long a failing feed waits.
"""
from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import aiohttp

from warnd.config import FeedConfig
from warnd.domain.errors import WarndError, error
from warnd_channels.webhook import parse_retry_after

USER_AGENT = "warnd-feed-poller/1"
INDEX_ACCEPT = "application/atom+xml, application/rss+xml, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.1"
CAP_ACCEPT = "application/cap+xml, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.1"
CHUNK = 64 * 1024
MAX_REDIRECTS = 5


@dataclass(frozen=True)
class Validators:
    etag: str | None = None
    last_modified: str | None = None

    def request_headers(self) -> dict[str, str]:
        out = {}
        if self.etag:
            out["If-None-Match"] = self.etag
        if self.last_modified:
            out["If-Modified-Since"] = self.last_modified
        return out

    def merged(self, headers: Mapping[str, str]) -> Validators:
        """The newest of each: what the response says, else what was known."""
        etag = headers.get("ETag") or self.etag
        modified = headers.get("Last-Modified") or self.last_modified
        return Validators(etag[:500] if etag else None, modified[:100] if modified else None)


@dataclass(frozen=True)
class Fetched:
    status: int  # 200 (a body) or 304 (not modified: no body)
    body: bytes
    validators: Validators


class FetchFailed(Exception):
    """A fetch that did not bring a body: the error to record, and the server's Retry-After."""

    def __init__(self, err: WarndError, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(err.code)
        self.error = err
        self.retry_after = retry_after
        self.status = status  # the HTTP status, when the server answered


def backoff_seconds(failures: int, interval: float, cap: float, retry_after: float | None = None) -> float:
    """How long until the next poll after `failures` failed polls in a row (pure).

    The interval, doubled per failure after the first, up to `cap`; never sooner than
    the server's Retry-After asks (that one may exceed the cap: it is the server's word).
    """
    wait = interval if failures <= 0 else min(interval * 2 ** (failures - 1), max(cap, interval))
    return max(wait, retry_after or 0.0)


def same_origin(a: str, b: str) -> bool:
    x, y = urlsplit(a), urlsplit(b)
    return (x.scheme, x.hostname, x.port or _port(x.scheme)) == (y.scheme, y.hostname, y.port or _port(y.scheme))


def _port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


class Fetcher:
    """One feed's requests; `session` is the poller's (the node's connection pool for feeds)."""

    def __init__(self, feed: FeedConfig, session: aiohttp.ClientSession) -> None:
        self.feed = feed
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=feed.timeout_seconds)

    async def index(self, validators: Validators, now: datetime) -> Fetched:
        return await self._get(self.feed.url, self.feed.max_index_bytes, INDEX_ACCEPT,
                               validators.request_headers(), validators, now, "index")

    async def message(self, url: str, max_bytes: int, now: datetime) -> bytes:
        fetched = await self._get(url, max_bytes, CAP_ACCEPT, {}, Validators(), now, "message")
        return fetched.body

    async def _get(self, url: str, max_bytes: int, accept: str, conditional: dict[str, str],
                   validators: Validators, now: datetime, what: str) -> Fetched:
        headers = {"User-Agent": USER_AGENT, "Accept": accept, **self.feed.headers, **conditional}
        auth = None
        if same_origin(url, self.feed.url):
            if self.feed.bearer_token:
                headers["Authorization"] = f"Bearer {self.feed.bearer_token}"
            elif self.feed.basic_user is not None:
                auth = aiohttp.BasicAuth(self.feed.basic_user, self.feed.basic_password or "")
        try:
            async with self.session.get(url, headers=headers, auth=auth, timeout=self.timeout,
                                        max_redirects=MAX_REDIRECTS) as response:
                if response.status == 304 and conditional:
                    return Fetched(304, b"", validators.merged(response.headers))
                if not 200 <= response.status < 300:
                    raise FetchFailed(error("feed.http_status", what, f"{url} answered HTTP {response.status}",
                                            f"{url} 返回 HTTP {response.status}"),
                                      parse_retry_after(response.headers, now), response.status)
                body = await read_limited(response, max_bytes, what)
                return Fetched(response.status, body, validators.merged(response.headers))
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            raise FetchFailed(error("feed.unreachable", what, f"{url}: {reason}"[:400],
                                    f"{url}：{reason}"[:400])) from None


async def read_limited(response: aiohttp.ClientResponse, max_bytes: int, what: str) -> bytes:
    """The body, or `feed.too_large` as soon as it is known to pass `max_bytes`."""
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        raise FetchFailed(_too_large(what, f"{declared} bytes declared", max_bytes))
    parts, size = [], 0
    async for chunk in response.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise FetchFailed(_too_large(what, f"more than {max_bytes} bytes", max_bytes))
        parts.append(chunk)
    return b"".join(parts)


def _too_large(what: str, size: str, limit: int) -> WarndError:
    return error("feed.too_large", what, f"the {what} is {size}; the limit is {limit}",
                 f"{'索引' if what == 'index' else '消息'}超过上限 {limit} 字节")
