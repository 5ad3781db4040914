"""The console's live view of a warning: a snapshot, the same as server-sent events, and
speakers' presence for the directory page.

GET …/live answers one snapshot (warnd/store/live.py). GET …/live/stream sends
`event: snapshot` at once and again whenever the snapshot changed (its `now` and
`since_issue_seconds` aside), re-reading it every console.live_poll_seconds; streams
of one warning share one read per poll. A `: keep-alive` comment goes every ~15 s
so proxies keep the connection; the caller's session (or token) and right to read
the warning are checked again every ~30 s, and the stream ends when they lapse.
At most console.max_streams are open per node (503 beyond); a stream ends when
its client goes away or the server shuts down (`close_streams`, on_shutdown).

Read as rollups are: a department sees its own warnings, READ_ALL roles every one
(404 otherwise); phones only with the contacts right.
"""
from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from warnd.domain.authority import Right, Scope
from warnd.domain.errors import WarndError
from warnd.engine.node import Node
from warnd.http.auth import scope_of
from warnd.http.keys import NODE
from warnd.http.problems import problem_response
from warnd.http.responses import dumps, json_ok
from warnd.http.rollups_api import _readable
from warnd.store.live import LiveStore

log = logging.getLogger("warnd.http")
BUSY = "live.busy"
RETRY_MS = 3000  # how soon a browser reconnects a dropped stream
VOLATILE = ("now", "since_issue_seconds")  # change every read; a change of only these is not sent
# A snapshot that took t seconds to read is read again no sooner than SPACING × t later: a
# province warning (100,000 grids, ~2 s a read) is re-read every ~8 s, not every second,
# so live views never take more than a fifth of the node's time from the dispatcher.
SPACING = 4


@dataclass(frozen=True)
class StreamTiming:
    """How often a stream sends a keep-alive and re-checks its caller, in seconds."""

    keepalive_seconds: float = 15.0
    recheck_seconds: float = 30.0


TIMING = web.AppKey("live_timing", StreamTiming)  # set before the app starts to change them (tests)


@dataclass
class _Shared:
    """The latest snapshot of one (warning, contacts) and how many streams follow it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    read_at: float = float("-inf")
    cost: float = 0.0  # seconds the last read took
    snapshot: dict | None = None
    followers: int = 0


class Streams:
    """A node's open streams: their count against the limit, the snapshots they share,
    and the event that ends them all when the server shuts down."""

    def __init__(self) -> None:
        self.open = 0
        self.closing = asyncio.Event()
        self._shared: dict[tuple[int, bool], _Shared] = {}

    def follow(self, key: tuple[int, bool]) -> _Shared:
        shared = self._shared.setdefault(key, _Shared())
        shared.followers += 1
        return shared

    def leave(self, key: tuple[int, bool]) -> None:
        shared = self._shared.get(key)
        if shared is not None:
            shared.followers -= 1
            if shared.followers <= 0:
                del self._shared[key]

    @staticmethod
    async def read(shared: _Shared, poll: float, load: Callable[[], Awaitable[dict | None]]) -> dict | None:
        """The shared snapshot, read again when older than the poll interval (by whichever
        stream asks first), or than SPACING × its last read's cost if that is longer."""
        async with shared.lock:
            started = time.monotonic()
            if started - shared.read_at >= interval(shared, poll):
                shared.snapshot = await load()
                shared.read_at = time.monotonic()
                shared.cost = shared.read_at - started
            return shared.snapshot


def interval(shared: _Shared, poll: float) -> float:
    return max(poll, SPACING * shared.cost)


_STREAMS: weakref.WeakKeyDictionary[Node, Streams] = weakref.WeakKeyDictionary()


def streams_of(app: web.Application) -> Streams:
    node = app[NODE]
    if node not in _STREAMS:
        _STREAMS[node] = Streams()
    return _STREAMS[node]


async def close_streams(app: web.Application) -> None:
    """on_shutdown: end every open stream now, instead of after the runner's shutdown timeout."""
    streams_of(app).closing.set()


async def _snapshot(request: web.Request, scope: Scope, warning_id: int) -> dict | None:
    node = request.app[NODE]
    return await LiveStore(node.db).snapshot(warning_id, node.clock.now(), scope.can(Right.CONTACTS))


async def live(request: web.Request) -> web.Response:
    scope, warning_id = await _readable(request)
    found = await _snapshot(request, scope, warning_id)
    if found is None:
        raise WarndError("warning.not_found")
    return json_ok(found, headers={"Cache-Control": "no-store"})


def _comparable(snapshot: dict) -> dict:
    """The snapshot but for what changes every read; compared as values (equal exactly when their
    JSON is), which costs a tenth of serialising a large one every poll."""
    return {k: v for k, v in snapshot.items() if k not in VOLATILE}


def _event(name: str, data: object) -> bytes:
    return f"event: {name}\ndata: {dumps(data)}\n\n".encode()


async def stream(request: web.Request) -> web.StreamResponse:
    scope, warning_id = await _readable(request)
    node = request.app[NODE]
    streams = streams_of(request.app)
    if streams.open >= node.config.console.max_streams:
        busy = problem_response(request, WarndError(BUSY))
        busy.headers["Retry-After"] = str(RETRY_MS // 1000)
        return busy
    streams.open += 1
    key = (warning_id, scope.can(Right.CONTACTS))
    shared = streams.follow(key)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    try:
        await response.prepare(request)
        await response.write(f"retry: {RETRY_MS}\n\n".encode())
        await _follow(request, response, streams, shared, scope, warning_id)
        await response.write_eof()
    except ConnectionError:  # the client went away mid-write: nothing to tell anyone
        pass
    except Exception:  # noqa: BLE001 - the database away mid-stream: end it; the browser reconnects
        log.warning("live stream ended by an error", exc_info=True, extra={"path": request.path})
    finally:
        streams.leave(key)
        streams.open -= 1
    return response


async def _follow(request: web.Request, response: web.StreamResponse, streams: Streams, shared: _Shared,
                  scope: Scope, warning_id: int) -> None:
    """Send snapshots as they change until the client leaves, the caller's right lapses or the server stops."""
    poll = request.app[NODE].config.console.live_poll_seconds
    timing = request.app.get(TIMING) or StreamTiming()
    loop = asyncio.get_running_loop()
    sent = None
    last_write = checked = loop.time()
    while True:
        found = await streams.read(shared, poll, lambda: _snapshot(request, scope, warning_id))
        if found is None:
            await response.write(_event("end", {"reason": "not_found", "code": "warning.not_found"}))
            return
        comparable = _comparable(found)
        if comparable != sent:
            await response.write(_event("snapshot", found))
            sent, last_write = comparable, loop.time()
        try:
            await asyncio.wait_for(streams.closing.wait(), min(interval(shared, poll), timing.keepalive_seconds))
            await response.write(_event("end", {"reason": "server_stopping", "code": None}))
            return
        except TimeoutError:
            pass
        if request.transport is None or request.transport.is_closing():
            return
        if loop.time() - checked >= timing.recheck_seconds:
            try:
                scope, _ = await _readable(request)
            except WarndError as err:  # logged out, timed out, disabled, or no longer allowed
                await response.write(_event("end", {"reason": "not_allowed", "code": err.code}))
                return
            checked = loop.time()
        if loop.time() - last_write >= timing.keepalive_seconds:
            await response.write(b": keep-alive\n\n")
            last_write = loop.time()


async def presence(request: web.Request) -> web.Response:
    """Speakers and their last reported presence (any reader); ?under=<region code> narrows it."""
    await scope_of(request)
    under = request.query.get("under") or None
    return json_ok({"items": await LiveStore(request.app[NODE].db).presence(under)})


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/warnings/{id}/live", live),
            web.get("/api/v1/warnings/{id}/live/stream", stream),
            web.get("/api/v1/speakers/presence", presence)]
