"""The dispatcher: claims due deliveries, sends them, records every outcome.

Each channel has `concurrency` long-lived senders and one claim loop. The loop
claims what the idle senders can take plus some rows ahead (see `ahead_for`,
refilled when half are gone), so a claim's database round trip overlaps the
sends instead of idling the senders, and a red warning that arrives during a
large blue fan-out is claimed at the next refill, ahead of the remaining blue
rows. A sender takes its rate-limit token first and only then the next claimed
row (in claim order): rows never queue for tokens, so a red row waits behind at
most the rows claimed ahead, which are a quarter of a second of the rate.
Results are written in batches: with the next claim, in its transaction, or by
the flusher when no claim takes them along; until a result is written the row
stays `sending`, and a crash leaves it for the recovery sweep.

Where a second send would be a real duplicate (SMS, calls: the channel does not
de-duplicate), each row is marked handed (`deliveries.handed_at`) just before its
send, committed first (see `Handing`): after a crash, a claim without the mark is
known to have sent nothing and is queued again at once; one with it is asked about
at the provider. The mark is also a compare-and-set on the claim, so a row another
node took over is not sent twice. (交给供应商之前先落库标记：崩溃后未交出的立即重发，已交出的先向供应商查询。)

Provider limits (warnd/domain/rate_limit.py) hold for all nodes on the database: each
channel's rate is reserved there in batches of cells (an SMS costs its segments), and
a channel with caps per called number has each claim checked against them, in one
transaction, before its rows reach the senders: a row over a cap goes back to the
queue, due when the cap allows, its attempt given back. A send the provider refused
(429/5xx) is not an attempt either (`refused_free_minutes`): it is queued again for
its Retry-After, outside the results batch, since its attempt must be given back.
"""
from __future__ import annotations

import asyncio
import enum
import gc
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from warnd.clock import Clock
from warnd.config import Config
from warnd.domain.confirmation import short_code
from warnd.domain.delivery import Decision, State, decide
from warnd.domain.model import Level
from warnd.domain.rate_limit import cap_windows, send_cost
from warnd.engine.alerts import AlertCache, CachedAlert
from warnd.engine.metrics import Metrics
from warnd.engine.ratelimit import SharedRate
from warnd.store.deliveries import Applied, Claimed, DeliveryStore
from warnd.store.rate_limits import LimitStore, Refusal
from warnd.domain.sending import DRILL_PUBLIC, Channel, Message, Outcome, Recipient, SendResult, drill_blocked
from warnd_channels.registry import SPECS

log = logging.getLogger("warnd.dispatcher")
DEADLINE_MARGIN = 5.0  # seconds a send may run past the channel's own timeout before it is cancelled
WATCH_SECONDS = 1.0  # how often sends are checked against that deadline
FLUSH_SECONDS = 0.02  # results not taken along by a claim wait at most two of these
HAND_RETRY_SECONDS = 0.5  # a handed mark that could not be written is tried again after this
WARNINGS_KEPT = 256  # parsed warnings the senders keep at hand (the AlertCache holds as many)
# Young-generation collections: the default (700 allocations) runs one every few sends
# and promotes every object of a send in flight to the old generation, whose full
# collections then cost 100+ ms each over the process's long-lived objects.
GC_YOUNG_THRESHOLD = 20_000
_gc_tuned = False


def tune_gc() -> None:
    """Once per process: what exists when dispatching starts (modules, configuration,
    templates, caches) is kept out of every later collection, and young collections
    run less often. A fan-out of 20,000 webhooks spent 2 s in the collector before
    (a sixth of warnd's CPU)."""
    global _gc_tuned
    if _gc_tuned:
        return
    _gc_tuned = True
    gc.collect()
    gc.freeze()
    young, older, oldest = gc.get_threshold()
    gc.set_threshold(max(GC_YOUNG_THRESHOLD, young), older, oldest)


class Dispatcher:
    def __init__(self, store: DeliveryStore, alerts: AlertCache, channels: dict[str, Channel],
                 config: Config, clock: Clock, metrics: Metrics,
                 link_for: Callable[[Claimed], str] = lambda row: "") -> None:
        self.store = store
        self.alerts = alerts
        self.channels = channels
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.link_for = link_for  # the signed link a recipient gets (confirm, door-to-door list)
        self._wake = {name: asyncio.Event() for name in channels}
        self._results: list[Applied] = []
        self._flush_now = asyncio.Event()
        self._running = False
        self._tasks: list[asyncio.Task] = []  # claim loops, then the flusher
        self._senders: list[asyncio.Task] = []
        self._watchdogs: list[asyncio.Task] = []
        self._lanes: dict[str, Lane] = {}
        self._rates: list[SharedRate] = []
        self._handing: dict[str, Handing] = {}  # channels whose sends are marked handed first
        self._warnings: dict[int, tuple[CachedAlert, str]] = {}  # id -> (parsed, short code)
        self.limits = LimitStore(store.db, store.node)
        self._refusals: list[Refusal] = []  # refused sends, written by the flusher (attempt given back)
        self._unclaim: list[int] = []  # claims never sent whose hand-back failed, retried by the flusher
        self._admitted: dict[int, float] = {}  # claimed row → when its number's caps admitted it

    def wake(self) -> None:
        """New work was committed in this process: claim it without waiting for the poll."""
        for event in self._wake.values():
            event.set()

    async def start(self) -> None:
        tune_gc()
        self._running = True
        for name in self.channels:
            cfg = self.config.channel(name)
            lane = self._lanes[name] = Lane(ahead_for(cfg.concurrency, cfg.rate_per_second,
                                                      self.config.dispatcher.batch_size))
            rate = SharedRate(name, cfg.rate_per_second, self._reserver(name, cfg.rate_per_second))
            self._rates.append(rate)
            if not SPECS[name].dedupes:
                self._handing[name] = Handing(lambda ids: self.store.hand(ids))
            self._senders += [asyncio.create_task(self._sender(name, lane, rate), name=f"send-{name}")
                              for _ in range(cfg.concurrency)]
            self._watchdogs.append(asyncio.create_task(
                self._watchdog(lane, cfg.timeout_seconds + DEADLINE_MARGIN), name=f"watch-{name}"))
        self._tasks = [asyncio.create_task(self._channel_loop(n), name=f"dispatch-{n}") for n in self.channels]
        self._tasks.append(asyncio.create_task(self._flusher(), name="dispatch-flush"))

    async def stop(self) -> None:
        """Stop claiming, let sends in flight finish, write their results."""
        if not self._tasks:
            return
        self._running = False
        self.wake()
        for lane in self._lanes.values():
            lane.close()
        for task in self._tasks[:-1]:
            await task
        if self._senders:
            await asyncio.wait(self._senders)
        for name, lane in self._lanes.items():  # rows a sender put back (their mark failed)
            await self._hand_back(name, lane)
        for watchdog in self._watchdogs:
            watchdog.cancel()
        for rate in self._rates:
            await rate.close()
        self._flush_now.set()
        await self._tasks[-1]

    def _reserver(self, name: str, rate: float):  # noqa: ANN202 - a Reserve
        async def reserve(cells: int, now: float, burst: float) -> float:
            return await self.limits.reserve(name, cells, rate, now, burst)
        return reserve

    async def _channel_loop(self, name: str) -> None:
        lane = self._lanes[name]
        wake = self._wake[name]
        per_number = self.config.channel(name).per_number
        caps = cap_windows(per_number.minute, per_number.hour, per_number.day)
        try:
            while self._running:
                await lane.wait_low()
                if not self._running:
                    break
                # The results waiting for the flusher go in the claim's transaction: one commit.
                batch, self._results = self._results, []
                try:
                    claimed = await self.store.claim(name, min(lane.wanted(), self.config.dispatcher.batch_size),
                                                     self.config.dispatcher.lease_seconds, results=batch)
                except Exception:  # noqa: BLE001 - the database may be briefly away; keep the loop alive
                    log.exception("claim failed", extra={"channel": name})
                    self._results = batch + self._results  # rows stay `sending` until written
                    claimed = []
                else:
                    self._written(batch)
                if claimed and caps:
                    claimed = await self._admit(name, claimed, caps)
                    if claimed is None:  # the caps could not be checked: the rows went back
                        await asyncio.sleep(self.config.dispatcher.poll_seconds)
                        continue
                if not claimed:
                    wake.clear()
                    try:
                        await asyncio.wait_for(wake.wait(), self.config.dispatcher.poll_seconds)
                    except TimeoutError:
                        pass
                    continue
                lane.put(claimed)
        finally:
            lane.close()
            await self._hand_back(name, lane)

    async def _admit(self, name: str, claimed: list[Claimed], caps) -> list[Claimed] | None:  # noqa: ANN001
        """The claimed rows their numbers' caps let through now (the others are queued again,
        due when the caps allow); None when the caps could not be checked (all handed back)."""
        try:
            admission = await self.limits.admit(name, claimed, caps, self.clock.now())
        except Exception:  # noqa: BLE001 - the database may be briefly away: nothing unchecked goes out
            log.exception("checking per-number caps failed; the claims go back", extra={"channel": name})
            await self._give_back([row.id for row in claimed], name)
            return None
        for deferred in admission.deferred:
            log.info("send deferred by a per-number cap", extra={
                "channel": name, "delivery": deferred.delivery_id, "detail": deferred.detail})
        admitted = [row for row in claimed if row.id in admission.admitted]
        self._admitted.update((row.id, admission.at) for row in admitted)
        return admitted

    async def _hand_back(self, name: str, lane: "Lane") -> None:
        """Claimed, never sent: back to pending at once, their attempt not counted."""
        if not lane.ready:
            return
        unsent, lane.ready = list(lane.ready), deque()
        for row in unsent:
            self._admitted.pop(row.id, None)
        await self._give_back([row.id for row in unsent], name)

    async def _give_back(self, ids: list[int], name: str) -> None:
        """Claims never sent, back to pending now; if the database is away, the flusher tries
        again (otherwise they would wait for their lease: a minute of a red warning)."""
        try:
            await self.store.unclaim(ids)
        except Exception:  # noqa: BLE001 - kept for the flusher; at worst the lease runs out (unsent)
            log.exception("handing back unsent claims failed; trying again", extra={"channel": name})
            self._unclaim += ids

    async def _sender(self, name: str, lane: "Lane", rate: SharedRate) -> None:
        """Send claimed rows one after the other until the lane closes."""
        channel = self.channels[name]
        cfg = self.config.channel(name)
        retry = cfg.retry
        refused_free = cfg.refused_free_minutes * 60
        public = cfg.public
        me = asyncio.current_task()
        observe = self.metrics.child(self.metrics.send_seconds, name).observe
        clock = self.clock
        batch_size = self.config.dispatcher.batch_size
        handing = self._handing.get(name)
        while await lane.wait_ready():
            await rate.take()
            row = lane.take()
            if row is None:  # another sender was quicker
                rate.give_back()
                continue
            admitted_at = self._admitted.pop(row.id, None)
            started = clock.now()
            try:
                known = self._warnings.get(row.warning_id)
                if known is None:
                    known = await self._warning(row.warning_id)
                message = self._message(row, *known)
                if drill_blocked(message.alert, message.recipient, public):  # planning decided; checked once more
                    rate.give_back()
                    result = DRILL_PUBLIC
                else:
                    rendered = channel.render(message)
                    cost = send_cost(rendered.content_type)  # an SMS: its segments
                    rate.charge(cost - 1)
                    if handing is not None and not await self._handed(handing, lane, rate, row, cost, admitted_at):
                        continue
                    result = await self._send(channel, message, rendered, lane, me, observe)
            except Exception as exc:  # noqa: BLE001 - a broken template or warning must not stop the loop
                log.exception("render or send failed", extra={"delivery": row.id})
                result = SendResult(Outcome.FAILED, "internal", detail=f"{type(exc).__name__}: {exc}")
            finished = clock.now()
            try:
                decision = decide(result, row.attempts - 1, finished, max_attempts=retry.max_attempts,
                                  base=retry.base_seconds, maximum=retry.max_seconds,
                                  planned_at=row.created_at, refused_free_seconds=refused_free)
                self._count(name, result, decision, row)
            except Exception:  # noqa: BLE001 - this sender serves the next row; the sweep recovers this one
                log.exception("recording a result failed", extra={"delivery": row.id})
                continue
            if not decision.counted:  # refused: queued again for its Retry-After, attempt given back
                self._refusals.append(Refusal(name, row.id, row.attempts, row.address, started, finished,
                                              decision, admitted_at))
                continue
            results = self._results  # the flusher takes the list and leaves a new one
            results.append(Applied(row.id, row.attempts, started, finished, decision, result.provider_ref))
            if len(results) >= batch_size:
                self._flush_now.set()

    @staticmethod
    async def _send(channel: Channel, message: Message, rendered, lane: "Lane", me: asyncio.Task,  # noqa: ANN001
                    observe: Callable[[float], None]) -> SendResult:
        """One send, timed; one the watchdog cancelled counts as a timeout."""
        sending, overdue = lane.sending, lane.overdue
        t0 = sending[me] = time.monotonic()
        try:
            result = await channel.send(message, rendered)
        except asyncio.CancelledError:
            if me not in overdue:  # not the watchdog's doing
                raise
            overdue.discard(me)
            me.uncancel()
            result = SendResult(Outcome.RETRY, "timeout", detail="channel did not return in time")
        finally:
            del sending[me]
        observe(time.monotonic() - t0)
        return result

    async def _handed(self, handing: "Handing", lane: "Lane", rate: SharedRate, row: Claimed, cost: int,
                      admitted_at: float | None) -> bool:
        """Is the row's handed mark committed, so its send may start? A row taken over by
        another node is dropped (that node sends it); one whose mark failed goes back first
        in line, with its cells."""
        verdict = await handing(row.id)
        if verdict is Hand.OURS:
            return True
        if verdict is Hand.FAILED:
            lane.put_back(row)
            rate.give_back(cost)
            if admitted_at is not None:
                self._admitted[row.id] = admitted_at
        else:
            log.warning("claim taken over by another node: not sent here", extra={"delivery": row.id})
        return False

    async def _watchdog(self, lane: "Lane", deadline: float) -> None:
        """Cancels a send that outlives `deadline`; it counts as a timeout.

        One watch per channel instead of a timer per send (asyncio.timeout cost 4-5 µs
        a send). The channel's own timeout should come first.
        """
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            now = time.monotonic()
            for task, since in list(lane.sending.items()):
                if now - since > deadline and task not in lane.overdue:
                    lane.overdue.add(task)
                    task.cancel()

    def _count(self, name: str, result: SendResult, decision: Decision, row: Claimed) -> None:
        metrics = self.metrics
        state = decision.state
        metrics.child(metrics.results, name, result.outcome.value, result.code).inc()
        if result.operator:
            metrics.child(metrics.alarms, result.code).inc()
            log.error("operator alarm: provider refused credentials", extra={
                "alarm": True, "code": result.code, "channel": name, "delivery": row.id})
        if state is State.PENDING:
            metrics.child(metrics.retries, name).inc()
        elif state is State.FAILED:  # given up for good (a permanent error, or retries exhausted)
            log.warning("send gave up", extra={
                "channel": name, "delivery": row.id, "warning_id": row.warning_id, "purpose": row.purpose,
                "recipient_kind": row.recipient_kind, "recipient": row.recipient_id, "attempts": row.attempts,
                "code": decision.code, "last_code": result.code, "detail": decision.detail})

    async def _warning(self, warning_id: int) -> tuple[CachedAlert, str]:
        """A warning as the senders need it; it never changes under its id, so it is kept while in use."""
        if len(self._warnings) >= WARNINGS_KEPT:
            self._warnings.clear()
        known = self._warnings[warning_id] = (await self.alerts.get(warning_id), short_code(warning_id))
        return known

    def _message(self, row: Claimed, cached: CachedAlert, code: str) -> Message:
        mentions = tuple(row.params.get("mentions", ())) if row.params else ()
        recipient = Recipient(row.recipient_kind, row.recipient_id, row.address, row.language,
                              row.format or "cap", row.secret or "", bool(row.public), mentions)
        return Message(row.id, row.warning_id, cached.alert, cached.cap_xml, Level(row.priority),
                       recipient, row.attempts, row.created_at, row.must_confirm, code, row.purpose,
                       self.link_for(row), row.params if row.purpose in ("door_ask", "door_alarm") else None)

    async def _flusher(self) -> None:
        """Writes the results no claim has taken along: those of a full batch at once, the rest
        once they have waited a round (so during a fan-out they mostly go with the claims)."""
        seen: list[Applied] | None = None
        while self._running or self._results or self._refusals or not all(s.done() for s in self._senders):
            try:
                await asyncio.wait_for(self._flush_now.wait(), FLUSH_SECONDS)
            except TimeoutError:
                pass
            if self._refusals:
                await self._requeue_refused()
            if self._unclaim:
                await self._unclaim_again()
            if not self._flush_now.is_set() and self._results is not seen and self._running:
                seen = self._results  # a claim takes the list and leaves a new one
                continue
            self._flush_now.clear()
            batch, self._results = self._results, []
            if not batch:
                continue
            try:
                await self.store.apply(batch)
            except Exception:  # noqa: BLE001 - keep the results and try again; rows stay `sending`
                log.exception("writing results failed; will retry")
                self._results = batch + self._results
                await asyncio.sleep(0.5)
            else:
                self._written(batch)

    async def _requeue_refused(self) -> None:
        refusals, self._refusals = self._refusals, []
        try:
            await self.limits.requeue_refused(refusals)
        except Exception:  # noqa: BLE001 - keep them and try again; the rows stay `sending`
            log.exception("queueing refused sends again failed; will retry")
            self._refusals = refusals + self._refusals
            await asyncio.sleep(0.5)
        else:
            self.wake()  # a Retry-After may be short

    async def _unclaim_again(self) -> None:
        # A hand-back whose commit went through before its error may have let this node claim
        # a row again: one it is sending now is not taken back (it would be sent twice).
        ids = [i for i in self._unclaim if self.store.sending_attempt(i) is None]
        self._unclaim = []
        if not ids:
            return
        try:
            await self.store.unclaim(ids)
        except Exception:  # noqa: BLE001 - still away: keep them, try again shortly
            self._unclaim = ids + self._unclaim
            await asyncio.sleep(HAND_RETRY_SECONDS)
        else:
            log.info("unsent claims handed back", extra={"count": len(ids)})
            self.wake()

    def _written(self, batch: list[Applied]) -> None:
        if any(a.decision.state is State.PENDING for a in batch):  # a retry may be due soon
            self.wake()


class Hand(enum.Enum):
    OURS = "ours"  # marked: send it
    LOST = "lost"  # another node took the claim over: not ours to send
    FAILED = "failed"  # the mark could not be written: not sent yet, try again


class Handing:
    """Marks rows handed just before their sends, in groups: every row whose sender gets
    here while a mark is being written goes into the next one (group commit). A fan-out
    then costs one UPDATE per round of sends, not one per send, and no send starts
    before its own row's mark is committed."""

    def __init__(self, mark: Callable[[list[int]], Awaitable[set[int]]]) -> None:
        self._mark = mark
        self._waiting: dict[int, asyncio.Future[Hand]] = {}
        self._writer: asyncio.Task | None = None

    async def __call__(self, row_id: int) -> Hand:
        future = asyncio.get_running_loop().create_future()
        self._waiting[row_id] = future
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="hand-mark")
        return await future

    async def _write(self) -> None:
        batch: dict[int, asyncio.Future[Hand]] = {}
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                _settle(batch, await self._verdicts(list(batch)))
        finally:  # cancelled (the loop is closing): nobody sends unmarked
            _settle({**batch, **self._waiting}, {})
            self._waiting = {}
            self._writer = None

    async def _verdicts(self, ids: list[int]) -> dict[int, Hand]:
        try:
            ours = await self._mark(ids)
        except Exception:  # noqa: BLE001 - the database may be briefly away: the rows wait, unsent
            log.exception("marking sends handed failed; they wait", extra={"count": len(ids)})
            await asyncio.sleep(HAND_RETRY_SECONDS)
            return dict.fromkeys(ids, Hand.FAILED)
        return {i: Hand.OURS if i in ours else Hand.LOST for i in ids}


def _settle(waiting: dict[int, asyncio.Future[Hand]], verdicts: dict[int, Hand]) -> None:
    for row_id, future in waiting.items():
        if not future.done():
            future.set_result(verdicts.get(row_id, Hand.FAILED))


AHEAD_SECONDS = 0.25  # claimed rows waiting for a sender: at most this much of the channel's rate


def ahead_for(concurrency: int, rate_per_second: float, batch_size: int) -> int:
    """How many claimed rows may wait for a sender: a round for the senders (more, up to a
    claim batch, when the rate allows), never more than AHEAD_SECONDS of the rate: at one
    SMS a second, rows claimed ahead would hold a red warning back by as many seconds."""
    return max(1, min(max(concurrency, batch_size), int(rate_per_second * AHEAD_SECONDS)))


class Lane:
    """One channel's claimed rows waiting for a sender (in claim order).

    `ahead` rows may wait for a sender; the claim loop is cued when half of them are gone.
    """

    def __init__(self, ahead: int) -> None:
        self.ahead = ahead
        self.refill_at = ahead // 2
        self.ready: deque[Claimed] = deque()
        self.sending: dict[asyncio.Task, float] = {}  # sender -> when its send began (monotonic)
        self.overdue: set[asyncio.Task] = set()  # senders the watchdog cancelled
        self._rows = asyncio.Event()
        self._low = asyncio.Event()
        self._open = True

    def wanted(self) -> int:
        """How many rows a claim should take: enough to have `ahead` waiting. (Idle senders
        do not count: a sender takes a row only once it holds a token of the rate.)"""
        return max(1, self.ahead - len(self.ready))

    async def wait_low(self) -> None:
        """Until few claimed rows are left waiting (or the lane closes)."""
        while self._open and len(self.ready) > self.refill_at:
            self._low.clear()
            await self._low.wait()

    def put(self, rows: list[Claimed]) -> None:
        """Claimed rows, in order, for the senders."""
        self.ready.extend(rows)
        if self.ready:
            self._rows.set()

    async def wait_ready(self) -> bool:
        """Until a claimed row waits (True), or the lane is closed (False)."""
        while self._open and not self.ready:
            self._low.set()
            self._rows.clear()
            await self._rows.wait()
        return self._open

    def take(self) -> Claimed | None:
        """The next claimed row, if one waits and the lane is open."""
        if not self._open or not self.ready:
            return None
        row = self.ready.popleft()
        if len(self.ready) <= self.refill_at:
            self._low.set()
        return row

    def put_back(self, row: Claimed) -> None:
        """A row taken but not sent (its handed mark failed): first in line again."""
        self.ready.appendleft(row)
        self._rows.set()

    def close(self) -> None:
        """No more rows for the senders: each finishes what it sends now, then stops."""
        self._open = False
        self._rows.set()
        self._low.set()
