"""An Update's carried work in the store (the rules are pure: warnd/domain/updates.py).

Inside the Update's publishing transaction: `prior_grids` reads each grid's
requirement in force and its ladder; after the old version is retired,
`changed_meanwhile` catches what another node did in between; once the new
requirements exist, `carry_work` moves each continued grid's door-to-door list
(same id: its signed link keeps working, its marks stay) and re-queues its
escalation sends that had not gone out, under the new version.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from warnd.domain.delivery import State
from warnd.domain.escalation import Fired
from warnd.domain.model import Level
from warnd.domain.planning import Plan
from warnd.domain.updates import PriorGrid, PriorRung
from warnd.store.bulk import insert_rows
from warnd.store.call_lists import move_lists
from warnd.store.escalation import chunks
from warnd.store.schema import call_lists, confirmations, deliveries, rungs, warnings

KEPT_STATES = ("open", "confirmed", "covered")
# Sends a fired rung queued (not the warning text itself): they serve the rung, which stays fired.
ESCALATION_PURPOSES = ("door_ask", "door_to_door", "household")


async def prior_grids(conn: AsyncConnection, chain: list[int], *, lock: bool) -> dict[str, PriorGrid]:
    """Each grid's newest requirement in the chain that still holds (open, confirmed, covered).

    With `lock` (PostgreSQL) the chain's lists are locked first, as a mark locks its list:
    a mark that completes a list either commits before this reads the grid, or waits and
    then marks the moved list."""
    if lock:
        await conn.execute(sa.select(call_lists.c.id).where(call_lists.c.warning_id.in_(chain))
                           .with_for_update(of=call_lists))
    c, w = confirmations.c, warnings.c
    q = (sa.select(c.id, c.warning_id, c.grid, c.state, c.deadline, c.created_at, c.confirmed_by, c.not_woken_at,
                   c.uncovered_at, c.uncovered_reason, w.level)
         .join(warnings, w.id == c.warning_id)
         .where(c.warning_id.in_(chain), c.state.in_(KEPT_STATES)).order_by(c.id))
    latest = {row.grid: row for row in await conn.execute(q)}  # by id: the newest version's wins
    ladders = await _rungs(conn, [row.id for row in latest.values() if row.state == "open"])
    return {grid: PriorGrid(row.id, row.warning_id, Level(row.level), row.state, row.deadline, row.created_at,
                            row.confirmed_by, row.not_woken_at, row.uncovered_at, row.uncovered_reason,
                            ladders.get(row.id, ()))
            for grid, row in latest.items()}


async def changed_meanwhile(conn: AsyncConnection, grids: dict[str, PriorGrid]) -> dict[str, PriorGrid] | None:
    """The open grids as they are now, if another transaction changed them since `prior_grids`.

    Retiring the old version waits for any node that was firing its rungs or recording an
    answer to it (row locks); what those committed is seen here: a rung fired meanwhile stays
    fired, a grid confirmed meanwhile is carried. None when nothing changed (the usual case)."""
    open_ = {g.confirmation_id: (code, g) for code, g in grids.items() if g.state == "open"}
    pending = [r.id for _, g in open_.values() for r in g.rungs if r.state == "pending"]
    c, r = confirmations.c, rungs.c
    fired: dict[int, PriorRung] = {}
    for chunk in chunks(pending):
        for row in await conn.execute(sa.select(rungs).where(r.id.in_(chunk), r.state == "fired")):
            fired[row.id] = _prior_rung(row)
    changed: dict[str, PriorGrid] = {}
    for chunk in chunks(sorted(open_)):
        for row in await conn.execute(sa.select(c.id, c.state, c.confirmed_by, c.not_woken_at)
                                      .where(c.id.in_(chunk))):
            code, g = open_[row.id]
            if row.state in ("confirmed", "covered"):
                changed[code] = dataclasses.replace(g, state=row.state, confirmed_by=row.confirmed_by, rungs=())
            elif any(x.id in fired for x in g.rungs):
                changed[code] = dataclasses.replace(g, not_woken_at=row.not_woken_at,
                                                    rungs=tuple(fired.get(x.id, x) for x in g.rungs))
    return {**grids, **changed} if changed else None


async def carry_work(conn: AsyncConnection, warning_id: int, level: int, expires: datetime | None, plan: Plan,
                     ids: dict[str, int], prior: Mapping[str, PriorGrid], now: datetime) -> dict[str, int]:
    """Move continued grids' lists to their new requirements and re-queue their escalation
    sends that had not gone out (the old version's were just superseded). Counts, for the audit."""
    kept = [p for p in plan.confirmations if p.kept is not None]
    moved = await move_lists(conn, [(p.kept.from_id, ids[p.grid], warning_id) for p in kept])
    # Only open grids still need their rungs' sends, from the version that held the grid.
    held: dict[int, list[str]] = {}
    for p in kept:
        if p.kept.state == "open":
            held.setdefault(prior[p.grid].warning_id, []).append(p.grid)
    d = deliveries.c
    requeued = []
    for old_warning, grids in held.items():
        for chunk in chunks(sorted(grids)):
            # superseded just now by the retirement, or still pending: queued by a rung another
            # node fired while the retirement waited for it
            q = sa.select(deliveries).where(
                d.warning_id == old_warning, d.grid.in_(chunk), d.purpose.in_(ESCALATION_PURPOSES),
                sa.or_(d.state == State.PENDING.value, sa.and_(d.state == State.SUPERSEDED.value, d.done_at == now)))
            requeued += (await conn.execute(q)).all()
    for chunk in chunks([x.id for x in requeued if x.state == State.PENDING.value]):
        await conn.execute(sa.update(deliveries).where(d.id.in_(chunk), d.state == State.PENDING.value)
                           .values(state=State.SUPERSEDED.value, done_at=now, updated_at=now, version=d.version + 1))
    await insert_rows(conn, deliveries, dict(warning_id=warning_id, priority=level, state=State.PENDING.value,
                                             attempts=0, expires=expires, created_at=now, updated_at=now, version=1), [
        dict(channel=x.channel, recipient_kind=x.recipient_kind, recipient_id=x.recipient_id, grid=x.grid,
             address=x.address, language=x.language, purpose=x.purpose, params=x.params,
             next_attempt_at=x.next_attempt_at) for x in requeued])
    return {"kept": len(kept), "lists_moved": moved, "sends_requeued": len(requeued)}


async def _rungs(conn: AsyncConnection, confirmation_ids: list[int]) -> dict[int, tuple[PriorRung, ...]]:
    r = rungs.c
    out: dict[int, list[PriorRung]] = {}
    for chunk in chunks(confirmation_ids):
        for row in await conn.execute(sa.select(rungs).where(r.confirmation_id.in_(chunk)).order_by(r.id)):
            out.setdefault(row.confirmation_id, []).append(_prior_rung(row))
    return {cid: tuple(x) for cid, x in out.items()}


def _prior_rung(row) -> PriorRung:  # noqa: ANN001 - a Row of rungs
    fired = Fired(row.fired_at, row.fired_by, row.outcome) if row.state == "fired" else None
    return PriorRung(row.id, row.ladder, row.step, row.action, row.params, row.due_at, row.state, fired)


async def follow_updates(conn: AsyncConnection, now: datetime) -> int:
    """Escalation sends of a superseded version that are pending again (in flight as the
    Update was accepted, back as a retry, or recovered) follow their grid to the version in
    force, where its requirement is still open: the rung that queued them stays fired and
    will not queue them again. Returns how many moved; the rest take their warning's end."""
    d, c = deliveries.c, confirmations.c
    old, new = warnings.alias("old"), warnings.alias("new")
    same_chain = sa.func.coalesce(new.c.root_id, new.c.id) == sa.func.coalesce(old.c.root_id, old.c.id)
    still_open = sa.exists().where(c.warning_id == new.c.id, c.grid == d.grid, c.state == "open")
    found = (await conn.execute(
        sa.select(d.id, new.c.id.label("to"), new.c.level, new.c.expires)
        .select_from(deliveries.join(old, old.c.id == d.warning_id)
                     .join(new, sa.and_(same_chain, new.c.state == "active")))
        .where(d.state == State.PENDING.value, old.c.state == State.SUPERSEDED.value,
               d.purpose.in_(ESCALATION_PURPOSES), still_open))).all()
    for row in found:
        await conn.execute(sa.update(deliveries).where(d.id == row.id, d.state == State.PENDING.value)
                           .values(warning_id=row.to, priority=row.level, expires=row.expires, updated_at=now,
                                   version=d.version + 1))
    return len(found)
