"""What the live view and a warning's report say about coverage (pure).

A grid's state as the console colours it (`live_state`), the coverage curve over
time (`curve`), and a drill's evaluation against its targets (`evaluate_drill`):
every responsible person reached within N minutes, every grid confirmed or
covered before its last rung, and time to 100 % within M minutes. Times to
50 / 90 / 100 % come from `warnd.domain.coverage.summary`, so the live view, the
report and the coverage API agree to the second.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from warnd.domain.coverage import MILESTONES, GridState, summary

LIVE_STATES = ("confirmed", "covered", "open", "not_woken", "uncovered")
MAX_CURVE_POINTS = 500  # a province's 100,000 grids draw as well with this many


def live_state(state: str, not_woken: bool, uncovered: bool) -> str:
    """One of LIVE_STATES. A grid not reached is 未叫醒 (not_woken) once its responsible person
    went on the list — the list the county acts on first — else uncovered if its speakers were
    silent, else open. A requirement closed unreached (the warning ended) counts as not reached."""
    if state in ("confirmed", "covered"):
        return state
    if not_woken:
        return "not_woken"
    return "uncovered" if uncovered else "open"


def counts(states: list[str]) -> dict[str, int]:
    """Grids per live state, and the total."""
    out = dict.fromkeys(LIVE_STATES, 0)
    for s in states:
        out[s] += 1
    return {**out, "total": len(states)}


def percent(reached: int, total: int) -> float:
    """Share reached (confirmed or covered), 0–100 with one decimal; 0 for no grids."""
    return round(100 * reached / total, 1) if total else 0.0


def time_to(grids: list[GridState], start: datetime) -> dict[str, float | None]:
    """Seconds from `start` (publication) until 50, 90 and 100 % of the grids were reached."""
    found = summary(grids, start)
    return {str(pct): found[f"p{pct}_seconds"] for pct in MILESTONES}


def curve(grids: list[GridState], start: datetime, max_points: int = MAX_CURVE_POINTS) -> list[dict]:
    """Coverage over time since `start`: [{seconds, percent}], starting at (0, 0), one point
    each time the share reached rose (grids reached at the same second are one point), never
    falling, ending at the share reached so far. More than `max_points` steps are thinned
    evenly; the last step is always kept, so the curve ends where coverage stands."""
    total = len(grids)
    times = sorted(max(0.0, (g.reached_at - start).total_seconds()) for g in grids
                   if g.state in ("confirmed", "covered") and g.reached_at is not None)
    steps: list[tuple[float, int]] = []  # (seconds, grids reached by then)
    for n, seconds in enumerate(times, 1):
        if steps and steps[-1][0] == seconds:
            steps[-1] = (seconds, n)
        else:
            steps.append((seconds, n))
    if len(steps) > max_points - 1:
        keep = max_points - 1
        steps = [steps[round(i * (len(steps) - 1) / (keep - 1))] for i in range(keep)] if keep > 1 else steps[-1:]
    points = [{"seconds": 0.0, "percent": 0.0}]
    for seconds, n in steps:
        point = {"seconds": seconds, "percent": percent(n, total)}
        if points[-1]["seconds"] == seconds:
            points[-1] = point
        else:
            points.append(point)
    return points


@dataclass(frozen=True)
class Targets:
    """A drill's targets (config console.drill_targets), handed in as data."""

    reach_minutes: float
    complete_minutes: float


@dataclass(frozen=True)
class DrillGrid:
    """What a drill is judged on for one grid."""

    grid: str
    person_reached_at: datetime | None  # the first send to its responsible person (None: never)
    reached_at: datetime | None  # confirmed or covered (None: not reached)
    last_rung_due_at: datetime | None  # its ladder's last rung (None: no ladder)


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 1)


def evaluate_drill(grids: list[DrillGrid], start: datetime, complete_seconds: float | None,
                   targets: Targets) -> dict:
    """演练评估: each target with its actual figure and whether it was met; met when all were.

    - reach: every responsible person sent the warning within `reach_minutes` of publication
      (actual: the slowest, in minutes; None when someone was never reached);
    - before_last_rung: every grid confirmed or covered before its ladder's last rung was due
      (actual: how many of the grids were);
    - complete: 100 % of the grids reached within `complete_minutes` (actual: time to 100 %).
    A drill with no grids meets nothing: there was nothing to evaluate."""
    total = len(grids)
    reach_seconds = [None if g.person_reached_at is None else (g.person_reached_at - start).total_seconds()
                     for g in grids]
    never = sum(1 for s in reach_seconds if s is None)
    slowest = max((s for s in reach_seconds if s is not None), default=None)
    reached_in_time = sum(1 for s in reach_seconds if s is not None and s <= targets.reach_minutes * 60)
    in_time = sum(1 for g in grids if g.reached_at is not None
                  and (g.last_rung_due_at is None or g.reached_at < g.last_rung_due_at))
    rows = [
        {"key": "reach", "name_zh": f"全部责任人 {targets.reach_minutes:g} 分钟内收到预警",
         "name_en": f"Every responsible person reached within {targets.reach_minutes:g} minutes",
         "target": targets.reach_minutes, "unit": "minutes",
         "actual": None if never else _minutes(slowest),
         "detail": {"reached_in_time": reached_in_time, "never_reached": never, "grids": total},
         "met": bool(total) and reached_in_time == total},
        {"key": "before_last_rung", "name_zh": "每个网格在最后一级升级前确认或入户覆盖",
         "name_en": "Every grid confirmed or covered before its last rung",
         "target": total, "unit": "grids", "actual": in_time,
         "detail": {"grids": total, "late_or_never": total - in_time},
         "met": bool(total) and in_time == total},
        {"key": "complete", "name_zh": f"{targets.complete_minutes:g} 分钟内覆盖率达到 100%",
         "name_en": f"100 % of grids reached within {targets.complete_minutes:g} minutes",
         "target": targets.complete_minutes, "unit": "minutes", "actual": _minutes(complete_seconds),
         "detail": {"seconds": complete_seconds},
         "met": bool(total) and complete_seconds is not None and complete_seconds <= targets.complete_minutes * 60},
    ]
    return {"targets": rows, "met": all(r["met"] for r in rows)}
