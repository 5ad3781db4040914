"""Walkers' SMS reports of their door-to-door lists ("已转移12人"), recorded per grid and summed.

A report is written with its SMS (an `inbound` row, outcome `reported`) in one
transaction, and like every SMS it is applied once: a provider's replay of the
same MessageSid finds the inbound row and changes nothing, so a webhook retried
by Twilio never counts twelve people twice. Refused or needs-help households in a
report alarm the township duty officer as the page's marks do.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from warnd.domain.households import Policy, after_report
from warnd.domain.liaison_report import Report, reported_total
from warnd.domain.model import Status
from warnd.store import audit
from warnd.store import households as effects_of
from warnd.store.database import Database
from warnd.store.schema import call_lists, door_reports, inbound, people, regions, warnings


@dataclass(frozen=True)
class Walked:
    """A door-to-door list someone walks, as a report needs it."""

    list_id: int
    warning_id: int
    confirmation_id: int
    grid: str
    names: tuple[str, ...]  # 河口村一组, 一组
    active: bool
    drill: bool
    level: int
    expires: datetime | None


@dataclass(frozen=True)
class Recorded:
    replayed: bool  # this SMS was applied before: nothing changed
    moved_total: int = 0  # people moved in the grid per all its reports
    alarmed: bool = False


def _summed(rows) -> int:  # noqa: ANN001 - rows of (moved_people, cumulative), in order
    return reported_total([(r.moved_people, bool(r.cumulative)) for r in rows])


class DoorReportStore:
    def __init__(self, db: Database, channel: str) -> None:
        self.db = db
        self.channel = channel  # the channel the reports arrive by (recorded with each)

    async def people_by_phone(self, phone: str) -> list[tuple[str, str]]:
        """(person id, language) of everyone with this number."""
        async with self.db.read() as conn:
            return [(r.id, r.language) for r in await conn.execute(
                sa.select(people.c.id, people.c.language).where(people.c.phone == phone).order_by(people.c.id))]

    async def walked_by(self, person_ids: list[str], since: datetime, until: datetime) -> list[Walked]:
        """Lists assigned to these people, made in [since, until], newest first; lists of warnings
        still in force first of all (a report is about the walk under way)."""
        if not person_ids:
            return []
        cl, w = call_lists.c, warnings.c
        grid, village = regions.alias("grid_region"), regions.alias("village_region")
        q = (sa.select(cl.id, cl.warning_id, cl.confirmation_id, cl.grid, w.state, w.status, w.level, w.expires,
                       grid.c.name.label("grid_name"), village.c.name.label("village_name"))
             .join(warnings, w.id == cl.warning_id)
             .outerjoin(grid, grid.c.code == cl.grid).outerjoin(village, village.c.code == grid.c.parent)
             .where(cl.assignee_id.in_(person_ids), cl.created_at >= since, cl.created_at <= until)
             .order_by(cl.id.desc()).limit(50))
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        found = [Walked(r.id, r.warning_id, r.confirmation_id, r.grid,
                        tuple(n for n in ((r.village_name or "") + (r.grid_name or ""), r.grid_name or "") if n),
                        r.state == "active" and (r.expires is None or r.expires > until),
                        Status(r.status).is_drill, r.level, r.expires) for r in rows]
        live = [x for x in found if x.active]
        return live or found

    async def record_unmatched(self, at: datetime, from_number: str, body: str, person_id: str | None,
                               provider_ref: str | None) -> bool:
        """A report that names no list of several: kept as `ambiguous`. False when replayed."""
        async with self.db.write() as conn:
            return await _inbound(conn, self.db, self.channel, at, from_number, body, person_id, provider_ref,
                                  "ambiguous",
                                  []) is not None

    async def record(self, walked: Walked, report: Report, at: datetime, from_number: str, body: str,
                     person_id: str | None, provider_ref: str | None, policy: Policy) -> Recorded:
        async with self.db.write() as conn:
            inbound_id = await _inbound(conn, self.db, self.channel, at, from_number, body, person_id, provider_ref,
                                        "reported",
                                        [walked.confirmation_id])
            if inbound_id is None:
                return Recorded(replayed=True)
            await conn.execute(sa.insert(door_reports).values(
                list_id=walked.list_id, grid=walked.grid, at=at, person_id=person_id, inbound_id=inbound_id,
                moved_people=report.moved_people, cumulative=report.cumulative, told=report.told,
                not_home=report.not_home, refused=report.refused, needs_help=report.needs_help))
            alarm_id = None
            if report.refused or report.needs_help:
                effects = after_report(report.refused, report.needs_help, await effects_of.grid_of(conn, walked.grid),
                                       body, policy)
                alarm_id = await effects_of.apply(conn, effects, warning_id=walked.warning_id, level=walked.level,
                                                  expires=walked.expires, grid=walked.grid, list_id=walked.list_id,
                                                  now=at)
            d = door_reports.c
            total = _summed((await conn.execute(sa.select(d.moved_people, d.cumulative)
                                                .where(d.list_id == walked.list_id)
                                                .order_by(d.at, d.id))).all())
            await audit.append(conn, self.db, at, person_id or from_number, "door.report",
                               f"call_list:{walked.list_id}",
                               {"list_id": walked.list_id, "grid": walked.grid, "inbound_id": inbound_id,
                                "moved_people": report.moved_people, "cumulative": report.cumulative,
                                "told": report.told, "not_home": report.not_home, "refused": report.refused,
                                "needs_help": report.needs_help, "moved_total": total, "alarm_id": alarm_id})
        return Recorded(False, total, alarm_id is not None)


async def reported_by_list(conn: AsyncConnection, list_ids: list[int]) -> dict[int, dict]:
    """Per list: people moved per its reports (summed), and the households they counted."""
    if not list_ids:
        return {}
    d = door_reports.c
    rows: dict[int, list] = {}
    for r in await conn.execute(sa.select(door_reports).where(d.list_id.in_(list_ids)).order_by(d.at, d.id)):
        rows.setdefault(r.list_id, []).append(r)
    return {lid: {"reports": len(rs), "moved_people": _summed(rs),
                  **{k: sum(getattr(r, k) for r in rs) for k in ("told", "not_home", "refused", "needs_help")}}
            for lid, rs in rows.items()}


async def _inbound(conn: AsyncConnection, db: Database, channel: str, at: datetime, from_number: str, body: str,
                   person_id: str | None, provider_ref: str | None, outcome: str, ids: list[int]) -> int | None:
    """The text as every answer is recorded (有叫有应有记录); None when (channel, its provider id) is
    already there.
    ON CONFLICT DO NOTHING, as ConfirmationStore records answers: no error aborts the transaction."""
    i = inbound.c
    insert = (sqlite.insert if db.is_sqlite else postgresql.insert)(inbound).values(
        at=at, channel=channel, from_address=from_number, body=body[:2000], outcome=outcome, confirmation_ids=ids,
        person_id=person_id, provider_ref=provider_ref)
    return (await conn.execute(insert.on_conflict_do_nothing(index_elements=[i.channel, i.provider_ref])
                               .returning(i.id))).scalar()
