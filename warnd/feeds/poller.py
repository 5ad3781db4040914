"""The feed poller: one job per configured feed, each poll a turn claimed in the database.

A poll: claim the turn (warnd/store/feeds.py) → conditional GET of the index →
for each entry not handled before: its CAP (embedded, or fetched from its link)
→ signature verified if the feed is signed → skipped if its (sender, identifier)
was applied already → `node.intake.submit`, exactly as `POST /api/v1/warnings`
does it. Each entry's outcome is recorded, so a CAP is fetched and applied once
across restarts and nodes; a refused entry is recorded with the API's problem
code and the rest of the feed goes on.

A feed acts as its department's issuer token: the scope is built as a department
token's is (warnd/http/tokens_api.py), from the feed's `department`, `senders`,
`events`, `regions` and `max_level`, with the role `department`. That role has
the SUBMIT right only (it approves nothing, reads nothing, and has no right to
supersede other departments' warnings), and the department's approval policy
decides whether what it issues is published at once or waits for 签发. Updates
and Cancels go through intake as through the API (they may change only the
department's own warnings).

A failed poll backs off (interval doubled per failure, up to `backoff_max_seconds`,
never sooner than Retry-After). A feed with `alarm_after_polls` failed polls in a
row, or no successful poll for that many intervals, raises the `feed.down`
operator alarm once; the next successful poll clears it.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import aiohttp
from lxml import etree

from warnd.config import FeedConfig
from warnd.domain.authority import Role, Scope
from warnd.domain.errors import WarndError, error
from warnd.domain.model import Level
from warnd.feeds import signature
from warnd.feeds.fetch import Fetcher, FetchFailed, Validators, backoff_seconds, same_origin
from warnd.feeds.index import Entry, parse_index
from warnd.ingest import xmlsafe
from warnd.ingest.capxml import CAP_VERSIONS
from warnd.store.feeds import ALARM, DUPLICATE, FeedStore, Seen

log = logging.getLogger("warnd.feeds")
CAP_XML = "application/cap+xml"
HOLD = 0.9  # a claimed poll holds off the others for this share of the interval


def feed_scope(feed: FeedConfig) -> Scope:
    """The feed's principal: its department's issuer token (see the module docstring)."""
    return Scope(feed.department, tuple(feed.events), tuple(feed.regions), Level.parse(feed.max_level),
                 Role.DEPARTMENT, tuple(feed.senders), False, f"feed:{feed.name}")


class FeedPoller:
    def __init__(self, node) -> None:  # noqa: ANN001 - the Node
        self.node = node
        self.store = FeedStore(node.db)
        self.feeds = {feed.name: feed for feed in node.config.feeds}
        self._certs = {feed.name: signature.load_certificates(feed.trusted_certs)
                       for feed in node.config.feeds if feed.signed}

    def jobs(self) -> list[tuple[Callable[[], Awaitable[object]], float, str]]:
        """(poll job, interval seconds, job name): one per configured feed."""
        return [(self._job(feed), feed.interval_seconds, f"feed-{feed.name}") for feed in self.feeds.values()]

    def _job(self, feed: FeedConfig) -> Callable[[], Awaitable[object]]:
        async def poll() -> str:
            return await self.poll(feed.name)
        poll.__name__ = f"poll_feed_{feed.name}"
        return poll

    async def poll(self, name: str) -> str:
        """Poll one feed if it is this node's turn; returns the result as the metrics count it."""
        feed = self.feeds[name]
        now = self.node.clock.now()
        state = await self.store.claim(name, now, feed.interval_seconds * HOLD)
        if state is None:  # another node's turn, or backing off
            current = await self.store.state(name)
            if current is not None:
                await self._alarm_if_down(feed, current.consecutive_failures,
                                          current.last_success_at or current.created_at, current.last_error_code, now)
            return self._count(name, "skipped")
        session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
        try:
            fetcher = Fetcher(feed, session)
            fetched = await fetcher.index(Validators(state.etag, state.last_modified), now)
            new, refused = 0, None
            if fetched.status != 304:
                index = parse_index(fetched.body, feed.max_index_bytes, base_url=feed.url,
                                    untyped_links=feed.untyped_links)
                new, refused = await self._entries(feed, fetcher, index.entries, now)
        except FetchFailed as failed:
            return await self._failed(feed, state.last_success_at or state.created_at, failed.error,
                                      failed.retry_after, now)
        except WarndError as err:  # the index itself is refused
            return await self._failed(feed, state.last_success_at or state.created_at, err, None, now)
        except Exception:  # noqa: BLE001 - the database or a bug: recorded, backed off, retried
            log.exception("feed poll failed", extra={"feed": name})
            return await self._failed(feed, state.last_success_at or state.created_at, WarndError("internal"),
                                      None, now)
        finally:
            await session.close()
        if await self.store.succeeded(name, now, fetched.validators.etag, fetched.validators.last_modified, new,
                                      refused):
            log.info("feed recovered: operator alarm cleared", extra={"feed": name, "code": ALARM})
        self.node.metrics.feed_last_success.labels(name).set(now.timestamp())
        return self._count(name, "not_modified" if fetched.status == 304 else "ok")

    async def _entries(self, feed: FeedConfig, fetcher: Fetcher, entries: tuple[Entry, ...],
                       now: datetime) -> tuple[int, tuple[str, str] | None]:
        """New alerts applied, and the last entry refused (code, detail)."""
        seen = await self.store.seen(feed.name, [e.key for e in entries])
        new, refused = 0, None
        for entry in entries:
            if entry.key in seen:
                continue
            outcome = await self._entry(feed, fetcher, entry, now)
            if outcome is None:  # transient: tried again next poll
                continue
            await self.store.record(feed.name, outcome, now)
            if outcome.code is None:
                new += 1
                self.node.metrics.feed_alerts.labels(feed.name).inc()
            elif outcome.code != DUPLICATE:
                self.node.metrics.feed_refused.labels(feed.name, outcome.code).inc()
                refused = (outcome.code, f"{entry.ref}: {outcome.detail}")
                log.warning("feed entry refused", extra={"feed": feed.name, "entry": entry.ref,
                                                         "code": outcome.code, "detail": outcome.detail})
        return new, refused

    async def _entry(self, feed: FeedConfig, fetcher: Fetcher, entry: Entry, now: datetime) -> Seen | None:
        """One entry's CAP applied, or why not; None if it should be tried again later."""
        ids: tuple[str, str] | None = None
        try:
            document = entry.embedded
            if document is None:
                self._check_link(feed, entry.link or "")
                document = await fetcher.message(entry.link or "", self._max_message(feed), now)
            if feed.signed:
                document = signature.verified(document, self._certs[feed.name], self._max_message(feed))
            ids = cap_ids(document, self._max_message(feed))
            if ids is not None and await self.store.applied(*ids):
                return Seen(entry.key, entry.ref, *ids, code=DUPLICATE)
            submitted, parsed = await self.node.intake.submit(document, CAP_XML, feed_scope(feed))
        except FetchFailed as failed:
            if failed.error.code != "feed.too_large" and failed.status not in PERMANENT_STATUSES:
                log.warning("feed entry not fetched", extra={"feed": feed.name, "entry": entry.ref,
                                                             "code": failed.error.code})
                return None
            return _refused(entry, ids, failed.error)
        except WarndError as err:
            if err.status >= 500:
                return None
            return _refused(entry, ids, err)
        alert = parsed.alert
        return Seen(entry.key, entry.ref, alert.sender, alert.identifier,
                    None if submitted.created else DUPLICATE, None, submitted.warning_id)

    def _check_link(self, feed: FeedConfig, link: str) -> None:
        parts = urlsplit(link)
        if parts.scheme in ("http", "https") and (same_origin(link, feed.url) or parts.hostname in feed.link_hosts):
            return
        raise error("feed.link_refused", "link", f"{link[:200]} is not on the feed's host or its link_hosts",
                    f"{link[:200]} 不在订阅源主机或 link_hosts 之内")

    def _max_message(self, feed: FeedConfig) -> int:
        return feed.max_message_bytes or self.node.config.max_body_bytes

    async def _failed(self, feed: FeedConfig, since: datetime, err: WarndError, retry_after: float | None,
                      now: datetime) -> str:
        state = await self.store.state(feed.name)
        failures = (state.consecutive_failures if state else 0) + 1
        wait = backoff_seconds(failures, feed.interval_seconds, feed.backoff_max_seconds, retry_after)
        detail = err.problems[0].detail_en if err.problems else err.kind.title_en
        failures = await self.store.failed(feed.name, err.code, detail, now + timedelta(seconds=wait))
        log.warning("feed poll failed", extra={"feed": feed.name, "code": err.code, "detail": detail,
                                               "failures": failures, "retry_in_seconds": wait})
        await self._alarm_if_down(feed, failures, since, err.code, now)
        return self._count(feed.name, err.code)

    async def _alarm_if_down(self, feed: FeedConfig, failures: int, since: datetime, last_error: str | None,
                             now: datetime) -> None:
        """N failed polls in a row, or no success for N intervals (backing off, or no node got a turn)."""
        silent = now - since >= timedelta(seconds=feed.alarm_after_polls * feed.interval_seconds)
        if failures < feed.alarm_after_polls and not silent:
            return
        detail = {"failures": failures, "last_error": last_error or None,
                  "since": since.isoformat(), "url": feed.url}
        if await self.store.raise_alarm(feed.name, now, detail):
            self.node.metrics.alarms.labels(ALARM).inc()
            log.error("operator alarm: feed failing or silent", extra={"alarm": True, "feed": feed.name, **detail})

    def _count(self, name: str, result: str) -> str:
        self.node.metrics.feed_polls.labels(name, result).inc()
        return result


PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 410})  # a CAP link answering so is refused, not retried


def _refused(entry: Entry, ids: tuple[str, str] | None, err: WarndError) -> Seen:
    detail = err.problems[0].detail_en if err.problems else err.kind.title_en
    sender, identifier = ids or (None, None)
    return Seen(entry.key, entry.ref, sender, identifier, err.code, detail)


def cap_ids(document: bytes, max_bytes: int) -> tuple[str, str] | None:
    """(sender, identifier) of a CAP document, read safely; None when unreadable (intake says why)."""
    try:
        root = xmlsafe.parse_xml(document, max_bytes)
    except WarndError:
        return None
    ns = etree.QName(root).namespace
    if ns not in CAP_VERSIONS:
        return None
    sender, identifier = root.findtext(f"{{{ns}}}sender"), root.findtext(f"{{{ns}}}identifier")
    return (sender.strip(), identifier.strip()) if sender and identifier else None
