"""A warning's report (and a drill's, with its evaluation), gathered from the coverage stores.

The report reads what the coverage API and the roll-ups read (CoverageStore
report / rollup / not_woken), plus when each responsible person was first sent
the warning; the figures are computed by warnd/domain/report.py. Not a hot path:
it is read once per export, in full (a province report is as long as it is).
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from warnd.domain.coverage import GridState
from warnd.domain.model import Status
from warnd.domain.report import DrillGrid, Targets, counts, curve, evaluate_drill, live_state, percent, time_to
from warnd.store.coverage import CoverageStore, places_of
from warnd.store.database import Database
from warnd.store.live import SENT, public_head, warning_head
from warnd.store.schema import deliveries

DRILL_STATUSES = tuple(s.value for s in Status if s.is_drill)  # Exercise, Test


def _at(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class ReportStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.coverage = CoverageStore(db)

    async def report(self, warning_id: int, now: datetime, contacts: bool, targets: Targets) -> dict | None:
        """Summary, curve, roll-up, 未叫醒, rungs fired, household outcomes; and for a drill its 评估."""
        async with self.db.read() as conn:
            head = await warning_head(conn, warning_id)
        found = await self.coverage.report(warning_id)
        if head is None or found is None:
            return None
        rolled = await self.coverage.rollup(warning_id, ("township", "village"))
        not_woken = await self.coverage.not_woken(warning_id, only_open=False) or []
        grids = found["grids"]
        async with self.db.read() as conn:
            places = await places_of(conn, sorted({g["grid"] for g in grids}))
            first_sent = await self._first_sent(conn, warning_id)
        names = {code: p.name for code, p in places.items()}
        start = head["_start"]
        states = [GridState(g["grid"], g["state"], _at(g["confirmed_at"]) or _at(g["covered_at"])) for g in grids]
        tally = counts([live_state(g["state"], g["not_woken_at"] is not None, g["uncovered_at"] is not None)
                        for g in grids])
        reached = tally["confirmed"] + tally["covered"]
        reached_in = time_to(states, start)
        drill = head["status"] in DRILL_STATUSES
        if not contacts:
            not_woken = [{**r, "phone": None} for r in not_woken]
        return {
            "warning": public_head(head), "is_drill": drill, "generated_at": now.isoformat(),
            "summary": {"release": found["release"], "counts": tally, "percent": percent(reached, tally["total"]),
                        "time_to": reached_in, "totals": found["totals"]},
            "curve": curve(states, start),
            "rollup": {"regions": rolled["regions"] if rolled else [], "total": rolled["total"] if rolled else None},
            "not_woken": not_woken,
            "rungs": [{"grid": g["grid"], "grid_name": names.get(g["grid"]), **rung}
                      for g in grids for rung in g["rungs"] if rung["state"] == "fired"],
            "households": self._households(grids, names, rolled),
            "drill": evaluate_drill([self._drill_grid(g, first_sent) for g in grids], start, reached_in["100"],
                                    targets) if drill else None,
        }

    @staticmethod
    async def _first_sent(conn, warning_id: int) -> dict[str, datetime]:  # noqa: ANN001 - a connection
        """Per person: when the warning first went out to them (a provider took it)."""
        d = deliveries.c
        rows = await conn.execute(sa.select(d.recipient_id, sa.func.min(d.sent_at))
                                  .where(d.warning_id == warning_id, d.recipient_kind == "person",
                                         d.purpose == "warning", d.state.in_(SENT), d.sent_at.is_not(None))
                                  .group_by(d.recipient_id))
        return {person: at for person, at in rows}

    @staticmethod
    def _drill_grid(g: dict, first_sent: dict[str, datetime]) -> DrillGrid:
        last = max(g["rungs"], key=lambda r: r["step"], default=None)
        return DrillGrid(g["grid"], first_sent.get(g["person_id"]) if g["person_id"] else None,
                         _at(g["confirmed_at"]) or _at(g["covered_at"]) if g["state"] in ("confirmed", "covered")
                         else None, _at(last["due_at"]) if last else None)

    @staticmethod
    def _households(grids: list[dict], names: dict[str, str], rolled: dict | None) -> dict:
        """Household outcomes of the door-to-door lists: all together, and per grid with a list."""
        rows = []
        for g in grids:
            door = g["door_to_door"]
            if door is None:
                continue
            rows.append({"grid": g["grid"], "grid_name": names.get(g["grid"]), "total": door["total"],
                         **door["by_mark"], "unmarked": door["unmarked"], "reached": door["reached"],
                         "moved_people": door["moved_people"], "completed_at": door["completed_at"]})
        total = rolled["total"] if rolled else None
        return {"total": {**total["households"], "moved_people": total["moved_people"]} if total else None,
                "grids": rows}

