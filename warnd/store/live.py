"""The live view's snapshot of one warning, read in a fixed number of queries.

One snapshot is about a dozen bounded queries whatever the warning's size: the
grids in full (one row per grid: the map needs them all), per-channel counts
aggregated in SQL, and the lists an operator works through (未叫醒, door-to-door
lists, alarms, offline speakers) each capped at `limit` rows with their total,
so a province warning of 100,000 grids is still one read, not 100,000.
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from warnd.domain.coverage import GridState
from warnd.domain.delivery import State
from warnd.domain.households import COVERING
from warnd.domain.model import Level
from warnd.domain.report import counts, live_state, percent, time_to
from warnd.store.database import Database
from warnd.store.schema import (alarms, call_list_items, call_lists, confirmations, deliveries, people, regions,
                                speaker_presence, speakers, warnings)

LIST_LIMIT = 500  # rows of each list a snapshot carries; its total is given beside it
SENT = (State.SENT.value, State.DELIVERED.value)  # a provider took it (delivered: and confirmed it arrived)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def warning_head(conn: AsyncConnection, warning_id: int) -> dict | None:
    """The warning as the live view and the report head it; `_start` is when its clock starts."""
    w = warnings.c
    row = (await conn.execute(sa.select(w.id, w.identifier, w.event, w.headline, w.level, w.status, w.msg_type,
                                        w.state, w.department, w.sent, w.published_at, w.expires, w.created_at)
                              .where(w.id == warning_id))).first()
    if row is None:
        return None
    level = Level(row.level)
    return {"id": row.id, "identifier": row.identifier, "event": row.event, "headline": row.headline,
            "level": level.label, "level_zh": level.zh, "status": row.status, "msg_type": row.msg_type,
            "state": row.state, "department": row.department, "sent": _iso(row.sent),
            "published_at": _iso(row.published_at), "expires": _iso(row.expires),
            "_published": row.published_at, "_start": row.published_at or row.created_at}


def public_head(head: dict) -> dict:
    return {k: v for k, v in head.items() if not k.startswith("_")}


class LiveStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def snapshot(self, warning_id: int, now: datetime, contacts: bool, limit: int = LIST_LIMIT
                       ) -> dict | None:
        """The live view of a warning (see the console spec); phones only when `contacts`."""
        async with self.db.read() as conn:
            head = await warning_head(conn, warning_id)
            if head is None:
                return None
            reqs = await _requirements(conn, warning_id)
            channels = await _channels(conn, warning_id)
            not_woken, not_woken_total = await _not_woken(conn, warning_id, limit)
            lists, lists_total = await _call_lists(conn, warning_id, limit)
            speaker_counts = await _speakers(conn, warning_id, limit)
            alarm_rows, alarm_totals = await _alarms(conn, warning_id, limit)
        states = [live_state(q.state, bool(q.not_woken), bool(q.uncovered)) for q in reqs]
        tally = counts(states)
        reached = tally["confirmed"] + tally["covered"]
        published = head["_published"]
        if not contacts:
            not_woken = [{**r, "phone": None} for r in not_woken]
        return {
            "warning": public_head(head), "now": now.isoformat(),
            "since_issue_seconds": (now - published).total_seconds() if published else None,
            "grids_open": tally["total"] - reached, "counts": tally, "percent": percent(reached, tally["total"]),
            "time_to": time_to([GridState(q.grid, q.state, q.reached_at) for q in reqs],
                               head["_start"]),
            "channels": channels,
            "grids": [{"grid": q.grid, "name": q.grid_name, "state": s, "confirmation_id": q.id,
                       "person_name": q.person_name} for q, s in zip(reqs, states)],
            "not_woken": not_woken, "call_lists": lists, "speakers": speaker_counts, "alarms": alarm_rows,
            "totals": {"not_woken": not_woken_total, "call_lists": lists_total, **alarm_totals,
                       "offline_speakers": speaker_counts["offline"]},
            "limit": limit,
        }

    async def presence(self, under: str | None = None) -> list[dict]:
        """Every speaker with its last reported presence (online None: never reported)."""
        s, p = speakers.c, speaker_presence.c
        q = (sa.select(s.id, s.grid, p.online, p.changed_at, p.detail)
             .outerjoin(speaker_presence, p.speaker_id == s.id).order_by(s.grid, s.id))
        if under:
            q = q.where(s.grid.startswith(under, autoescape=True))
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        return [{"id": r.id, "grid": r.grid, "online": None if r.online is None else bool(r.online),
                 "since": _iso(r.changed_at), "detail": r.detail or None} for r in rows]


async def _requirements(conn: AsyncConnection, warning_id: int) -> list:
    """One row a grid; only what the map needs (a province has 100,000: each column converted counts)."""
    c, p, r = confirmations.c, people.c, regions.c
    return (await conn.execute(
        sa.select(c.id, c.grid, c.state, c.not_woken_at.is_not(None).label("not_woken"),
                  c.uncovered_at.is_not(None).label("uncovered"),
                  sa.func.coalesce(c.confirmed_at, c.covered_at, type_=confirmations.c.confirmed_at.type)
                  .label("reached_at"), p.name.label("person_name"), r.name.label("grid_name"))
        .outerjoin(people, p.id == c.person_id).outerjoin(regions, r.code == c.grid)
        .where(c.warning_id == warning_id).order_by(c.grid, c.id))).all()


async def _channels(conn: AsyncConnection, warning_id: int) -> list[dict]:
    """Per channel: planned (every send row, every purpose), sent, delivered, failed."""
    d = deliveries.c
    out: dict[str, dict] = {}
    for channel, state, n in await conn.execute(sa.select(d.channel, d.state, sa.func.count())
                                                .where(d.warning_id == warning_id).group_by(d.channel, d.state)):
        row = out.setdefault(channel, {"channel": channel, "planned": 0, "sent": 0, "delivered": 0, "failed": 0})
        row["planned"] += n
        row["sent"] += n if state in SENT else 0
        row["delivered"] += n if state == State.DELIVERED.value else 0
        row["failed"] += n if state == State.FAILED.value else 0
    return [out[k] for k in sorted(out)]


async def _not_woken(conn: AsyncConnection, warning_id: int, limit: int) -> tuple[list[dict], int]:
    """未叫醒 grids still open, longest waiting first: who, who was sent to the door, whose list."""
    c, p, cl, r, d = confirmations.c, people.c, call_lists.c, regions.c, deliveries.c
    walker = people.alias("walker")
    where = (c.warning_id == warning_id, c.not_woken_at.is_not(None), c.state == "open")
    total = (await conn.execute(sa.select(sa.func.count()).select_from(confirmations).where(*where))).scalar_one()
    rows = (await conn.execute(
        sa.select(c.id, c.grid, c.person_id, c.not_woken_at, p.name.label("person_name"), p.phone,
                  r.name.label("grid_name"), cl.id.label("list_id"), cl.assignee_id,
                  walker.c.name.label("assignee_name"))
        .outerjoin(people, p.id == c.person_id).outerjoin(regions, r.code == c.grid)
        .outerjoin(call_lists, cl.confirmation_id == c.id).outerjoin(walker, walker.c.id == cl.assignee_id)
        .where(*where).order_by(c.not_woken_at, c.grid).limit(limit))).all()
    sent: dict[str, dict[str, None]] = {}
    grids = sorted({row.grid for row in rows})
    if grids:
        for row in await conn.execute(
                sa.select(d.grid, d.recipient_id, people.c.name).distinct()
                .outerjoin(people, people.c.id == d.recipient_id)
                .where(d.warning_id == warning_id, d.grid.in_(grids), d.purpose == "door_ask",
                       d.recipient_kind == "person").order_by(d.grid, d.recipient_id)):
            sent.setdefault(row.grid, {})[row.name or row.recipient_id] = None
    return [{"confirmation_id": row.id, "grid": row.grid, "grid_name": row.grid_name, "person_id": row.person_id,
             "person_name": row.person_name, "phone": row.phone, "not_woken_at": _iso(row.not_woken_at),
             "sent_to_door": list(sent.get(row.grid, {})), "list_id": row.list_id,
             "list_assignee": row.assignee_name or row.assignee_id} for row in rows], total


async def _call_lists(conn: AsyncConnection, warning_id: int, limit: int) -> tuple[list[dict], int]:
    """Door-to-door lists, unfinished first, each counted in SQL (households, marked, reached)."""
    cl, i, p, r = call_lists.c, call_list_items.c, people.c, regions.c
    total = (await conn.execute(sa.select(sa.func.count()).select_from(call_lists)
                                .where(cl.warning_id == warning_id))).scalar_one()
    reaching = sorted(o.value for o in COVERING)
    heads = (sa.select(cl.id, cl.confirmation_id, cl.grid, cl.assignee_id, cl.completed_at)
             .where(cl.warning_id == warning_id)
             .order_by(cl.completed_at.is_not(None), cl.id).limit(limit).subquery())
    rows = (await conn.execute(
        sa.select(heads, r.name.label("grid_name"), p.name.label("assignee_name"),
                  sa.func.count(i.id).label("total"), sa.func.count(i.mark).label("marked"),
                  sa.func.coalesce(sa.func.sum(sa.case((i.mark.in_(reaching), 1), else_=0)), 0).label("reached"))
        .outerjoin(call_list_items, i.list_id == heads.c.id)
        .outerjoin(regions, r.code == heads.c.grid).outerjoin(people, p.id == heads.c.assignee_id)
        .group_by(*heads.c, r.name, p.name)
        .order_by(heads.c.completed_at.is_not(None), heads.c.id))).all()
    return [{"id": row.id, "confirmation_id": row.confirmation_id, "grid": row.grid, "grid_name": row.grid_name,
             "assignee": row.assignee_name or row.assignee_id, "total": row.total, "reached": int(row.reached),
             "marked": row.marked, "completed_at": _iso(row.completed_at)} for row in rows], total


async def _speakers(conn: AsyncConnection, warning_id: int, limit: int) -> dict:
    """Speakers of the warning's grids: online, offline (their ids), and never heard from."""
    s, p, c = speakers.c, speaker_presence.c, confirmations.c
    grids = sa.select(c.grid).where(c.warning_id == warning_id).scalar_subquery()
    joined = speakers.outerjoin(speaker_presence, p.speaker_id == s.id)
    by_state = {online: n for online, n in await conn.execute(
        sa.select(p.online, sa.func.count()).select_from(joined).where(s.grid.in_(grids)).group_by(p.online))}
    offline = [row.id for row in await conn.execute(
        sa.select(s.id).select_from(joined).where(s.grid.in_(grids), p.online.is_(False)).order_by(s.id).limit(limit))]
    return {"online": sum(n for k, n in by_state.items() if k), "offline": sum(n for k, n in by_state.items()
                                                                              if k is not None and not k),
            "unknown": by_state.get(None, 0), "offline_ids": offline}


async def _alarms(conn: AsyncConnection, warning_id: int, limit: int) -> tuple[list[dict], dict]:
    """This warning's operator alarms, open ones first, newest first within each."""
    a = alarms.c
    total, still_open = (await conn.execute(
        sa.select(sa.func.count(), sa.func.count().filter(a.acknowledged_at.is_(None)))
        .where(a.warning_id == warning_id))).one()
    rows = (await conn.execute(sa.select(alarms).where(a.warning_id == warning_id)
                               .order_by(a.acknowledged_at.is_not(None), a.at.desc(), a.id.desc())
                               .limit(limit))).all()
    return [{"id": row.id, "code": row.code, "grid": row.grid, "at": _iso(row.at), "detail": row.detail,
             "acknowledged_at": _iso(row.acknowledged_at), "acknowledged_by": row.acknowledged_by}
            for row in rows], {"alarms": total, "alarms_open": still_open}
