"""Coverage of a warning (pure): which grids are reached, and how fast.

A grid counts as covered when its responsible person (or backup) confirmed,
an operator recorded a confirmation, or every household was visited door to
door. Time to 50 / 90 / 100 % is measured from when the warning was accepted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

MILESTONES = (50, 90, 100)


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
