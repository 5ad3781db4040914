"""Escalation rows: ladders written at planning, due rungs fired exactly once, grids stopped.

Firing claims due rungs with FOR UPDATE SKIP LOCKED (PostgreSQL) inside one
write transaction (SQLite serialises them), applies each rung's effects and
marks it fired in that same transaction: two sweeping nodes never both fire a
rung, and a crash before commit leaves it due for the next sweep.
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from warnd.clock import Clock
from warnd.domain.delivery import State
from warnd.domain.directory import Household, Person, region_parent, with_ancestors
from warnd.domain.escalation import Effects, Grid, PlannedRung, fire
from warnd.domain.states import DELIVERY, RUNG, ConfirmationState, RungState, WarningState
from warnd.store.bulk import insert_rows, insert_rows_chunked
from warnd.store.database import Database
from warnd.store.schema import (alarms, call_list_items, call_lists, confirmations, deliveries, households,
                                people, regions, rungs, warnings)
from warnd.store.transitions import transition


async def write_ladder(conn: AsyncConnection, confirmation_id: int, warning_id: int, grid: str,
                       planned: tuple[PlannedRung, ...]) -> None:
    await write_ladders(conn, [(confirmation_id, warning_id, grid, planned)])


async def write_ladders(conn: AsyncConnection,
                        ladders: list[tuple[int, int, str, tuple[PlannedRung, ...]]]) -> None:
    """The rungs of any number of requirements, given as (confirmation id, warning id, grid, rungs).

    The grids of a warning share one ladder snapshot, so its rows are written one
    executemany per rung, its values (params, due time) converted once for all grids.
    Rungs of one grid alone (an Update's carried ones, a one-grid warning) go in one
    executemany each for pending and for fired (those already fired stay fired).
    """
    by_rung: dict[int, tuple[PlannedRung, list[tuple]]] = {}  # by identity: PlannedRung holds a dict
    for cid, wid, grid, planned in ladders:
        for r in planned:
            by_rung.setdefault(id(r), (r, []))[1].append((cid, wid, grid))
    alone: dict[bool, list[dict]] = {False: [], True: []}
    for r, owners in by_rung.values():
        if len(owners) > 1:
            values = _rung_values(r)
            await insert_rows_chunked(conn, rungs, values, (  # a province: 100,000 grids a rung
                dict(confirmation_id=cid, warning_id=wid, grid=grid) for cid, wid, grid in owners))
        else:
            (cid, wid, grid), = owners
            alone[r.fired is not None].append(dict(confirmation_id=cid, warning_id=wid, grid=grid, **_rung_values(r)))
    for rows in alone.values():
        await insert_rows(conn, rungs, {}, rows)


def _rung_values(r: PlannedRung) -> dict:
    values = dict(ladder=r.ladder, step=r.step, action=r.action, params=r.params, due_at=r.due_at,
                  state=RungState.PENDING.value, version=1)
    if r.fired is not None:
        values.update(state=RungState.FIRED.value, fired_at=r.fired.at, fired_by=r.fired.by,
                      outcome={**(r.fired.outcome or {}), "carried_from": r.from_rung})
    return values


def _stopping() -> tuple[sa.Update, sa.Select, sa.Update]:
    """stop_grids' statements, built once: building them cost more than running them (replies)."""
    r, c, d = rungs.c, confirmations.c, deliveries.c
    ids = sa.bindparam("ids", expanding=True)
    skip = (transition(RUNG, RungState.SKIPPED).where(r.confirmation_id.in_(ids))
            .values(outcome=sa.bindparam("why")))
    grids = sa.select(c.warning_id, c.grid).where(c.id.in_(ids))
    # Per warning, not (warning, grid) IN (…): SQLite reads ix_deliveries_grid only for this form.
    cancel = (transition(DELIVERY, State.CANCELLED)
              .where(d.warning_id == sa.bindparam("of_warning"), d.grid.in_(sa.bindparam("codes", expanding=True)))
              .values(last_code=sa.bindparam("code"), done_at=sa.bindparam("done"), updated_at=sa.bindparam("updated")))
    return skip, grids, cancel


SKIP_RUNGS, GRIDS_OF, CANCEL_SENDS = _stopping()


def stop_grids(conn: Connection, confirmation_ids: list[int], now: datetime, reason: str,
               grids: dict[int, set[str]] | None = None) -> None:
    """The rest of these requirements' ladders is skipped, and queued sends to their grids
    cancelled; `grids` (warning id → grid codes of these requirements), if the caller has them.

    Plain Core on a synchronous connection: the reply path runs it on the database thread
    (Database.write_hot); from an AsyncConnection, `await conn.run_sync(stop_grids, …)`."""
    if not confirmation_ids:
        return
    conn.execute(SKIP_RUNGS, {"ids": confirmation_ids, "why": {"reason": reason}})
    if grids is None:
        grids = {}
        for row in conn.execute(GRIDS_OF, {"ids": confirmation_ids}):
            grids.setdefault(row.warning_id, set()).add(row.grid)
    for warning_id, codes in grids.items():
        conn.execute(CANCEL_SENDS, {"of_warning": warning_id, "codes": sorted(codes), "code": reason,
                                    "done": now, "updated": now})


async def skip_warnings(conn: AsyncConnection, warning_ids, reason: str) -> None:  # noqa: ANN001
    """A warning that is cancelled, superseded or expired escalates no further."""
    r = rungs.c
    await conn.execute(transition(RUNG, RungState.SKIPPED).where(r.warning_id.in_(warning_ids))
                       .values(outcome={"reason": reason}))


class EscalationStore:
    def __init__(self, db: Database, clock: Clock, node: str) -> None:
        self.db = db
        self.clock = clock
        self.node = node

    async def fire_due(self, limit: int = 200) -> list[tuple[int, Effects]]:
        """Fire up to `limit` due rungs; returns (rung id, effects) of those fired.

        Set-based: the batch's grids, people and households are read with a few
        queries, and its sends, not-woken marks, alarms and rung updates written
        with one statement each, so the cost per rung is Python, not round trips.
        """
        now = self.clock.now()
        r, c, w = rungs.c, confirmations.c, warnings.c
        due = (sa.select(r.id, r.confirmation_id, r.warning_id, r.grid, r.ladder, r.action, r.params,
                         c.person_id, c.backup_id, w.level, w.expires)
               .join(confirmations, c.id == r.confirmation_id).join(warnings, w.id == r.warning_id)
               .where(r.state == RungState.PENDING.value, r.due_at <= now, c.state == ConfirmationState.OPEN.value,
                      w.state == WarningState.ACTIVE.value)
               .limit(limit).with_for_update(of=rungs, skip_locked=True))
        fired = []
        async with self.db.read() as conn:  # nothing due (most sweeps): no write lock taken
            if (await conn.execute(sa.select(r.id).where(r.state == RungState.PENDING.value, r.due_at <= now)
                                   .limit(1))).first() \
                    is None:
                return []
        async with self.db.write() as conn:
            levels = (await conn.execute(sa.select(sa.func.count(sa.distinct(w.level)))
                                         .where(w.state == WarningState.ACTIVE.value))).scalar()
            # Highest level first. With one level in force (the usual case) that order is the
            # due order, which ix_rungs_due (state, due_at) yields as it is read, so the query
            # stops after `limit` rows; ordering by the warning's level too would sort every
            # due rung on each call, which grows with the backlog when the sweep falls behind.
            due = due.order_by(*((w.level.desc(),) if levels > 1 else ()), r.due_at, r.id)
            rows = (await conn.execute(due)).all()
            if not rows:
                return []
            grids = await _grids(conn, rows)
            sends, not_woken, alarm_rows, updates = [], [], [], []
            for row in rows:
                effects = fire(row.action, row.params, grids[(row.grid, row.person_id, row.backup_id)], row.ladder)
                list_id = None
                if effects.call_list is not None:  # rare (one rung of a ladder): one list at a time
                    list_id = await _create_call_list(conn, row, effects, now)
                sends += [_delivery(row, s, now, list_id) for s in effects.sends]
                if effects.not_woken:
                    not_woken.append(row.confirmation_id)
                if effects.alarm is not None:
                    alarm_rows.append(dict(at=now, code=effects.alarm["code"], warning_id=row.warning_id,
                                           grid=row.grid, detail=effects.alarm))
                updates.append(dict(b_id=row.id, b_outcome={
                    "sends": len(effects.sends), "notes": list(effects.notes),
                    "call_list": effects.call_list is not None, "alarm": effects.alarm is not None}))
                fired.append((row.id, effects))
            if sends:
                await conn.execute(sa.insert(deliveries), sends)
            for chunk in chunks(sorted(set(not_woken))):
                await conn.execute(sa.update(confirmations).where(c.id.in_(chunk), c.not_woken_at.is_(None))
                                   .values(not_woken_at=now, version=c.version + 1))
            if alarm_rows:
                await conn.execute(sa.insert(alarms), alarm_rows)
            await conn.execute(
                transition(RUNG, RungState.FIRED).where(r.id == sa.bindparam("b_id"))
                .values(fired_at=now, fired_by=self.node,
                        outcome=sa.bindparam("b_outcome", type_=rungs.c.outcome.type)),
                updates)
        return fired


IN_CHUNK = 500  # values per IN (…): well below every database's bound-parameter limit


def chunks(values: list) -> list[list]:
    return [values[i:i + IN_CHUNK] for i in range(0, len(values), IN_CHUNK)]


async def _grids(conn: AsyncConnection, rows) -> dict[tuple[str, str | None, str | None], Grid]:  # noqa: ANN001
    """What each due rung needs to know about its grid, for a whole batch with a few queries:
    the people of the grid and every enclosing region, plus its responsible person and backup
    wherever they are, and the grid's households."""
    p, h = people.c, households.c
    codes = sorted({row.grid for row in rows})
    regions_of = sorted(with_ancestors(codes))
    ids = sorted({x for row in rows for x in (row.person_id, row.backup_id) if x})
    by_region: dict[str, list[Person]] = {}
    by_id: dict[str, Person] = {}
    for column, values in ((p.region, regions_of), (p.id, ids)):
        for chunk in chunks(values):
            for x in await conn.execute(sa.select(people).where(column.in_(chunk))):
                if x.id not in by_id:
                    person = by_id[x.id] = Person(x.id, x.name, x.region, tuple(x.roles), x.phone, x.language,
                                                  x.backup)
                    by_region.setdefault(person.region, []).append(person)
    homes: dict[str, list[Household]] = {}
    names: dict[str, str] = {}
    for chunk in chunks(codes):
        for x in await conn.execute(sa.select(households).where(h.grid.in_(chunk))):
            homes.setdefault(x.grid, []).append(Household(x.id, x.grid, x.address, x.phone, x.vulnerable))
    for chunk in chunks(regions_of):
        for code, name in await conn.execute(sa.select(regions.c.code, regions.c.name)
                                             .where(regions.c.code.in_(chunk))):
            names[code] = name
    out = {}
    for row in rows:
        key = (row.grid, row.person_id, row.backup_id)
        if key in out:
            continue
        folks = [person for code in sorted(with_ancestors([row.grid])) for person in by_region.get(code, ())]
        folks += [by_id[x] for x in (row.person_id, row.backup_id)
                  if x in by_id and by_id[x] not in folks]
        # 河口村 + 一组: a township officer asked to the door for many grids needs the village too
        name = names.get(region_parent(row.grid) or "", "") + names.get(row.grid, "")
        out[key] = Grid(row.grid, row.person_id, row.backup_id, tuple(folks), tuple(homes.get(row.grid, ())), name)
    return out


def _delivery(row, send, now: datetime, list_id: int | None) -> dict:  # noqa: ANN001
    return dict(warning_id=row.warning_id, channel=send.channel, recipient_kind=send.recipient.kind,
                recipient_id=send.recipient.id, grid=row.grid, address=send.recipient.address,
                language=send.recipient.language, priority=row.level, state=State.PENDING.value, attempts=0,
                next_attempt_at=now, expires=row.expires, created_at=now, updated_at=now, version=1,
                purpose=send.purpose,
                params={"list_id": list_id} if send.purpose == "door_to_door" else (send.params or None))


async def _create_call_list(conn: AsyncConnection, row, effects: Effects, now: datetime) -> int:  # noqa: ANN001
    existing = (await conn.execute(sa.select(call_lists.c.id)
                                   .where(call_lists.c.confirmation_id == row.confirmation_id))).scalar()
    if existing is not None:  # a second door-to-door rung reuses the list already being walked
        return existing
    list_id = (await conn.execute(sa.insert(call_lists).values(
        warning_id=row.warning_id, confirmation_id=row.confirmation_id, grid=row.grid,
        assignee_id=effects.call_list.assignee, created_at=now).returning(call_lists.c.id))).scalar_one()
    items = [dict(list_id=list_id, position=i, household_id=h.id, address=h.address, phone=h.phone,
                  vulnerable=h.vulnerable, version=1) for i, h in enumerate(effects.call_list.households)]
    if items:
        await conn.execute(sa.insert(call_list_items), items)
    return list_id
