"""Door-to-door call lists: read one for its mobile page or the API, mark a household.

Marking the last unmarked household completes the list and covers the grid in
the same transaction: the confirmation becomes `covered` and the rest of its
ladder is skipped, so no later rung (an operator alarm) fires for a grid whose
every door was knocked on. The list row is locked first (PostgreSQL), so two
visitors marking the last two households at once cannot both miss completion.
Every mark is audited (`door.mark`) in its transaction, with the list's assignee
as the actor: the list's link is theirs ("link" when the list has none). A mark
the household already has (a double tap, a resent form) changes nothing and is
not audited again: it is answered as done.
"""
from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from warnd.store import audit
from warnd.store.database import Database
from warnd.store.escalation import stop_grids
from warnd.store.schema import call_list_items, call_lists, confirmations, people, regions, warnings

MARKS = ("notified", "not_home", "refused")


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

    def active(self, now: datetime) -> bool:
        """Marks are taken only while the warning is in force."""
        return self.warning_state == "active" and (self.warning_expires is None or self.warning_expires > now)


@dataclass(frozen=True)
class WarningHead:
    """What a link page needs to know of a warning besides its CAP text."""

    id: int
    level: int
    status: str
    state: str
    expires: datetime | None

    def active(self, now: datetime) -> bool:
        return self.state == "active" and (self.expires is None or self.expires > now)


class Marked(enum.Enum):
    MARKED = "marked"  # the household's mark was set (or changed)
    UNCHANGED = "unchanged"  # the household already had this very mark: done, nothing changed
    COMPLETED = "completed"  # …and it was the last one: the list is complete, the grid covered
    NOT_FOUND = "not_found"  # no such list, or the item is not on it
    INACTIVE = "inactive"  # the warning was cancelled, superseded or has expired


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

    async def mark(self, list_id: int, item_id: int, mark: str, now: datetime) -> Marked:
        """Set one household's mark (the latest wins); the last one completes the list and covers the grid.

        The same mark again is UNCHANGED, also once the warning has ended: it was recorded
        while the warning was in force, and the visitor is told so rather than refused."""
        if mark not in MARKS:
            raise ValueError(f"unknown mark {mark!r}")
        cl, i, w = call_lists.c, call_list_items.c, warnings.c
        async with self.db.write() as conn:
            head = (await conn.execute(
                sa.select(cl.id, cl.confirmation_id, cl.completed_at, cl.assignee_id, w.state, w.expires)
                .join(warnings, w.id == cl.warning_id).where(cl.id == list_id)
                .with_for_update(of=call_lists))).first()
            if head is None:
                return Marked.NOT_FOUND
            item = (await conn.execute(sa.select(i.mark).where(i.id == item_id, i.list_id == list_id))).first()
            if item is None:
                return Marked.NOT_FOUND
            if item.mark == mark:
                return Marked.UNCHANGED
            if head.state != "active" or (head.expires is not None and head.expires <= now):
                return Marked.INACTIVE
            await conn.execute(sa.update(call_list_items).where(i.id == item_id)
                               .values(mark=mark, marked_at=now, version=i.version + 1))
            completed = head.completed_at is None and await _complete(conn, list_id, head.confirmation_id, now)
            await audit.append(conn, self.db, now, head.assignee_id or "link", "door.mark", f"call_list:{list_id}",
                               {"list_id": list_id, "item_id": item_id, "mark": mark, "completed": completed})
            return Marked.COMPLETED if completed else Marked.MARKED


async def _complete(conn: AsyncConnection, list_id: int, confirmation_id: int, now: datetime) -> bool:
    """If no household is left unmarked: complete the list, cover its grid, skip the rest of its ladder."""
    cl, i, c = call_lists.c, call_list_items.c, confirmations.c
    unmarked = (await conn.execute(sa.select(sa.func.count()).select_from(call_list_items)
                                   .where(i.list_id == list_id, i.mark.is_(None)))).scalar_one()
    if unmarked:
        return False
    await conn.execute(sa.update(call_lists).where(cl.id == list_id).values(completed_at=now))
    await conn.execute(sa.update(confirmations)
                       .where(c.id == confirmation_id, c.state == "open")
                       .values(state="covered", covered_at=now, version=c.version + 1))
    await stop_grids(conn, [confirmation_id], now, "covered")
    return True


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
                                       bool(row.vulnerable), row.mark, row.marked_at))
    return [CallList(h.id, h.warning_id, h.confirmation_id, h.grid, h.grid_name, h.assignee_id, h.assignee_name,
                     h.created_at, h.completed_at, h.warning_state, h.warning_expires, tuple(items[h.id]))
            for h in heads]
