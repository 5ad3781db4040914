"""What an Update keeps of a grid's 叫应 work (pure): its requirement, its ladder, its pace.

An Update replaces a warning's text, not the work done for it. Per grid that the
Update still targets, `keep` decides from the requirement of the version in force:

- **confirmed or covered, same or lower level**: carried as it is; no ladder.
- **confirmed or covered, raised level**: a new confirmation and the new level's
  ladder from the raise (None: the planner starts the grid afresh).
- **open** (nobody has confirmed yet): the requirement goes on. Its deadline is
  the earlier of the old deadline and the Update (the raise) plus the new
  level's deadline. Rungs that fired stay fired. At the same level the ladder snapshot
  goes on unchanged. At another level the new level's ladder is laid from an
  anchor: its deadline minus the new level's confirmation minutes, i.e. the new
  ladder stands to the new deadline as it would to its own. Each of its rungs
  is due at the earlier of anchor + offset and the due time of its counterpart
  in the old ladder (the same action, counted in order); a due time already
  past fires at the next sweep. Old rungs with no counterpart keep their due
  time, and the "uncovered" ladder (silent speakers) goes on as it was.

So nothing fires later than the old version had it due, a raise can bring rungs
forward, and a lowered level keeps the pace the grid had. Anchoring on the
deadline rather than on the first publication keeps a raise from firing a whole
ladder at once for a grid that was not yet late (yellow → red after 20 min:
red from the raise, not an alarm at once), while a grid already late goes on at
the new level's pace from where it stood (orange → red at 20 min: the door list
now, the alarm 5 min later).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from warnd.domain.escalation import Fired, PlannedRung, Step
from warnd.domain.model import Level

UNCOVERED = "uncovered"  # the ladder of grids whose speakers did not play: not a level's


@dataclass(frozen=True)
class PriorRung:
    id: int
    ladder: str
    step: int
    action: str
    params: dict
    due_at: datetime
    state: str  # pending / fired / skipped
    fired: Fired | None = None


@dataclass(frozen=True)
class PriorGrid:
    """A grid's requirement in the version an Update supersedes."""

    confirmation_id: int
    warning_id: int
    level: Level
    state: str  # open / confirmed / covered
    deadline: datetime
    created_at: datetime | None = None
    confirmed_by: str | None = None
    not_woken_at: datetime | None = None
    uncovered_at: datetime | None = None
    uncovered_reason: str | None = None
    rungs: tuple[PriorRung, ...] = ()


@dataclass(frozen=True)
class Kept:
    """The grid's requirement in the new version, continuing `from_id` (its list and queued
    escalation sends move to it)."""

    from_id: int
    state: str  # open / confirmed / covered
    deadline: datetime
    rungs: tuple[PlannedRung, ...]
    since: datetime | None  # when the obligation began: an answer sent since then answers it
    confirmed_by: str | None = None
    not_woken_at: datetime | None = None
    uncovered_at: datetime | None = None
    uncovered_reason: str | None = None


def keep(prior: PriorGrid, level: Level, confirm: timedelta, ladder_name: str, ladder: tuple[Step, ...],
         now: datetime) -> Kept | None:
    """The new version's requirement for a grid the Update still targets; None: start it afresh."""
    raised = level > prior.level
    if prior.state != "open":
        if raised:
            return None
        return Kept(prior.confirmation_id, prior.state, prior.deadline, (), prior.created_at, prior.confirmed_by)
    deadline = min(prior.deadline, now + confirm)
    live = tuple(r for r in prior.rungs if r.state != "skipped")
    if level == prior.level:
        rungs = tuple(_carry(r) for r in live)
    else:
        rungs = relay(live, ladder_name, ladder, deadline - confirm)
    # A raise is a new question: only answers given after it confirm it.
    since = now if raised else prior.created_at
    return Kept(prior.confirmation_id, "open", deadline, rungs, since, None, prior.not_woken_at,
                prior.uncovered_at, prior.uncovered_reason)


def relay(old: tuple[PriorRung, ...], ladder_name: str, ladder: tuple[Step, ...],
          anchor: datetime) -> tuple[PlannedRung, ...]:
    """The new ladder laid from `anchor`, merged with the old rungs (see the module's rules)."""
    counterparts = _by_action([r for r in old if r.ladder != UNCOVERED])
    used: set[int] = set()
    out: list[PlannedRung] = []
    seen: dict[str, int] = {}
    for i, step in enumerate(ladder):
        nth = seen[step.action] = seen.get(step.action, -1) + 1
        twin = counterparts.get((step.action, nth))
        due = anchor + step.after
        if twin is None:
            out.append(PlannedRung(ladder_name, i, step.action, step.params, due))
            continue
        used.add(twin.id)
        if twin.fired is not None:
            out.append(_carry(twin))
        else:
            out.append(PlannedRung(ladder_name, i, step.action, step.params, min(due, twin.due_at),
                                   from_rung=twin.id))
    out += [_carry(r) for r in old if r.id not in used]
    return tuple(out)


def _by_action(rungs: list[PriorRung]) -> dict[tuple[str, int], PriorRung]:
    """Rungs keyed by (action, n-th of that action in time order): a ladder's counterpart of a rung."""
    out: dict[tuple[str, int], PriorRung] = {}
    counts: dict[str, int] = {}
    for r in sorted(rungs, key=lambda r: (r.fired.at if r.fired else r.due_at, r.step, r.id)):
        n = counts[r.action] = counts.get(r.action, -1) + 1
        out[(r.action, n)] = r
    return out


def _carry(r: PriorRung) -> PlannedRung:
    """The rung as it was: fired stays fired, pending keeps its due time."""
    return PlannedRung(r.ladder, r.step, r.action, r.params, r.due_at, r.fired, r.id)
