"""The coverage report's data: per grid, its requirement, ladder and door-to-door progress;
the roll-up per village, township and county; the 未叫醒 (not woken) list."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from warnd.domain.coverage import GridFacts, GridState, Place, enclosing, moved_people, rollup, summary
from warnd.domain.directory import with_ancestors
from warnd.domain.households import OUTCOMES, Mark, Outcome, tally
from warnd.store.database import Database
from warnd.store.door_reports import reported_by_list
from warnd.store.schema import (call_list_items, call_lists, confirmations, deliveries, people, regions, rungs,
                                warnings)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def door_progress(conn: AsyncConnection, warning_id: int) -> dict[int, dict]:
    """Per requirement (confirmation id) with a door-to-door list: its households by outcome, how
    many are reached (told or moved), people moved by marks and by the walker's SMS reports."""
    cl, ci = call_lists.c, call_list_items.c
    heads = (await conn.execute(sa.select(cl.id, cl.confirmation_id, cl.assignee_id, cl.completed_at)
                                .where(cl.warning_id == warning_id))).all()
    marks: dict[int, list[Mark | None]] = {h.id: [] for h in heads}
    if heads:
        q = sa.select(ci.list_id, ci.mark, ci.people).where(ci.list_id.in_(list(marks)))
        for row in await conn.execute(q):
            marks[row.list_id].append(Mark(Outcome(row.mark), row.people) if row.mark in OUTCOMES else None)
    reported = await reported_by_list(conn, list(marks))
    out = {}
    for h in heads:
        t = tally(marks[h.id])
        sms = reported.get(h.id, {"reports": 0, "moved_people": 0})
        out[h.confirmation_id] = {
            "list_id": h.id, "assignee_id": h.assignee_id, "total": t.total, "marked": t.marked,
            "reached": t.reached, "by_mark": t.by_outcome, "unmarked": t.unmarked,
            "moved_marked": t.moved_people, "reported": sms,
            "moved_people": moved_people(t.moved_people, sms["moved_people"]),
            "completed_at": _iso(h.completed_at), "_tally": t}
    return out


async def places_of(conn: AsyncConnection, codes: list[str]) -> dict[str, Place]:
    """The directory's regions for these codes and every region enclosing them."""
    r = regions.c
    wanted = sorted(with_ancestors(codes))
    asked: set[str] = set()
    places: dict[str, Place] = {}
    while wanted:  # parents the directory names beyond the codes' shape are read in a next round
        chunk, wanted = wanted[:500], wanted[500:]
        asked.update(chunk)
        for row in await conn.execute(sa.select(r.code, r.name, r.kind, r.parent).where(r.code.in_(chunk))):
            places[row.code] = Place(row.name, row.kind, row.parent)
            if row.parent and row.parent not in asked and row.parent not in wanted:
                wanted.append(row.parent)
    return places


class CoverageStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def report(self, warning_id: int) -> dict | None:
        c, r = confirmations.c, rungs.c
        async with self.db.read() as conn:
            w, d = warnings.c, deliveries.c
            head = (await conn.execute(sa.select(w.created_at, w.approved_at, w.published_at, w.approvals_needed)
                                       .where(w.id == warning_id))).first()
            if head is None:
                return None
            # The clock starts when the warning was published: before that it reached nobody.
            accepted = head.published_at or head.created_at
            first_sent = (await conn.execute(sa.select(sa.func.min(d.sent_at))
                                             .where(d.warning_id == warning_id))).scalar()
            reqs = (await conn.execute(sa.select(confirmations).where(c.warning_id == warning_id)
                                       .order_by(c.grid))).all()
            ladder: dict[int, list[dict]] = {}
            for row in await conn.execute(sa.select(rungs).where(r.warning_id == warning_id).order_by(r.step)):
                ladder.setdefault(row.confirmation_id, []).append(
                    {"step": row.step, "ladder": row.ladder, "action": row.action, "due_at": _iso(row.due_at),
                     "state": row.state, "fired_at": _iso(row.fired_at)})
            progress = await door_progress(conn, warning_id)
        for door in progress.values():
            door.pop("_tally")
        grids = [self._grid(q, ladder.get(q.id, []), progress.get(q.id)) for q in reqs]
        states = [GridState(q.grid, q.state, q.confirmed_at or q.covered_at) for q in reqs]
        release = {"submitted_at": _iso(head.created_at), "approvals_needed": head.approvals_needed,
                   "approved_at": _iso(head.approved_at), "published_at": _iso(head.published_at),
                   "first_sent_at": _iso(first_sent),
                   "approval_seconds": (head.published_at - head.created_at).total_seconds()
                   if head.published_at else None}
        totals = {"not_woken": sum(1 for q in reqs if q.not_woken_at and q.state == "open"),
                  "moved_people": sum(p["moved_people"] for p in progress.values())}
        return {"warning_id": warning_id, "release": release, "summary": summary(states, accepted),
                "totals": totals, "grids": grids}

    async def rollup(self, warning_id: int, kinds: tuple[str, ...]) -> dict | None:
        """Per village, township and county: confirmed, covered, open, 未叫醒, households, people moved."""
        c = confirmations.c
        async with self.db.read() as conn:
            if (await conn.execute(sa.select(warnings.c.id).where(warnings.c.id == warning_id))).first() is None:
                return None
            reqs = (await conn.execute(sa.select(c.id, c.grid, c.state, c.not_woken_at, c.uncovered_at)
                                       .where(c.warning_id == warning_id))).all()
            progress = await door_progress(conn, warning_id)
            places = await places_of(conn, sorted({q.grid for q in reqs}))
        facts = [GridFacts(q.grid, q.state, q.not_woken_at is not None, q.uncovered_at is not None,
                           progress[q.id]["_tally"] if q.id in progress else None,
                           progress[q.id]["moved_people"] if q.id in progress else 0) for q in reqs]
        rows, total = rollup(facts, places, kinds)
        return {"warning_id": warning_id, "regions": rows, "total": total}

    async def not_woken(self, warning_id: int, only_open: bool) -> list[dict] | None:
        """未叫醒: grids whose responsible person went on the list, with who was sent to the door."""
        c, d, p, cl = confirmations.c, deliveries.c, people.c, call_lists.c
        walker = people.alias("walker")
        async with self.db.read() as conn:
            if (await conn.execute(sa.select(warnings.c.id).where(warnings.c.id == warning_id))).first() is None:
                return None
            q = (sa.select(c.id, c.grid, c.state, c.person_id, c.not_woken_at, c.confirmed_at, c.confirmed_by,
                           c.channel, c.covered_at, p.name.label("person_name"), p.phone.label("person_phone"),
                           cl.id.label("list_id"), cl.assignee_id, walker.c.name.label("assignee_name"))
                 .outerjoin(people, p.id == c.person_id)
                 .outerjoin(call_lists, cl.confirmation_id == c.id)
                 .outerjoin(walker, walker.c.id == cl.assignee_id)
                 .where(c.warning_id == warning_id, c.not_woken_at.is_not(None))
                 .order_by(c.not_woken_at, c.grid))
            if only_open:
                q = q.where(c.state == "open")
            rows = (await conn.execute(q)).all()
            grids = sorted({r.grid for r in rows})
            sent: dict[str, dict[str, None]] = {}
            if grids:
                for row in await conn.execute(
                        sa.select(d.grid, d.recipient_id, people.c.name).distinct()
                        .outerjoin(people, people.c.id == d.recipient_id)
                        .where(d.warning_id == warning_id, d.grid.in_(grids), d.purpose == "door_ask",
                               d.recipient_kind == "person")
                        .order_by(d.grid, d.recipient_id)):
                    sent.setdefault(row.grid, {})[row.name or row.recipient_id] = None
            places = await places_of(conn, grids)
        out = []
        for r in rows:
            chain = enclosing(r.grid, places)
            named = {places[x].kind: places[x].name for x in chain if x in places}
            out.append({"confirmation_id": r.id, "grid": r.grid, "grid_name": named.get("grid"),
                        "village": named.get("village"), "township": named.get("township"),
                        "person_id": r.person_id, "person_name": r.person_name, "phone": r.person_phone,
                        "not_woken_at": _iso(r.not_woken_at), "state": r.state,
                        "woken_at": _iso(r.confirmed_at or r.covered_at), "confirmed_by": r.confirmed_by,
                        "channel": r.channel, "sent_to_door": list(sent.get(r.grid, {})),
                        "list_id": r.list_id, "list_assignee": r.assignee_name or r.assignee_id})
        return out

    @staticmethod
    def _grid(q, ladder: list[dict], door: dict | None) -> dict:  # noqa: ANN001 - a Row
        return {"confirmation_id": q.id, "grid": q.grid, "state": q.state, "person_id": q.person_id,
                "backup_id": q.backup_id, "deadline": _iso(q.deadline), "confirmed_at": _iso(q.confirmed_at),
                "confirmed_by": q.confirmed_by, "channel": q.channel, "late": q.late, "reason": q.reason,
                "not_woken_at": _iso(q.not_woken_at), "covered_at": _iso(q.covered_at),
                "uncovered_at": _iso(q.uncovered_at), "uncovered_reason": q.uncovered_reason,
                "rungs": ladder, "rungs_fired": sum(1 for x in ladder if x["state"] == "fired"),
                "door_to_door": door}
