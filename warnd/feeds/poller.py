"""The feed poller (being built: issue 14)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable


class FeedPoller:
    def __init__(self, node) -> None:  # noqa: ANN001 - the Node
        self.node = node

    def jobs(self) -> list[tuple[Callable[[], Awaitable[object]], float, str]]:
        """(poll job, interval seconds, job name): one per configured feed."""
        return []
