"""Confirmation requirements: who answers for what, and recording their answers.

A person answers for a grid's open requirement as its responsible person, as the
one a rung of its ladder asked (a B角, the township duty officer, the walker of its
door-to-door list), or as its backup not (yet) asked; `OpenItem.role` says which,
and the domain decides what a reply confirms (warnd.domain.confirmation). "Asked"
is read from what was sent: a delivery to the person, for the grid, made by a
fired rung of the requirement (its `created_at` is the rung's `fired_at`: the
store writes both with the same instant), in this warning or an earlier version
of it (an Update carries the fired rungs with their times).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from warnd.domain.confirmation import OpenItem, Role
from warnd.domain.model import Level, Status
from warnd.domain.states import CONFIRMATION, ConfirmationState, RungState, WarningState
from warnd.store import audit
from warnd.store.database import Database
from warnd.store.escalation import stop_grids
from warnd.store.schema import TS, confirmations, deliveries, people, regions, rungs, warnings
from warnd.store.schema import inbound as inbound_table
from warnd.store.transitions import transition

ONLY_GRIDS = frozenset({"grid_responsible"})  # roles whose holders no rung asks by role
T = TypeVar("T")


def _asked_at(person_ids: sa.BindParameter) -> sa.ScalarSelect:
    """When a fired rung of the outer query's requirement first sent one of `person_ids`
    something for its grid, in its warning's chain of versions; NULL: never."""
    c, w = confirmations.c, warnings.c
    r, d, x = rungs.alias("ask_rung"), deliveries.alias("ask_send"), warnings.alias("ask_version")
    root = sa.func.coalesce(w.root_id, w.id)
    # correlated by hand: the outer query's warning is two levels up
    chain = sa.select(x.c.id).where(sa.or_(x.c.id == root, x.c.root_id == root)).correlate(warnings)
    return (sa.select(sa.func.min(d.c.created_at))
            .select_from(r.join(d, sa.and_(d.c.grid == r.c.grid, d.c.created_at == r.c.fired_at)))
            .where(r.c.confirmation_id == c.id, r.c.state == RungState.FIRED.value, d.c.recipient_kind == "person",
                   d.c.recipient_id.in_(person_ids), d.c.warning_id.in_(chain))
            .correlate(confirmations, warnings).scalar_subquery())


def _open_items(of_warning: bool, by_region: bool) -> sa.Select:
    """Open requirements some people answer for (bound: person_ids, warning_id; with
    `by_region` also prefix and who), newest warning first.

    Responsible and backup: a union of two selects, one index each (with an OR of the two
    columns SQLite read every open requirement). By region: the requirements under a role
    holder's region that a rung asked them about. Built once: building cost more than running."""
    c, w = confirmations.c, warnings.c
    grid, village = regions.alias("grid_region"), regions.alias("village_region")
    person_ids = sa.bindparam("person_ids", expanding=True)

    def answering(who: sa.ColumnElement, role: str, asked: sa.ColumnElement) -> sa.Select:
        q = (sa.select(c.id, c.warning_id, c.grid, c.created_at, w.event, w.level, w.status,
                       grid.c.name.label("grid_name"), village.c.name.label("parent_name"),
                       sa.literal(role).label("role"), who.label("who"), asked.label("asked_at"))
             .select_from(confirmations.join(warnings, w.id == c.warning_id)
                          .outerjoin(grid, grid.c.code == c.grid).outerjoin(village, village.c.code == grid.c.parent))
             .where(c.state == ConfirmationState.OPEN.value, w.state == WarningState.ACTIVE.value))
        return q.where(c.warning_id == sa.bindparam("warning_id")) if of_warning else q

    if by_region:
        asked = _asked_at(person_ids)
        q = answering(sa.bindparam("who", type_=sa.String), "asked", asked)
        both = q.where(c.grid.startswith(sa.bindparam("prefix")), asked.is_not(None)).subquery()
    else:
        both = sa.union(
            answering(c.person_id, "responsible", sa.cast(sa.null(), TS)).where(c.person_id.in_(person_ids)),
            answering(c.backup_id, "backup", _asked_at(person_ids)).where(c.backup_id.in_(person_ids))).subquery()
    return sa.select(both).order_by(both.c.warning_id.desc(), both.c.id)


OPEN_ITEMS = {(w, r): _open_items(w, r) for w in (False, True) for r in (False, True)}
CONFIRM = (transition(CONFIRMATION, ConfirmationState.CONFIRMED)
           .where(confirmations.c.id.in_(sa.bindparam("ids", expanding=True)))
           .values(confirmed_at=sa.bindparam("at"), confirmed_by=sa.bindparam("who"), channel=sa.bindparam("by"),
                   late=confirmations.c.deadline < sa.bindparam("late_after", type_=TS), reason=sa.bindparam("why"))
           .returning(confirmations.c.id, confirmations.c.warning_id, confirmations.c.grid))
RECORD = {name: insert(inbound_table).on_conflict_do_nothing(
              index_elements=[inbound_table.c.channel, inbound_table.c.provider_ref]).returning(inbound_table.c.id)
          for name, insert in (("sqlite", sqlite.insert), ("postgresql", postgresql.insert))}
SENDERS = {column: sa.select(people.c.id, people.c.language, people.c.region, people.c.roles)
           .where(people.c[column] == sa.bindparam("value")).order_by(people.c.id) for column in ("phone", "id")}
RANK = {Role.RESPONSIBLE: 0, Role.ASKED: 1, Role.BACKUP: 2}


@dataclass(frozen=True)
class Sender:
    """Someone who answers: a phone number's person, a callee, a link's person."""

    id: str
    language: str
    region: str
    roles: tuple[str, ...]

    @property
    def asked_by_role(self) -> bool:
        """Whether a rung may ask them by a role (superior, liaison …), not only as a backup."""
        return bool(set(self.roles) - ONLY_GRIDS)


@dataclass(frozen=True)
class Call:
    """What a key press needs to know about the call it was pressed on."""

    warning_id: int
    recipient_kind: str
    recipient_id: str
    language: str
    drill: bool


@dataclass(frozen=True)
class Inbound:
    """What came in: a reply, a key press, a click, an operator's record."""

    at: datetime
    channel: str  # sms / voice / link / operator
    from_address: str
    body: str
    person_id: str | None
    delivery_id: int | None = None
    provider_ref: str | None = None


@dataclass(frozen=True)
class Confirming:
    """What an answer confirms, decided from its senders and what they have open (see `answer`)."""

    person_id: str | None  # who answered (of a shared number, the one who answers for it)
    ids: list[int]
    outcome: Callable[[int], str]
    confirm: bool = True
    answered_by: Mapping[int, str] | None = None


def asking_regions(senders: list[Sender]) -> dict[str, str]:
    """Person → region, for those a rung may have asked by a role."""
    return {p.id: p.region for p in senders if p.asked_by_role}


class ConfirmationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def people_by_phone(self, phone: str) -> list[tuple[str, str]]:
        """(person id, language) of everyone with this number."""
        return [(p.id, p.language) for p in await self.senders(phone)]

    async def senders(self, phone: str) -> list[Sender]:
        """Everyone with this number, in a stable order (the first answers for a shared phone)."""
        return await self._people("phone", phone)

    async def person(self, person_id: str) -> Sender | None:
        found = await self._people("id", person_id)
        return found[0] if found else None

    async def _people(self, column: str, value: str) -> list[Sender]:
        async with self.db.read() as conn:
            return await conn.run_sync(_senders, column, value)

    async def open_items(self, person_ids: list[str], warning_id: int | None = None,
                         asked_by: datetime | None = None, *, unasked: bool = False,
                         regions_of: Mapping[str, str] | None = None) -> list[OpenItem]:
        """Open requirements these people answer for, newest warning first, one item each
        (the strongest role: responsible, asked, backup).

        Without `unasked` a backup not asked for a grid is left out (what a bare "1", a key
        press or a link confirms, unless backups confirm from the first wave); with it they
        come as Role.BACKUP, so a reply naming the grid can confirm it. `regions_of` (person
        → region) adds the grids under those regions a rung asked them about (a township
        duty officer, a liaison). With `asked_by`, only requirements and asks that existed
        then (a reply fetched late answers what was open when it was sent)."""
        if not person_ids:
            return []
        async with self.db.read() as conn:
            return await conn.run_sync(_read_open_items, person_ids, warning_id, asked_by, unasked, regions_of or {})

    async def newest_provider_inbound(self, channel: str) -> datetime | None:
        """When the newest message a provider passed on (one with its reference) was received."""
        i = inbound_table.c
        async with self.db.read() as conn:
            return (await conn.execute(sa.select(sa.func.max(i.at)).where(
                i.channel == channel, i.provider_ref.is_not(None)))).scalar()

    async def answer(self, inbound: Inbound, ids: list[int], outcome: Callable[[int], str], *,
                     confirm: bool = True, confirmed_by: str | None = None, reason: str | None = None,
                     actor: str | None = None, action: str = "confirmation.record",
                     answered_by: Mapping[int, str] | None = None) -> int | None:
        """Record what came in and (`confirm`) confirm `ids` (open → confirmed, late if past the
        deadline), in one transaction shared with other answers (group commit): with it, the
        rest of the grids' ladders skipped and their queued sends cancelled. A repeat
        changes nothing. `outcome(confirmed)` names the inbound row's outcome; returns how
        many requirements this answer confirmed. With an `actor` it is audited as `action`
        (an operator's record, a person's click on a link), in that same transaction.

        A provider's message is applied once: with a `provider_ref` (MessageSid, CallSid) that
        is already recorded for the channel, nothing changes and None is returned. The row is
        written first, so a replay confirms nothing, not even a warning opened since (the
        `ids` it was given are the open ones of now).

        Each requirement records who confirmed it (`answered_by`: of the people sharing the
        sender's number, the one who answers for it; else `confirmed_by` or the inbound's
        person) and through which channel: who confirmed for whom is the report's."""
        async def work(conn: AsyncConnection) -> int | None:
            done = await conn.run_sync(_apply, inbound, Confirming(inbound.person_id, ids, outcome, confirm,
                                                                   answered_by), confirmed_by, reason)
            if done is None:
                return None
            if actor is not None:  # who, and on someone's behalf why; last in the work (see audit)
                await audit.append(conn, self.db, inbound.at, actor, action, f"confirmations:{ids}",
                                   {"person_id": inbound.person_id, "channel": inbound.channel, "reason": reason,
                                    "confirmed": done})
            return len(done)

        return await self.db.write_grouped(work)

    async def reply(self, inbound: Inbound, asked_by: datetime | None,
                    decide: Callable[[list[Sender], list[OpenItem]], tuple[T, Confirming]]) -> tuple[T, int | None]:
        """A reply from `inbound.from_address`: its senders and their open requirements read
        (as `senders` and `open_items(unasked=True)`, what existed at `asked_by`), `decide`
        told them, and what it decided recorded as `answer` does; all in one transaction on
        the database thread, shared with other replies (group commit, Database.write_hot),
        so nothing confirmed meanwhile is confirmed twice. `decide` runs on that thread: plain
        code without I/O. Returns what `decide` gave and how many it confirmed (None: replayed)."""
        def work(conn: Connection) -> tuple[T, int | None]:
            senders = _senders(conn, "phone", inbound.from_address)
            items = _read_open_items(conn, [p.id for p in senders], None, asked_by, True,
                                asking_regions(senders)) if senders else []
            decided, confirming = decide(senders, items)
            done = _apply(conn, replace(inbound, person_id=confirming.person_id), confirming, None, None)
            return decided, None if done is None else len(done)

        return await self.db.write_hot(work)

    async def recipient_of(self, delivery_id: int) -> tuple[int, str, str] | None:
        """(warning id, recipient kind, recipient id) of a delivery."""
        call = await self.call_of(delivery_id)
        return (call.warning_id, call.recipient_kind, call.recipient_id) if call else None

    async def inbound(self, outcome: str | None, channel: str | None, before: int | None,
                      limit: int) -> list[sa.Row]:
        """What came in, newest first (for operators): optionally one outcome, one channel,
        ids below `before` (the next page)."""
        i = inbound_table.c
        q = sa.select(inbound_table).order_by(i.id.desc()).limit(limit)
        for column, value in ((i.outcome, outcome), (i.channel, channel)):
            if value is not None:
                q = q.where(column == value)
        if before is not None:
            q = q.where(i.id < before)
        async with self.db.read() as conn:
            return list((await conn.execute(q)).all())

    async def answered_version(self, warning_id: int) -> int:
        """The version of `warning_id`'s chain that an answer to it answers now: the newest
        active one, unless it raised the level (a raise needs a new confirmation, and the
        old call or link never told of it); else `warning_id` itself."""
        w = warnings.c
        asked = sa.select(w.root_id, w.id, w.level).where(w.id == warning_id).subquery()
        q = (sa.select(w.id).select_from(warnings.join(asked, sa.func.coalesce(w.root_id, w.id)
                                                        == sa.func.coalesce(asked.c.root_id, asked.c.id)))
             .where(w.state == WarningState.ACTIVE.value, w.id >= warning_id, w.level <= asked.c.level)
             .order_by(w.id.desc()).limit(1))
        async with self.db.read() as conn:
            return (await conn.execute(q)).scalar() or warning_id

    async def call_of(self, delivery_id: int) -> Call | None:
        """The warning, callee and language of a delivery, and whether it is a drill."""
        d, w = deliveries.c, warnings.c
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(d.warning_id, d.recipient_kind, d.recipient_id, d.language, w.status)
                                      .join(warnings, w.id == d.warning_id).where(d.id == delivery_id))).first()
        return Call(row.warning_id, row.recipient_kind, row.recipient_id, row.language,
                    Status(row.status).is_drill) if row else None


def _senders(conn: Connection, column: str, value: str) -> list[Sender]:
    """Everyone whose `column` (phone, id) is `value`, in a stable order."""
    rows = conn.execute(SENDERS[column], {"value": value})
    return [Sender(r.id, r.language, r.region, tuple(r.roles or ())) for r in rows]


def _read_open_items(conn: Connection, person_ids: list[str], warning_id: int | None, asked_by: datetime | None,
                unasked: bool, regions_of: Mapping[str, str]) -> list[OpenItem]:
    """See ConfirmationStore.open_items."""
    params = {"person_ids": person_ids, "warning_id": warning_id}
    rows = list(conn.execute(OPEN_ITEMS[(warning_id is not None, False)], params))
    for who, region in regions_of.items():
        rows += conn.execute(OPEN_ITEMS[(warning_id is not None, True)], {**params, "who": who, "prefix": region})
    best: dict[int, OpenItem] = {}
    for r in rows:
        if asked_by is not None and r.created_at is not None and r.created_at > asked_by:
            continue
        asked = r.asked_at is not None and (asked_by is None or r.asked_at <= asked_by)
        role = Role.ASKED if asked else Role(r.role)
        if (role is Role.BACKUP and not unasked) or (role is Role.ASKED and not asked):
            continue  # (asked by region, but only after the reply was sent)
        item = OpenItem(r.id, r.warning_id, r.event, Level(r.level).zh, role, r.grid, r.grid_name or "",
                        r.parent_name or "", Status(r.status).is_drill, r.who or "")
        if r.id not in best or RANK[role] < RANK[best[r.id].role]:
            best[r.id] = item
    return sorted(best.values(), key=lambda i: (-i.warning_id, i.confirmation_id))


def _apply(conn: Connection, inbound: Inbound, confirming: Confirming, confirmed_by: str | None,
           reason: str | None) -> list[int] | None:
    """Record the inbound row and confirm what it confirms (see ConfirmationStore.answer); the
    requirements it confirmed, or None when its provider reference was applied before."""
    ids = confirming.ids
    expected = confirming.outcome(len(ids) if confirming.confirm else 0)  # unless some were answered meanwhile
    row_id = _record(conn, inbound, ids, expected)
    if row_id is None:
        return None
    done: list[int] = []
    if confirming.confirm and ids:
        by: dict[str | None, list[int]] = {}
        for cid in ids:
            who = (confirming.answered_by or {}).get(cid) or confirmed_by or inbound.person_id
            by.setdefault(who, []).append(cid)
        grids: dict[int, set[str]] = {}
        for who, some in by.items():  # one person almost always: one statement
            for row in conn.execute(CONFIRM, {"ids": some, "at": inbound.at, "who": who, "by": inbound.channel,
                                              "late_after": inbound.at, "why": reason}):
                done.append(row.id)
                grids.setdefault(row.warning_id, set()).add(row.grid)
        stop_grids(conn, done, inbound.at, "confirmed", grids)
    if confirming.outcome(len(done)) != expected:
        conn.execute(sa.update(inbound_table).where(inbound_table.c.id == row_id)
                     .values(outcome=confirming.outcome(len(done))))
    return done


def _record(conn: Connection, inbound: Inbound, ids: list[int], outcome: str) -> int | None:
    """Insert the inbound row; its id, or None when (channel, provider_ref) is already recorded.

    ON CONFLICT DO NOTHING, not a caught IntegrityError: on PostgreSQL no error aborts the
    group's transaction, and a second node's copy waits for the first's commit and then
    finds it. Rows without a provider_ref (links, operators) never conflict."""
    return conn.execute(RECORD[conn.dialect.name], dict(
        at=inbound.at, channel=inbound.channel, from_address=inbound.from_address, body=inbound.body[:2000],
        outcome=outcome, confirmation_ids=ids, person_id=inbound.person_id, delivery_id=inbound.delivery_id,
        provider_ref=inbound.provider_ref)).scalar()
