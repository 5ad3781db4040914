"""A channel's rate, shared by every node on the database: cells reserved in batches.

Senders take one cell each, in arrival (priority) order; a send that costs more (an
SMS of three segments) owes the rest, which the next sender waits for. Cells come
from the database a quarter second of the rate at a time (`LimitStore.reserve`), the
next run reserved while this one lasts, so the hot path neither goes to the database
per send nor waits for it. Runs are longer while reserving is slow (a database busy
with a fan-out's receipts: up to 2 s). Two nodes never get the same cell, so together
they keep to the rate. Should the database be away, this node goes
on alone at the full rate rather than stop sending warnings (logged).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from warnd.domain.rate_limit import Cells, burst_seconds, reserve_seconds

log = logging.getLogger("warnd.ratelimit")
Reserve = Callable[[int, float, float], Awaitable[float]]  # (cells, now, burst) → start of the first (epoch)


class SharedRate:
    def __init__(self, name: str, rate: float, reserve: Reserve) -> None:
        self.name = name
        self.cells = Cells(rate, burst_seconds(rate))
        self._reserve = reserve
        self._lock = asyncio.Lock()  # FIFO: waiters are served in arrival (priority) order
        self._fetching: asyncio.Task | None = None  # the next run, being reserved
        self._latency = 0.0  # how long a reservation takes (moving average): runs are sized by it
        self._alone = False  # the last reservation failed: counting locally

    async def take(self) -> None:
        """One cell: returns when this node may start a send."""
        async with self._lock:
            while True:
                now = time.time()
                wait = self.cells.wait(now)
                if wait is None:
                    await self._fetch(now)
                    continue
                if self._fetching is None and self.cells.following is None and \
                        self.cells.left(now) < reserve_seconds(self._latency)[1] * self.cells.rate:
                    self._fetching = asyncio.create_task(self._more(now), name=f"rate-{self.name}")
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                self.cells.spend(1, now)
                return

    def charge(self, cells: int) -> None:
        """More cells for the send that just took one (its other segments): owed, paid by the next take."""
        if cells > 0:
            self.cells.spend(cells, time.time())

    def give_back(self, cells: int = 1) -> None:
        """Cells taken for a send that did not happen."""
        self.cells.give_back(cells)

    async def close(self) -> None:
        """Wait for a reservation under way (at shutdown, before the database closes)."""
        if self._fetching is not None:
            await asyncio.wait([self._fetching])

    async def _fetch(self, now: float) -> None:
        """Out of cells: wait for the run being reserved ahead, or reserve one now."""
        if self._fetching is None:
            self._fetching = asyncio.create_task(self._more(now), name=f"rate-{self.name}")
        await asyncio.shield(self._fetching)  # a cancelled sender leaves the reservation to finish

    async def _more(self, now: float) -> None:
        """Reserve the next run (a quarter second of the rate, and what is owed) while the
        senders spend what is left of this one: the database round trip is not in their way."""
        try:
            wanted = self.cells.wanted(reserve_seconds(self._latency)[0])
            began = time.monotonic()
            try:
                start = await self._reserve(wanted, now, self.cells.burst)
            except Exception:  # noqa: BLE001 - the database may be briefly away; warnings still go out
                if not self._alone:
                    log.exception("reserving shared rate cells failed; counting on this node alone",
                                  extra={"channel": self.name})
                self._alone = True
                start = max(self.cells.end, now - self.cells.burst)
            else:
                if self._alone:
                    log.warning("shared rate cells reserved again", extra={"channel": self.name})
                self._alone = False
                took = time.monotonic() - began
                self._latency = took if not self._latency else 0.7 * self._latency + 0.3 * took
            self.cells.ahead(start, wanted)
        finally:
            self._fetching = None
