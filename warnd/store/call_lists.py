"""Door-to-door call lists: read one for its mobile page or the API, mark a household.

A household's mark is one of the outcomes of warnd.domain.households. Only 已通知
(told) and 已转移 (moved) reach it: when the last household is told or moved the
list is complete and the grid covered in the same transaction, the confirmation
becomes `covered` and the rest of its ladder is skipped, so no later rung (an
operator alarm) fires for a grid whose every household was really reached. A
household not at home is followed up (its phone called and texted) and a refusal
or a call for help alarms the township duty officer, in that same transaction
(see store/households.py); such a grid stays open, and its ladder goes on. The
list row is locked first (PostgreSQL), so two visitors marking the last two
households at once cannot both miss completion.
Every mark is audited (`door.mark`) in its transaction, with the list's assignee
as the actor: the list's link is theirs ("link" when the list has none). A mark
the household already has (a double tap, a resent form) changes nothing and is
not audited again: it is answered as done.
"""
from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from warnd.domain.delivery import State
from warnd.domain.directory import Household
from warnd.domain.escalation import Effects, Grid
from warnd.domain.households import (ALARMING, COVERING, OUTCOMES, Mark, Outcome, Policy, Tally, after_mark,
                                     parse_mark, tally)
from warnd.domain.states import CALL_LIST_ITEM, CONFIRMATION, ConfirmationState, ItemMark, WarningState
from warnd.store import audit
from warnd.store import households as effects_of
from warnd.store.database import Database
from warnd.store.escalation import stop_grids
from warnd.store.schema import (call_list_items, call_lists, confirmations, deliveries, people, regions,
                                warnings)
from warnd.store.transitions import transition

MARKS = OUTCOMES  # notified (told), moved, not_home, refused, needs_help
# The household outcomes are the call-list item machine's states (warnd.domain.states).
assert {o.value for o in Outcome} == {m.value for m in ItemMark}, "households.Outcome and states.ItemMark differ"


@dataclass(frozen=True)
class Item:
    id: int
    position: int
    household_id: str
    address: str
    phone: str | None
    vulnerable: bool
    mark: str | None
    marked_at: datetime | None
    people: int | None = None  # moved: the head count
    note: str | None = None  # needs help / refused: what the visitor wrote

    @property
    def outcome(self) -> Mark | None:
        return Mark(Outcome(self.mark), self.people, self.note or "") if self.mark in MARKS else None


@dataclass(frozen=True)
class CallList:
    id: int
    warning_id: int
    confirmation_id: int
    grid: str
    grid_name: str | None
    assignee_id: str | None
    assignee_name: str | None
    created_at: datetime
    completed_at: datetime | None
    warning_state: str  # active / cancelled / expired / superseded / ended
    warning_expires: datetime | None
    items: tuple[Item, ...]

    @property
    def total(self) -> int:
        return len(self.items)

    @property
    def marked(self) -> int:
        return sum(1 for i in self.items if i.mark)

    @property
    def by_mark(self) -> dict[str, int]:
        counts = Counter(i.mark for i in self.items if i.mark)
        return {m: counts.get(m, 0) for m in MARKS}

    @property
    def tally(self) -> Tally:
        """Households per outcome, how many were reached (told or moved), people moved."""
        return tally(i.outcome for i in self.items)

    def active(self, now: datetime) -> bool:
        """Marks are taken only while the warning is in force."""
        return self.warning_state == WarningState.ACTIVE and (self.warning_expires is None
                                                              or self.warning_expires > now)


@dataclass(frozen=True)
class WarningHead:
    """What a link page needs to know of a warning besides its CAP text."""

    id: int
    level: int
    status: str
    state: str
    expires: datetime | None

    def active(self, now: datetime) -> bool:
        return self.state == WarningState.ACTIVE and (self.expires is None or self.expires > now)


class Marked(enum.Enum):
    MARKED = "marked"  # the household's mark was set (or changed)
    UNCHANGED = "unchanged"  # the household already had this very mark: done, nothing changed
    COMPLETED = "completed"  # …and it was the last one: the list is complete, the grid covered
    NOT_FOUND = "not_found"  # no such list, or the item is not on it
    INACTIVE = "inactive"  # the warning was cancelled, superseded or has expired


@dataclass(frozen=True)
class MarkResult:
    outcome: Marked
    effects: Effects = Effects()  # the follow-up and alarm the mark set off (written with it)
    alarm_id: int | None = None


class CallListStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, list_id: int) -> CallList | None:
        async with self.db.read() as conn:
            found = await _lists(conn, call_lists.c.id == list_id)
        return found[0] if found else None

    async def for_warning(self, warning_id: int) -> list[CallList]:
        async with self.db.read() as conn:
            return await _lists(conn, call_lists.c.warning_id == warning_id)

    async def warning(self, warning_id: int) -> WarningHead | None:
        w = warnings.c
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(w.id, w.level, w.status, w.state, w.expires)
                                      .where(w.id == warning_id))).first()
        return WarningHead(row.id, row.level, row.status, row.state, row.expires) if row else None

    async def mark(self, list_id: int, item_id: int, mark: str | Mark, now: datetime,
                   policy: Policy = Policy()) -> Marked:
        """Set one household's outcome (the latest wins); see `mark_household`."""
        return (await self.mark_household(list_id, item_id, mark, now, policy)).outcome

    async def mark_household(self, list_id: int, item_id: int, mark: str | Mark, now: datetime,
                             policy: Policy = Policy()) -> MarkResult:
        """Set one household's outcome (the latest wins); the last household told or moved
        completes the list and covers the grid; a changed outcome's follow-up or alarm is
        written in the same transaction.

        The same mark again (same head count, same note) is UNCHANGED, also once the warning
        has ended: it was recorded while the warning was in force, and the visitor is told
        so rather than refused."""
        new = parse_mark(mark) if isinstance(mark, str) else mark
        cl, i, w = call_lists.c, call_list_items.c, warnings.c
        async with self.db.write() as conn:
            head = (await conn.execute(
                sa.select(cl.id, cl.grid, cl.warning_id, cl.confirmation_id, cl.completed_at, cl.assignee_id,
                          w.state, w.expires, w.level)
                .join(warnings, w.id == cl.warning_id).where(cl.id == list_id)
                .with_for_update(of=call_lists))).first()
            if head is None:
                return MarkResult(Marked.NOT_FOUND)
            item = (await conn.execute(sa.select(i.mark, i.people, i.note, i.household_id, i.address, i.phone,
                                                 i.vulnerable)
                                       .where(i.id == item_id, i.list_id == list_id))).first()
            if item is None:
                return MarkResult(Marked.NOT_FOUND)
            previous = Mark(Outcome(item.mark), item.people, item.note or "") if item.mark in MARKS else None
            if previous == new:
                return MarkResult(Marked.UNCHANGED)
            if head.state != WarningState.ACTIVE or (head.expires is not None and head.expires <= now):
                return MarkResult(Marked.INACTIVE)
            await conn.execute(transition(CALL_LIST_ITEM, ItemMark(new.outcome.value)).where(i.id == item_id)
                               .values(people=new.people, note=new.note or None, marked_at=now))
            household = Household(item.household_id, head.grid, item.address, item.phone, bool(item.vulnerable))
            # whom an alarm tells is read only for an alarm: most marks are 已通知
            grid = (await effects_of.grid_of(conn, head.grid) if new.outcome in ALARMING
                    else Grid(head.grid, None, None, (), ()))
            effects = after_mark(previous, new, household, grid, policy)
            alarm_id = await effects_of.apply(conn, effects, warning_id=head.warning_id, level=head.level,
                                              expires=head.expires, grid=head.grid, list_id=list_id, now=now)
            completed = head.completed_at is None and await _complete(conn, list_id, head.confirmation_id, now)
            await audit.append(conn, self.db, now, head.assignee_id or "link", "door.mark", f"call_list:{list_id}",
                               {"list_id": list_id, "item_id": item_id, "household_id": item.household_id,
                                "mark": new.outcome.value, "people": new.people, "note": new.note or None,
                                "previous": previous.outcome.value if previous else None,
                                "follow_up": sum(1 for x in effects.sends if x.purpose == "household"),
                                "alarm_id": alarm_id, "completed": completed})
            return MarkResult(Marked.COMPLETED if completed else Marked.MARKED, effects, alarm_id)

    async def told_by_follow_up(self, channels: Sequence[str], now: datetime) -> int:
        """Mark 已通知 (told) each not-at-home household whose follow-up on `channels` was
        answered after the mark (the call was picked up: somebody there heard the warning);
        audited as `door.mark` by the channel, and completing the list as a visitor's mark
        would. Only while the warning is in force. Returns how many households were told."""
        if not channels:
            return 0
        cl, i, d, w = call_lists.c, call_list_items.c, deliveries.c, warnings.c
        # read by ix_call_list_items_mark, then ix_deliveries_grid (warning, grid, state)
        answered = (sa.select(d.channel).where(
            d.warning_id == cl.warning_id, d.grid == cl.grid, d.state == State.DELIVERED.value,
            d.purpose == "household", d.recipient_kind == "household", d.recipient_id == i.household_id,
            d.channel.in_(list(channels)), d.updated_at >= i.marked_at).limit(1).scalar_subquery())
        async with self.db.write() as conn:
            found = (await conn.execute(
                sa.select(i.id, i.list_id, i.household_id, cl.confirmation_id, cl.completed_at,
                          answered.label("channel"))
                .join(call_lists, cl.id == i.list_id).join(warnings, w.id == cl.warning_id)
                .where(i.mark == Outcome.NOT_HOME.value, w.state == WarningState.ACTIVE.value,
                       sa.or_(w.expires.is_(None), w.expires > now))
                .order_by(i.list_id, i.id).with_for_update(of=call_list_items))).all()
            rows = [r for r in found if r.channel is not None]
            for row in rows:
                await conn.execute(transition(CALL_LIST_ITEM, ItemMark.TOLD, within=(ItemMark.NOT_HOME,))
                                   .where(i.id == row.id).values(marked_at=now))
            for list_id in sorted({r.list_id for r in rows}):
                head = next(r for r in rows if r.list_id == list_id)
                completed = head.completed_at is None and await _complete(conn, list_id, head.confirmation_id, now)
                for row in (r for r in rows if r.list_id == list_id):
                    await audit.append(conn, self.db, now, row.channel, "door.mark", f"call_list:{list_id}",
                                       {"list_id": list_id, "item_id": row.id, "household_id": row.household_id,
                                        "mark": Outcome.TOLD.value, "previous": Outcome.NOT_HOME.value,
                                        "by": "answered follow-up", "completed": completed})
            return len(rows)


async def _complete(conn: AsyncConnection, list_id: int, confirmation_id: int, now: datetime) -> bool:
    """If every household is told or moved: complete the list, cover its grid, skip the rest of its ladder.

    Not at home, refused, needs help and unmarked households keep it open: nobody there was reached."""
    cl, i, c = call_lists.c, call_list_items.c, confirmations.c
    reaching = sorted(o.value for o in COVERING)
    open_ = (await conn.execute(sa.select(sa.func.count()).select_from(call_list_items)
                                .where(i.list_id == list_id, sa.or_(i.mark.is_(None), i.mark.not_in(reaching)))
                                )).scalar_one()
    if open_:
        return False
    await conn.execute(sa.update(call_lists).where(cl.id == list_id).values(completed_at=now))
    await conn.execute(transition(CONFIRMATION, ConfirmationState.COVERED).where(c.id == confirmation_id)
                       .values(covered_at=now))
    await conn.run_sync(stop_grids, [confirmation_id], now, "covered")
    return True


async def move_lists(conn: AsyncConnection, moves: list[tuple[int, int, int]]) -> int:
    """Lists follow their grid's requirement to the version an Update continues it in, given as
    (old confirmation id, new confirmation id, new warning id): same list id, so its signed link
    keeps working; its marks stay. Returns how many lists moved."""
    if not moves:
        return 0
    cl = call_lists.c
    olds = [old for old, _, _ in moves]
    found = {row.confirmation_id for chunk in (olds[i:i + 500] for i in range(0, len(olds), 500))
             for row in await conn.execute(sa.select(cl.confirmation_id).where(cl.confirmation_id.in_(chunk)))}
    rows = [dict(b_old=old, b_new=new, b_warning=wid) for old, new, wid in moves if old in found]
    if rows:
        await conn.execute(sa.update(call_lists).where(cl.confirmation_id == sa.bindparam("b_old"))
                           .values(confirmation_id=sa.bindparam("b_new"), warning_id=sa.bindparam("b_warning")),
                           rows)
    return len(rows)


async def _lists(conn: AsyncConnection, where: sa.ColumnElement[bool]) -> list[CallList]:
    cl, i, w, p, r = call_lists.c, call_list_items.c, warnings.c, people.c, regions.c
    heads = (await conn.execute(
        sa.select(call_lists, w.state.label("warning_state"), w.expires.label("warning_expires"),
                  r.name.label("grid_name"), p.name.label("assignee_name"))
        .join(warnings, w.id == cl.warning_id)
        .outerjoin(regions, r.code == cl.grid).outerjoin(people, p.id == cl.assignee_id)
        .where(where).order_by(cl.id))).all()
    if not heads:
        return []
    items: dict[int, list[Item]] = {h.id: [] for h in heads}
    for row in await conn.execute(sa.select(call_list_items).where(i.list_id.in_(list(items)))
                                  .order_by(i.list_id, i.position, i.id)):
        items[row.list_id].append(Item(row.id, row.position, row.household_id, row.address, row.phone,
                                       bool(row.vulnerable), row.mark, row.marked_at, row.people, row.note))
    return [CallList(h.id, h.warning_id, h.confirmation_id, h.grid, h.grid_name, h.assignee_id, h.assignee_name,
                     h.created_at, h.completed_at, h.warning_state, h.warning_expires, tuple(items[h.id]))
            for h in heads]
