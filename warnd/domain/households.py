"""Household outcomes of a door-to-door visit (pure): what counts as told, and what a mark sets off.

已通知 (told) and 已转移 (moved, with a head count) are the outcomes that reach a
household: a grid is covered when every household has one of them. The others
leave the household open, because nobody there has really been warned or moved:

- 不在家 (not at home): a follow-up. The household stays on the list to be
  revisited and, when it has a phone, is called and texted at once.
- 拒绝转移 (refused) and 需要帮助 (needs help): a visitor can neither force anyone
  out nor carry anyone alone, so the township duty officer is told by SMS and an
  operator alarm is raised.

A mark only sets something off when it changes the household's outcome: the
same mark again (a double tap, a resent form) calls and alarms nobody twice.
"""
from __future__ import annotations

import enum
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from warnd.config import DoorConfig
from warnd.domain.directory import Household
from warnd.domain.escalation import Effects, Grid, Send, targets
from warnd.domain.sending import Recipient, RecipientKind

MAX_PEOPLE = 200  # one household's head count; more is a typo (a grid's total goes by SMS report)
MAX_NOTE = 200  # what help a household needs, as the visitor typed it


class Outcome(str, enum.Enum):
    # "notified" is the value stored since the first lists: marks already recorded,
    # scenarios and the simulator's visitors keep reading the same.
    TOLD = "notified"
    MOVED = "moved"
    NOT_HOME = "not_home"
    REFUSED = "refused"
    NEEDS_HELP = "needs_help"


OUTCOMES = tuple(o.value for o in Outcome)  # the page's and the API's order
COVERING = frozenset({Outcome.TOLD, Outcome.MOVED})
ALARMING = frozenset({Outcome.REFUSED, Outcome.NEEDS_HELP})


class MarkError(ValueError):
    """A mark the page must refuse; `key` names the text that says why."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass(frozen=True)
class Mark:
    outcome: Outcome
    people: int | None = None  # moved: how many people left the house
    note: str = ""  # needs help (optional): what help

    @property
    def covers(self) -> bool:
        return self.outcome in COVERING


def parse_mark(outcome: str, people: str | None = None, note: str | None = None) -> Mark:
    """A mark as a form sends it. Moved needs a head count (1…MAX_PEOPLE, digits); the other
    outcomes ignore one. A note is kept for needs help and refused (why), trimmed."""
    try:
        kind = Outcome(outcome)
    except ValueError:
        raise MarkError("bad_mark") from None
    count = None
    if kind is Outcome.MOVED:
        text = unicodedata.normalize("NFKC", people or "").strip()  # a Chinese keyboard may type １２
        if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_PEOPLE:
            raise MarkError("bad_people")
        count = int(text)
    kept = " ".join((note or "").split())[:MAX_NOTE] if kind in ALARMING else ""
    return Mark(kind, count, kept)


def covered(marks: Iterable[Mark | None]) -> bool:
    """Every household told or moved (and there is at least one)."""
    seen = False
    for m in marks:
        if m is None or not m.covers:
            return False
        seen = True
    return seen


@dataclass(frozen=True)
class Tally:
    total: int
    by_outcome: dict[str, int]  # every outcome, 0 when none
    unmarked: int
    moved_people: int

    @property
    def marked(self) -> int:
        return self.total - self.unmarked

    @property
    def reached(self) -> int:
        """Households really told or moved: what covering counts."""
        return sum(self.by_outcome[o.value] for o in COVERING)


def tally(marks: Iterable[Mark | None]) -> Tally:
    counts = dict.fromkeys(OUTCOMES, 0)
    total = unmarked = people = 0
    for m in marks:
        total += 1
        if m is None:
            unmarked += 1
            continue
        counts[m.outcome.value] += 1
        people += m.people or 0
    return Tally(total, counts, unmarked, people)


@dataclass(frozen=True)
class Policy:
    """What a mark sets off, resolved from configuration by the caller."""

    follow_up: tuple[str, ...] = tuple(DoorConfig().not_home_channels)  # to a not-at-home household's phone
    alarm_to: tuple[str, ...] = ("superior",)  # role names, as ladders name them (superior = township duty)
    alarm_channels: tuple[str, ...] = tuple(DoorConfig().alarm_channels)


def after_mark(previous: Mark | None, new: Mark, household: Household, grid: Grid, policy: Policy) -> Effects:
    """The follow-up call and the duty officer's alarm a changed outcome sets off (nothing if unchanged)."""
    if previous is not None and previous.outcome is new.outcome:
        return Effects()
    if new.outcome is Outcome.NOT_HOME:
        if not household.phone:
            return Effects(notes=("not at home, no phone: revisit",))
        to = Recipient(RecipientKind.HOUSEHOLD.value, household.id, household.phone, "zh-CN")
        return Effects(tuple(Send(ch, to, "household") for ch in policy.follow_up))
    if new.outcome in ALARMING:
        about = {"grid": grid.code, "grid_name": grid.name or grid.code, "outcome": new.outcome.value,
                 "household_id": household.id, "address": household.address, "households": "1",
                 "note": new.note}
        return _alarm(grid, about, policy)
    return Effects()


def after_report(refused: int, needs_help: int, grid: Grid, body: str, policy: Policy) -> Effects:
    """A walker's SMS report of households refusing or needing help alarms like a mark does (one alarm
    for the report: its households are counted, not named)."""
    if not refused and not needs_help:
        return Effects()
    outcome = Outcome.NEEDS_HELP if needs_help else Outcome.REFUSED  # needing help is the more urgent
    about = {"grid": grid.code, "grid_name": grid.name or grid.code, "outcome": outcome.value,
             "refused": str(refused), "needs_help": str(needs_help),
             "households": str(refused + needs_help), "note": " ".join(body.split())[:MAX_NOTE]}
    return _alarm(grid, about, policy)


def _alarm(grid: Grid, about: dict[str, str], policy: Policy) -> Effects:
    people = [p for p in targets(grid, list(policy.alarm_to)) if p.phone]
    sends = tuple(Send(ch, Recipient(RecipientKind.PERSON.value, p.id, p.phone or "", p.language), "door_alarm", about)
                  for p in people for ch in policy.alarm_channels)
    notes = () if people else (f"nobody found for {list(policy.alarm_to)}",)
    alarm = {"code": f"door.{about['outcome']}", **about, "told": [p.id for p in people]}
    return Effects(sends, alarm=alarm, notes=notes)
