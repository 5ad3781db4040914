"""Group commit: many small writes from concurrent callers, one transaction for all.

Each write transaction costs a commit (an fsync with SQLite's synchronous=FULL),
and concurrent ones queue behind each other. A `Grouped` collects what callers
hand it; whoever finds no write under way starts one, which takes everything
waiting at that moment (up to `most`) and writes it with one call of `write`;
each caller is answered only once its item is committed.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Grouped(Generic[Item, Result]):
    def __init__(self, write: Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]],
                 most: int, name: str) -> None:
        """`write` commits a group and returns one result per item, in order (an exception
        as a result fails only that item's caller); if it raises, every caller gets the error."""
        self._write = write
        self._most = most
        self._name = name
        self._waiting: list[tuple[Item, asyncio.Future]] = []
        self._task: asyncio.Task | None = None

    async def __call__(self, item: Item) -> Result:
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if self._task is None or self._task.done():
            # a task of its own: a caller that goes away must not take the others' commit along
            self._task = asyncio.create_task(self._write_waiting(), name=self._name)
        return await asyncio.shield(done)

    async def _write_waiting(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting[:self._most], self._waiting[self._most:]
            try:
                results: Sequence = await self._write([item for item, _ in group])
            except Exception as exc:  # noqa: BLE001 - nothing of the group is stored: each caller hears why
                results = [exc] * len(group)
            for (_, done), result in zip(group, results):
                if done.done():
                    continue
                if isinstance(result, BaseException):
                    done.set_exception(result)
                else:
                    done.set_result(result)

    async def drain(self) -> None:
        """Wait for the group being written (at shutdown)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
