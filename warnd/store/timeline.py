"""One grid's timeline for a warning: sends, answers, rungs, door marks, reports, alarms, in time order.

有叫有应有记录: the record is already there, row by row; this reads it back for one
grid. A warning that updated an earlier one shows the earlier versions' events too
(each event names its warning id): the work done for the grid did not start again.
Phone numbers and household addresses only for readers with the contacts right.
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from warnd.domain.delivery import State
from warnd.store.database import Database
from warnd.store.schema import (alarms, audit, call_list_items, call_lists, confirmations, deliveries, door_reports,
                                inbound, regions, rungs, warnings)

MAX_EVENTS = 2000  # one grid's story; past that the newest are left off and `truncated` says so
FINAL = {State.DELIVERED.value, State.FAILED.value, State.CANCELLED.value, State.SUPERSEDED.value,
         State.EXPIRED.value}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class TimelineStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def grid(self, warning_id: int, grid: str, contacts: bool) -> dict | None:
        """None when the warning has no requirement for this grid."""
        async with self.db.read() as conn:
            chain = await _chain(conn, warning_id)
            c = confirmations.c
            reqs = (await conn.execute(sa.select(confirmations).where(c.warning_id.in_(chain), c.grid == grid)
                                       .order_by(c.warning_id, c.id))).all()
            if not reqs or reqs[-1].warning_id != warning_id:
                return None
            events: list[dict] = []
            for q in reqs:
                events += _requirement(q)
            events += await _sends(conn, chain, grid, contacts)
            events += await _answers(conn, reqs, contacts)
            ladder = await _rungs(conn, [q.id for q in reqs], events)
            events += await _door(conn, [q.id for q in reqs], contacts)
            a = alarms.c
            for row in await conn.execute(sa.select(alarms).where(a.warning_id.in_(chain), a.grid == grid)):
                events.append({"at": _iso(row.at), "event": "alarm", "warning_id": row.warning_id,
                               "alarm_id": row.id, "code": row.code, "acknowledged_at": _iso(row.acknowledged_at),
                               "acknowledged_by": row.acknowledged_by})
            name = (await conn.execute(sa.select(regions.c.name).where(regions.c.code == grid))).scalar()
        events.sort(key=lambda e: (e["at"] or "", e["event"]))
        head = reqs[-1]
        return {"warning_id": warning_id, "grid": grid, "grid_name": name, "state": head.state,
                "warnings": chain, "ladder": ladder, "events": events[:MAX_EVENTS],
                "truncated": len(events) > MAX_EVENTS}


async def _chain(conn: AsyncConnection, warning_id: int) -> list[int]:
    """This warning and the earlier versions it updated, oldest first."""
    w = warnings.c
    row = (await conn.execute(sa.select(w.id, w.root_id).where(w.id == warning_id))).first()
    if row is None:
        return [warning_id]
    root = row.root_id or row.id
    ids = (await conn.execute(sa.select(w.id).where(sa.or_(w.id == root, w.root_id == root), w.id <= warning_id)
                              .order_by(w.id))).scalars().all()
    return list(ids) or [warning_id]


def _requirement(q) -> list[dict]:  # noqa: ANN001 - a Row
    base = {"warning_id": q.warning_id, "confirmation_id": q.id}
    out = [{"at": _iso(q.created_at), "event": "required", **base, "person_id": q.person_id,
            "backup_id": q.backup_id, "deadline": _iso(q.deadline)}]
    if q.not_woken_at:
        out.append({"at": _iso(q.not_woken_at), "event": "not_woken", **base, "person_id": q.person_id})
    if q.confirmed_at:
        out.append({"at": _iso(q.confirmed_at), "event": "confirmed", **base, "by": q.confirmed_by,
                    "channel": q.channel, "late": q.late, "reason": q.reason})
    if q.covered_at:
        out.append({"at": _iso(q.covered_at), "event": "covered", **base})
    if q.uncovered_at:
        out.append({"at": _iso(q.uncovered_at), "event": "uncovered", **base, "reason": q.uncovered_reason})
    return out


async def _sends(conn: AsyncConnection, chain: list[int], grid: str, contacts: bool) -> list[dict]:
    d = deliveries.c
    rows = list(await conn.execute(sa.select(deliveries).where(d.warning_id.in_(chain), d.grid == grid)))
    # the duty officer's SMS about a refusal has no grid (nothing stops it): found by its params
    rows += [r for r in await conn.execute(sa.select(deliveries).where(d.warning_id.in_(chain),
                                                                        d.purpose == "door_alarm"))
             if (r.params or {}).get("grid") == grid]
    out = []
    for r in rows:
        base = {"warning_id": r.warning_id, "delivery_id": r.id, "channel": r.channel, "purpose": r.purpose,
                "recipient_kind": r.recipient_kind, "recipient_id": r.recipient_id,
                "address": r.address if contacts else None}
        out.append({"at": _iso(r.created_at), "event": "send.planned", **base})
        if r.sent_at:
            out.append({"at": _iso(r.sent_at), "event": "send.sent", **base, "attempts": r.attempts})
        if r.state in FINAL and r.done_at:
            out.append({"at": _iso(r.done_at), "event": f"send.{r.state}", **base, "code": r.last_code})
    return out


async def _answers(conn: AsyncConnection, reqs: list, contacts: bool) -> list[dict]:  # noqa: ANN001
    """Replies, key presses, clicks and operator records that answered (or tried to answer) these grids."""
    i = inbound.c
    ids = {q.id for q in reqs}
    who = sorted({x for q in reqs for x in (q.person_id, q.backup_id) if x})
    since = min((q.created_at for q in reqs if q.created_at), default=None)
    q = sa.select(inbound).where(sa.or_(i.person_id.in_(who), i.channel == "operator", i.outcome == "reported"))
    if since is not None:
        q = q.where(i.at >= since)
    out = []
    for r in await conn.execute(q.order_by(i.id).limit(5 * MAX_EVENTS)):
        answered = set(r.confirmation_ids or []) & ids
        if not answered and not (r.person_id in who and not r.confirmation_ids):
            continue  # another grid's answer
        out.append({"at": _iso(r.at), "event": "answer", "channel": r.channel, "person_id": r.person_id,
                    "from": r.from_address if contacts or r.channel == "operator" else None,
                    "body": r.body, "outcome": r.outcome, "confirmation_ids": sorted(answered)})
    return out


async def _rungs(conn: AsyncConnection, cids: list[int], events: list[dict]) -> list[dict]:
    r = rungs.c
    ladder = []
    for row in await conn.execute(sa.select(rungs).where(r.confirmation_id.in_(cids)).order_by(r.warning_id, r.step)):
        entry = {"warning_id": row.warning_id, "step": row.step, "ladder": row.ladder, "action": row.action,
                 "due_at": _iso(row.due_at), "state": row.state, "fired_at": _iso(row.fired_at)}
        ladder.append(entry)
        if row.fired_at:
            events.append({"at": _iso(row.fired_at), "event": "rung.fired", **entry, "outcome": row.outcome})
    return ladder


async def _door(conn: AsyncConnection, cids: list[int], contacts: bool) -> list[dict]:
    cl, ci, a, d = call_lists.c, call_list_items.c, audit.c, door_reports.c
    lists = (await conn.execute(sa.select(call_lists).where(cl.confirmation_id.in_(cids)))).all()
    if not lists:
        return []
    ids = [x.id for x in lists]
    out = []
    for x in lists:
        out.append({"at": _iso(x.created_at), "event": "door.list", "list_id": x.id, "assignee_id": x.assignee_id})
        if x.completed_at:
            out.append({"at": _iso(x.completed_at), "event": "door.completed", "list_id": x.id})
    addresses = dict((await conn.execute(sa.select(ci.id, ci.address).where(ci.list_id.in_(ids)))).all())
    # every mark, not only the latest: the audit log has each one (door.mark)
    for row in await conn.execute(sa.select(audit).where(a.action == "door.mark",
                                                         a.subject.in_([f"call_list:{x}" for x in ids]))
                                  .order_by(a.id)):
        item = row.detail.get("item_id")
        out.append({"at": _iso(row.at), "event": "door.mark", "list_id": row.detail.get("list_id"),
                    "item_id": item, "household_id": row.detail.get("household_id"),
                    "address": addresses.get(item) if contacts else None, "mark": row.detail.get("mark"),
                    "people": row.detail.get("people"), "note": row.detail.get("note"),
                    "by": row.actor})
    for row in await conn.execute(sa.select(door_reports).where(d.list_id.in_(ids)).order_by(d.id)):
        out.append({"at": _iso(row.at), "event": "door.report", "list_id": row.list_id, "person_id": row.person_id,
                    "moved_people": row.moved_people, "cumulative": row.cumulative, "told": row.told,
                    "not_home": row.not_home, "refused": row.refused, "needs_help": row.needs_help})
    return out
