"""Cron schedules (being built: issue 14)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable


class Schedules:
    def __init__(self, node) -> None:  # noqa: ANN001 - the Node
        self.node = node

    def jobs(self) -> list[tuple[Callable[[], Awaitable[object]], str, str]]:
        """(job, cron expression, job name): one per configured schedule."""
        return []
