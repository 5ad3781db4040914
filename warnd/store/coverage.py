"""The coverage report's data: per grid, its requirement, ladder and door-to-door progress."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from warnd.domain.coverage import GridState, summary
from warnd.store.database import Database
from warnd.store.schema import call_list_items, call_lists, confirmations, deliveries, rungs, warnings


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class CoverageStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def report(self, warning_id: int) -> dict | None:
        c, r, cl, ci = confirmations.c, rungs.c, call_lists.c, call_list_items.c
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
            progress = {}
            lists = sa.select(cl.confirmation_id, cl.id, cl.assignee_id, cl.completed_at,
                              sa.func.count(ci.id).label("total"),
                              sa.func.count(ci.mark).label("marked")) \
                .select_from(call_lists.outerjoin(call_list_items, ci.list_id == cl.id)) \
                .where(cl.warning_id == warning_id).group_by(cl.confirmation_id, cl.id, cl.assignee_id,
                                                             cl.completed_at)
            for row in await conn.execute(lists):
                progress[row.confirmation_id] = {"list_id": row.id, "assignee_id": row.assignee_id,
                                                 "total": row.total, "marked": row.marked,
                                                 "completed_at": _iso(row.completed_at)}
        grids = [self._grid(q, ladder.get(q.id, []), progress.get(q.id)) for q in reqs]
        states = [GridState(q.grid, q.state, q.confirmed_at or q.covered_at) for q in reqs]
        release = {"submitted_at": _iso(head.created_at), "approvals_needed": head.approvals_needed,
                   "approved_at": _iso(head.approved_at), "published_at": _iso(head.published_at),
                   "first_sent_at": _iso(first_sent),
                   "approval_seconds": (head.published_at - head.created_at).total_seconds()
                   if head.published_at else None}
        return {"warning_id": warning_id, "release": release, "summary": summary(states, accepted), "grids": grids}

    @staticmethod
    def _grid(q, ladder: list[dict], door: dict | None) -> dict:  # noqa: ANN001 - a Row
        return {"confirmation_id": q.id, "grid": q.grid, "state": q.state, "person_id": q.person_id,
                "backup_id": q.backup_id, "deadline": _iso(q.deadline), "confirmed_at": _iso(q.confirmed_at),
                "confirmed_by": q.confirmed_by, "channel": q.channel, "late": q.late, "reason": q.reason,
                "not_woken_at": _iso(q.not_woken_at), "covered_at": _iso(q.covered_at),
                "uncovered_at": _iso(q.uncovered_at), "uncovered_reason": q.uncovered_reason,
                "rungs": ladder, "rungs_fired": sum(1 for x in ladder if x["state"] == "fired"),
                "door_to_door": door}
