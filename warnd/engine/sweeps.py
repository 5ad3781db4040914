"""Periodic sweeps: recover, expire, escalate, speakers, metrics.

Each sweep runs, then waits its interval (so one never overlaps itself, and a
slow run delays the next instead of piling up behind it); a failing run is
logged and the next one comes as usual. Stopping waits for the runs under way,
so none is cut off halfway through its transaction.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("warnd.sweeps")


class Sweeps:
    def __init__(self) -> None:
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def every(self, seconds: float, sweep: Callable[[], Awaitable[object]], name: str | None = None) -> None:
        name = name or getattr(sweep, "__name__", "sweep")
        self._tasks.append(asyncio.create_task(self._run(seconds, sweep, name), name=f"sweep-{name}"))

    async def _run(self, seconds: float, sweep: Callable[[], Awaitable[object]], name: str) -> None:
        while True:
            try:
                await asyncio.wait_for(self._stopping.wait(), seconds)
                return
            except TimeoutError:
                pass
            try:
                await sweep()
            except Exception:  # noqa: BLE001 - the next run may well succeed (database back, say)
                log.exception("sweep failed", extra={"sweep": name})

    async def stop(self) -> None:
        self._stopping.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def cron(self, expression: str, job: Callable[[], Awaitable[object]], name: str) -> None:
        raise NotImplementedError("cron jobs come with the scheduler (issue 14)")
