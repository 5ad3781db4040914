"""Coverage of a warning (pure): which grids are reached, how fast, and the roll-up by region.

A grid counts as reached when its responsible person (or backup) confirmed, an
operator recorded a confirmation, or every household was told or moved door to
door (covered). Time to 50 / 90 / 100 % is measured from when the warning was
accepted. `rollup` adds grids up per village, township and county, walking the
directory's parent links (the code's shape where the directory has none).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from warnd.domain.directory import region_kind, region_parent
from warnd.domain.households import OUTCOMES, Tally

MILESTONES = (50, 90, 100)
ROLLUP_KINDS = ("county", "township", "village")
STATES = ("confirmed", "covered", "open", "closed")


@dataclass(frozen=True)
class GridState:
    grid: str
    state: str  # open / confirmed / covered / closed
    reached_at: datetime | None  # confirmed_at or covered_at


def summary(grids: list[GridState], accepted_at: datetime) -> dict:
    total = len(grids)
    counts = {s: sum(1 for g in grids if g.state == s) for s in ("confirmed", "covered", "open", "closed")}
    times = sorted(g.reached_at for g in grids if g.reached_at is not None and g.state in ("confirmed", "covered"))
    reached = {}
    for pct in MILESTONES:
        need = math.ceil(total * pct / 100)
        reached[f"p{pct}_seconds"] = ((times[need - 1] - accepted_at).total_seconds()
                                      if total and need <= len(times) else None)
    return {"grids": total, **counts, "reached": counts["confirmed"] + counts["covered"],
            "reached_share": (counts["confirmed"] + counts["covered"]) / total if total else None, **reached}


@dataclass(frozen=True)
class GridFacts:
    """What a roll-up counts of one grid's requirement."""

    grid: str
    state: str  # open / confirmed / covered / closed
    not_woken: bool = False  # its responsible person went on the 未叫醒 list
    uncovered: bool = False  # speakers offline or silent
    households: Tally | None = None  # the door-to-door list, if one was made
    moved_people: int = 0  # by marks or SMS reports, whichever says more (see moved_people)


def moved_people(marked: int, reported: int) -> int:
    """People moved in a grid. The walker reports the same people on the page and by SMS, so
    the two are not added (that would count them twice): the larger is what is known."""
    return max(marked, reported)


@dataclass(frozen=True)
class Place:
    name: str
    kind: str
    parent: str | None


@dataclass
class _Sum:
    grids: int = 0
    states: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    not_woken: int = 0
    not_woken_ever: int = 0
    uncovered: int = 0
    households: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("total", *OUTCOMES, "unmarked"), 0))
    moved_people: int = 0

    def add(self, g: GridFacts) -> None:
        self.grids += 1
        self.states[g.state] = self.states.get(g.state, 0) + 1
        self.not_woken_ever += g.not_woken
        self.not_woken += g.not_woken and g.state == "open"
        self.uncovered += g.uncovered and g.state == "open"
        if g.households is not None:
            self.households["total"] += g.households.total
            self.households["unmarked"] += g.households.unmarked
            for outcome, n in g.households.by_outcome.items():
                self.households[outcome] += n
        self.moved_people += g.moved_people

    def as_dict(self) -> dict:
        reached = self.states["confirmed"] + self.states["covered"]
        return {"grids": self.grids, **self.states, "reached": reached,
                "reached_share": reached / self.grids if self.grids else None,
                "not_woken": self.not_woken, "not_woken_ever": self.not_woken_ever, "uncovered": self.uncovered,
                "moved_people": self.moved_people, "households": dict(self.households)}


def kind_of(code: str, places: Mapping[str, Place]) -> str | None:
    return places[code].kind if code in places else region_kind(code)


def enclosing(code: str, places: Mapping[str, Place]) -> list[str]:
    """The code and the regions enclosing it, nearest first: the directory's parents, else the code's shape."""
    out: list[str] = []
    current: str | None = code
    while current and current not in out:  # a directory loop ends the walk, it does not hang it
        out.append(current)
        current = places[current].parent if current in places and places[current].parent else region_parent(current)
    return out


def rollup(grids: list[GridFacts], places: Mapping[str, Place], kinds: tuple[str, ...] = ROLLUP_KINDS
           ) -> tuple[list[dict], dict]:
    """Per village, township and county (each region once, in code order: a county before its
    townships before their villages): the grids' states, 未叫醒, households and people moved;
    and the same for all grids."""
    sums: dict[str, _Sum] = {}
    everything = _Sum()
    for g in grids:
        everything.add(g)
        for code in enclosing(g.grid, places):
            if kind_of(code, places) in kinds:
                sums.setdefault(code, _Sum()).add(g)
    rows = []
    for code in sorted(sums):
        place = places.get(code)
        parents = enclosing(code, places)[1:]
        rows.append({"code": code, "name": place.name if place else None, "kind": kind_of(code, places),
                     "parent": parents[0] if parents else None, **sums[code].as_dict()})
    return rows, everything.as_dict()
