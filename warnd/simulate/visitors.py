"""Simulated door-to-door visitors: whoever receives a call-list SMS walks the list.

The runner watches what the Twilio simulator delivered. A delivered SMS with a
call-list link (`…/d/<token>`) sends its recipient on a walk: after
`start_after` simulated seconds they open the page, then every `visit_after`
seconds they mark the next unmarked household, exactly as a person taps the
page's buttons (POST `…/d/<token>/items/<id>`, answered 303). A list is walked
once however often its SMS arrives. While warnd is down the visitor waits and
tries again; a list whose warning ended (409) is left as it is.
"""
from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

LINK = re.compile(r"(https?://\S+?/d/([0-9]+)\.[0-9]+\.[A-Za-z0-9_-]+)")
ITEM = re.compile(r'<li class="hh( vul)?( done)?" id="i([0-9]+)"')
GIVE_UP_SECONDS = 120.0  # real seconds a visitor keeps trying to reach a warnd that is down


@dataclass
class Walk:
    list_id: int
    link: str
    to: str
    households: int = 0
    marked: int = 0  # by this visitor
    outcome: str = "walking"  # walking / done / inactive / failed: <why>
    started_at: float | None = None  # simulated seconds from the start
    finished_at: float | None = None


@dataclass
class Visitors:
    session: aiohttp.ClientSession
    sleep: Callable[[float], Awaitable[None]]  # sleeps simulated seconds
    now: Callable[[], float]  # simulated seconds from the start
    ready: asyncio.Event  # warnd answers
    visit_after: float
    start_after: float
    mark: str
    people: int = 1  # mark moved: each household's head count
    walks: dict[int, Walk] = field(default_factory=dict)
    _seen: int = 0
    _waiting: list = field(default_factory=list)  # messages with a link, not final yet
    _tasks: set = field(default_factory=set)

    def watch(self, messages: list) -> None:  # noqa: ANN001 - the simulator's MessageRecords
        """Look at the messages the simulator received since the last call; start walks."""
        for m in messages[self._seen:]:
            if "/d/" in m.body:
                self._waiting.append(m)
        self._seen = len(messages)
        still = []
        for m in self._waiting:
            if m.status in ("sent", "queued", "accepted"):
                still.append(m)
            elif m.status == "delivered":
                for link, list_id in LINK.findall(m.body):
                    if int(list_id) not in self.walks:
                        walk = self.walks[int(list_id)] = Walk(int(list_id), link, m.to)
                        task = asyncio.get_running_loop().create_task(self._walk(walk))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
        self._waiting = still

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def walking(self) -> int:
        return sum(1 for w in self.walks.values() if w.outcome == "walking")

    def _form(self) -> dict[str, str]:
        return {"mark": self.mark, **({"people": str(self.people)} if self.mark == "moved" else {})}

    async def _walk(self, walk: Walk) -> None:
        await self.sleep(self.start_after)
        walk.started_at = self.now()
        try:
            status, page = await self._request("GET", walk.link)
            if status != 200:
                walk.outcome = "inactive" if status in (409, 410) else f"failed: page answered {status}"
                return
            items = [(int(i), bool(done)) for _, done, i in ITEM.findall(page)]
            walk.households = len(items)
            for item_id, done in items:
                if done:
                    continue
                await self.sleep(self.visit_after)
                status, _ = await self._request("POST", f"{walk.link}/items/{item_id}", self._form())
                if status == 409:
                    walk.outcome = "inactive"
                    return
                if status != 303:
                    walk.outcome = f"failed: marking answered {status}"
                    return
                walk.marked += 1
            walk.outcome = "done"
        except TimeoutError:
            walk.outcome = "failed: warnd did not answer"
        finally:
            walk.finished_at = self.now()

    async def _request(self, method: str, url: str, data: dict | None = None) -> tuple[int, str]:
        """One request as a phone's browser makes it; while warnd is down, wait for it (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GIVE_UP_SECONDS
        while True:
            try:
                async with self.session.request(method, url, data=data, allow_redirects=False,
                                                timeout=aiohttp.ClientTimeout(total=30)) as response:
                    return response.status, await response.text()
            except (aiohttp.ClientError, TimeoutError):
                if loop.time() > deadline:
                    raise TimeoutError(url) from None
                async with asyncio.timeout(max(deadline - loop.time(), 0.1)):
                    await self.ready.wait()
                await asyncio.sleep(0.2)
