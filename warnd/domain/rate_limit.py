"""Provider limits as arithmetic: a rate shared by every node, and caps per called number.

The rate is counted in *cells*: one cell is 1/rate seconds of the provider's capacity,
and a send costs as many cells as the provider counts (an SMS: its segments; a call
or a webhook: one). The database keeps one instant per limit, the end of the cells
reserved so far (GCRA's "theoretical arrival time"); a node reserves a run of cells
after it, `start = max(end, now - burst)`, and spends them locally (`Cells`). Two
nodes never own the same cell, so together they send at most `rate` cells a second
(plus the burst, and the rest of one send's segments a node owes for a moment).

Caps per called number count the sends of the last minute, hour and day (sliding
windows: they also keep to a provider that counts by calendar minute or day). A send
over a cap is not dropped: it waits until the cap lets it through.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

EPSILON = 1e-9  # float noise in cell arithmetic
RESERVE_SECONDS = 0.25  # cells reserved at a time: this long of the rate (at least one) …
MAX_RESERVE_SECONDS = 2.0  # … longer while reserving is slow (a busy database), never longer than this
Window = tuple[float, int]  # (seconds, sends allowed in them)
# A send is recorded against its number when it is claimed, and leaves a little later
# (rows claimed ahead wait a fraction of a second for a sender): windows are this much longer.
CAP_MARGIN_SECONDS = 2.0
_SEGMENTS = re.compile(r"(?:^|;)\s*segments=(\d+)\s*(?:;|$)")


def burst_seconds(rate: float) -> float:
    """How much unused capacity a limit keeps for a burst: a tenth of a second, at least a cell."""
    return max(1.0, rate / 10) / rate


def batch_cells(rate: float, seconds: float = RESERVE_SECONDS) -> int:
    """Cells a node reserves at once: few enough that another node waits at most `seconds`."""
    return max(1, math.ceil(rate * seconds - EPSILON))


def reserve_seconds(latency: float) -> tuple[float, float]:
    """(how long a run to reserve, how much of it left when the next is reserved) for a
    reservation that takes `latency` seconds: the next run must arrive before this one ends."""
    return (min(MAX_RESERVE_SECONDS, max(RESERVE_SECONDS, 3 * latency)),
            min(MAX_RESERVE_SECONDS, max(RESERVE_SECONDS / 2, 1.5 * latency)))


def segments_in(content_type: str) -> int | None:
    """The `segments=` parameter a channel put into a rendered content type (SMS), if any."""
    found = _SEGMENTS.search(content_type)
    return int(found.group(1)) if found else None


def send_cost(content_type: str) -> int:
    """Cells one rendered send costs: the segments its channel declared (SMS), else one."""
    return max(1, segments_in(content_type) or 1)


@dataclass
class Cells:
    """One node's share of a shared rate: the run of cells it reserved, the next cell to
    spend, and the run reserved after it (fetched ahead, so senders need not wait for it).

    `cursor` may run past `end`: a send of three segments takes its first cell and owes
    the other two, which the next run pays before anything else is sent.
    """

    rate: float
    burst: float  # seconds
    cursor: float = 0.0
    end: float = 0.0
    following: tuple[float, int] | None = None  # (start, cells) of the run reserved ahead

    @property
    def cell(self) -> float:
        return 1.0 / self.rate

    def wait(self, now: float) -> float | None:
        """Seconds until the next cell may be spent; None: none is owned (reserve first)."""
        while True:
            next_cell = max(self.cursor, now - self.burst)
            if next_cell + self.cell <= self.end + EPSILON:
                return max(0.0, next_cell - now)
            if self.following is None:
                return None
            start, cells = self.following
            self.following = None
            self.add(start, cells)

    def left(self, now: float) -> float:
        """Cells still owned (this run and the one reserved after it)."""
        here = max(0.0, (self.end - max(self.cursor, now - self.burst)) * self.rate)
        return here + (self.following[1] if self.following else 0)

    def spend(self, cells: float, now: float) -> None:
        self.cursor = max(self.cursor, now - self.burst) + cells * self.cell

    def give_back(self, cells: float) -> None:
        """Cells spent for a send that did not happen."""
        self.cursor -= cells * self.cell

    def owed(self) -> float:
        """Seconds of cells spent beyond those reserved (the rest of a send's segments)."""
        return max(0.0, self.cursor - self.end)

    def wanted(self, seconds: float = RESERVE_SECONDS) -> int:
        """How many cells to reserve next: `seconds` of the rate, plus what is owed."""
        return batch_cells(self.rate, seconds) + math.ceil(self.owed() * self.rate - EPSILON)

    def ahead(self, start: float, cells: int) -> None:
        """A run reserved while this one lasts: taken up when this one is spent."""
        self.following = (start, cells)

    def add(self, start: float, cells: int) -> None:
        """Cells reserved from `start` on, to spend now. Right after our own (no node reserved
        in between) they extend what we have; else what we owe moves to the front of the new run."""
        if abs(start - self.end) > EPSILON:
            self.cursor = start + self.owed()
        self.end = start + cells * self.cell


def cap_windows(minute: int | None, hour: int | None, day: int | None) -> tuple[Window, ...]:
    return tuple((seconds, n) for seconds, n in ((60.0, minute), (3600.0, hour), (86400.0, day))
                 if n is not None)


def next_allowed(sent: Iterable[float], windows: Sequence[Window], now: float,
                 margin: float = CAP_MARGIN_SECONDS) -> float:
    """The earliest time (≥ now) at which one more send to a number fits every window."""
    times = sorted(sent)
    at = now
    for seconds, limit in windows:
        span = seconds + margin
        recent = [t for t in times if t > now - span]
        if len(recent) >= limit:  # the oldest of the `limit` latest must leave the window first
            at = max(at, recent[len(recent) - limit] + span)
    return at


@dataclass(frozen=True)
class Deferred:
    delivery_id: int
    address: str
    until: float  # when the caps allow it
    detail: str


@dataclass(frozen=True)
class Admission:
    """What one batch of claimed sends may do: go now, or wait for a number's caps."""

    at: float  # when the admitted ones were recorded against their numbers
    admitted: frozenset[int]
    deferred: tuple[Deferred, ...]
    history: dict[str, list[float]] = field(default_factory=dict)  # address → sends to record (changed only)


def admit(rows: Sequence[tuple[int, str]], history: Mapping[str, Sequence[float]],
          windows: Sequence[Window], now: float, margin: float = CAP_MARGIN_SECONDS) -> Admission:
    """Which of `rows` (delivery id, address; claim order) go now. Each one admitted is
    recorded at `now`; one over a cap waits until it fits, after those of its number
    waiting before it in this batch (so they do not all come back at the same moment)."""
    admitted: set[int] = set()
    deferred: list[Deferred] = []
    stored = {a: list(history.get(a, ())) for _, a in rows}
    planned = {a: list(times) for a, times in stored.items()}
    changed: set[str] = set()
    for delivery_id, address in rows:
        at = next_allowed(planned[address], windows, now, margin)
        planned[address].append(at)
        if at <= now:
            admitted.add(delivery_id)
            stored[address].append(now)
            changed.add(address)
        else:
            deferred.append(Deferred(delivery_id, address, at, _over(stored[address], windows, now, margin)))
    keep = max(seconds for seconds, _ in windows) + margin if windows else 0.0
    most = max((n for _, n in windows), default=0)
    return Admission(now, frozenset(admitted), tuple(deferred),
                     {a: trim(stored[a], now, keep, most) for a in changed})


def _over(sent: Sequence[float], windows: Sequence[Window], now: float, margin: float) -> str:
    names = {60.0: "minute", 3600.0: "hour", 86400.0: "day"}
    full = [f"{n} per {names.get(seconds, f'{seconds:g} s')}" for seconds, n in windows
            if sum(1 for t in sent if t > now - seconds - margin) >= n]
    return "per-number cap " + (", ".join(full) or "reached by sends queued just before") + ": deferred"


def trim(sent: Sequence[float], now: float, keep_seconds: float, most: int) -> list[float]:
    """The sends that can still matter: inside the longest window, the `most` latest."""
    recent = sorted(t for t in sent if t > now - keep_seconds)
    return recent[-most:] if most else []


def release(sent: Sequence[float], stamp: float) -> list[float]:
    """The sends without one recorded at `stamp` (a send the provider refused: it took nothing)."""
    times = list(sent)
    for i, t in enumerate(times):
        if abs(t - stamp) < 0.0005:  # stored to the millisecond
            del times[i]
            break
    return times


def encode(sent: Sequence[float]) -> str:
    return " ".join(f"{t:.3f}" for t in sent)


def decode(text: str | None) -> list[float]:
    return [float(t) for t in (text or "").split()]
