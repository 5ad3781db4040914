"""Escalation (叫应 → 敲门入户), pure: snapshot a ladder, and decide what a due rung does.

A ladder is copied into rows when a requirement is planned (`snapshot`), so a
later configuration edit never changes a warning in flight. When a rung is due,
`fire` turns it and the grid's people and households into effects; the store
applies them in the same transaction that marks the rung fired, so a rung fires
once however many nodes sweep.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from warnd.config import DOOR_LIST_CHANNELS, HOUSEHOLD_CALL_CHANNELS, NOTIFY_CHANNELS, RungConfig
from warnd.domain.directory import Household, Person, region_parent, with_ancestors
from warnd.domain.sending import Recipient, RecipientKind


@dataclass(frozen=True)
class Fired:
    """A rung that already fired under an earlier version: it is written fired, and fires no more."""

    at: datetime
    by: str | None
    outcome: dict | None


@dataclass(frozen=True)
class PlannedRung:
    ladder: str
    step: int
    action: str
    params: dict
    due_at: datetime
    fired: Fired | None = None
    from_rung: int | None = None  # the earlier version's rung this one continues (an Update)


@dataclass(frozen=True)
class Step:
    """One rung of a configured ladder, as the domain needs it: when and what."""

    after: timedelta
    action: str
    params: dict


def steps(rungs: list[RungConfig]) -> tuple[Step, ...]:
    return tuple(Step(timedelta(minutes=r.after_minutes), r.action,
                      r.model_dump(exclude={"after_minutes", "action"})) for r in rungs)


def snapshot(ladder_name: str, rungs: list[RungConfig], start: datetime) -> tuple[PlannedRung, ...]:
    return start_ladder(ladder_name, steps(rungs), start)


def start_ladder(ladder_name: str, ladder: tuple[Step, ...], start: datetime) -> tuple[PlannedRung, ...]:
    return tuple(PlannedRung(ladder_name, i, s.action, s.params, start + s.after) for i, s in enumerate(ladder))


@dataclass(frozen=True)
class Grid:
    """What a rung needs to know about its grid."""

    code: str
    responsible: str | None
    backup: str | None
    people: tuple[Person, ...]  # of the grid and every region enclosing it
    households: tuple[Household, ...]
    name: str = ""  # e.g. 河口村3组

    def about(self) -> dict:
        """Whom a "go to the door" message is about: the grid and its unconfirmed person."""
        person = next((p for p in self.people if p.id == self.responsible), None)
        return {"grid": self.code, "grid_name": self.name or self.code,
                "person": person.name if person else "", "phone": (person.phone or "") if person else ""}


@dataclass(frozen=True)
class Send:
    channel: str
    recipient: Recipient
    purpose: str  # warning / door_ask / door_to_door / household
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CallList:
    assignee: str | None
    households: tuple[Household, ...]  # vulnerable first, then by address


@dataclass(frozen=True)
class Effects:
    sends: tuple[Send, ...] = ()
    not_woken: bool = False
    call_list: CallList | None = None
    alarm: dict | None = None
    notes: tuple[str, ...] = ()


def targets(grid: Grid, names: list[str]) -> list[Person]:
    """People for role names: responsible, backup, superior (township duty), or any directory role."""
    by_id = {p.id: p for p in grid.people}
    out: list[Person] = []
    for name in names:
        if name in ("responsible", "backup"):
            pid = grid.responsible if name == "responsible" else grid.backup
            found = [by_id[pid]] if pid in by_id else []
        else:
            role = "township_duty" if name == "superior" else name
            found = _nearest_with_role(grid, role)
        out += [p for p in found if p not in out]
    return out


def _nearest_with_role(grid: Grid, role: str) -> list[Person]:
    """People holding a role, from the grid outwards: the closest enclosing region wins."""
    code: str | None = grid.code
    while code:
        found = [p for p in grid.people if p.region == code and role in p.roles]
        if found:
            return found
        code = region_parent(code)
    return []


def fire(action: str, params: dict, grid: Grid, ladder: str) -> Effects:
    if action == "notify":
        people = targets(grid, params.get("to", []))
        ask_door = bool(params.get("ask_door"))
        purpose, about = ("door_ask", grid.about()) if ask_door else ("warning", {})
        sends = tuple(Send(ch, _person(p), purpose, about) for p in people if p.phone
                      for ch in params.get("channels", NOTIFY_CHANNELS))
        notes = () if people else (f"nobody found for {params.get('to')}",)
        return Effects(sends, not_woken=bool(params.get("not_woken")), notes=notes)
    if action == "door_to_door":
        assignees = targets(grid, params.get("assign", []))
        assignee = assignees[0] if assignees else None
        ordered = tuple(sorted(grid.households, key=lambda h: (not h.vulnerable, h.address, h.id)))
        sends = [Send(ch, _person(assignee), "door_to_door") for ch in params.get("list_channels", DOOR_LIST_CHANNELS)
                 ] if assignee and assignee.phone else []
        if params.get("call_households"):
            sends += [Send(ch, Recipient(RecipientKind.HOUSEHOLD.value, h.id, h.phone, "zh-CN"), "household")
                      for h in ordered if h.phone for ch in params.get("household_channels", HOUSEHOLD_CALL_CHANNELS)]
        notes = () if assignee else ("no one to assign the door-to-door list to",)
        return Effects(tuple(sends), call_list=CallList(assignee.id if assignee else None, ordered), notes=notes)
    if action == "alarm":
        return Effects(alarm={"code": f"escalation.{ladder}.unconfirmed", "grid": grid.code,
                              "responsible": grid.responsible})
    raise ValueError(f"unknown rung action {action}")


def _person(p: Person) -> Recipient:
    return Recipient(RecipientKind.PERSON.value, p.id, p.phone or "", p.language)


def enclosing(code: str) -> set[str]:
    return with_ancestors([code])
