"""What household outcomes set off, written in the transaction of the mark or report that set it off.

A not-at-home household's follow-up call and SMS, and the duty officer's SMS about
a refusal, are delivery rows like every rung's sends (the outbox): the dispatcher
sends them, with retries, after the commit. A follow-up goes to the grid, so a
confirmation there stops it as it stops every queued send to the grid; the duty
officer's SMS has no grid, because a household refusing to leave still needs them
after somebody confirms. The alarm is a row of `alarms` (GET /api/v1/alarms).
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from warnd.domain.delivery import State
from warnd.domain.directory import Person, region_parent, with_ancestors
from warnd.domain.escalation import Effects, Grid
from warnd.store.schema import alarms, deliveries, people, regions


async def grid_of(conn: AsyncConnection, code: str) -> Grid:
    """The grid with the people of it and of every region enclosing it (whom an alarm can reach)."""
    codes = sorted(with_ancestors([code]))
    folks = tuple(Person(x.id, x.name, x.region, tuple(x.roles), x.phone, x.language, x.backup)
                  for x in await conn.execute(sa.select(people).where(people.c.region.in_(codes))
                                              .order_by(people.c.id)))
    names = dict((await conn.execute(sa.select(regions.c.code, regions.c.name)
                                     .where(regions.c.code.in_([code, region_parent(code) or code])))).all())
    # 河口村 + 一组: a township officer told about many grids needs the village too
    name = names.get(region_parent(code) or "", "") + names.get(code, "")
    return Grid(code, None, None, folks, (), name)


async def apply(conn: AsyncConnection, effects: Effects, *, warning_id: int, level: int,
                expires: datetime | None, grid: str, list_id: int, now: datetime) -> int | None:
    """Write the sends and the alarm of `effects`; the alarm's id, if one was raised."""
    rows = [dict(warning_id=warning_id, channel=s.channel, recipient_kind=s.recipient.kind,
                 recipient_id=s.recipient.id, grid=None if s.purpose == "door_alarm" else grid,
                 address=s.recipient.address, language=s.recipient.language, priority=level,
                 state=State.PENDING.value, attempts=0, next_attempt_at=now, expires=expires, created_at=now,
                 updated_at=now, version=1, purpose=s.purpose,
                 params={**s.params, "list_id": list_id} if s.params else None)
            for s in effects.sends]
    if rows:
        await conn.execute(sa.insert(deliveries), rows)
    if effects.alarm is None:
        return None
    detail = {**effects.alarm, "list_id": list_id, "sends": len(rows), "notes": list(effects.notes)}
    return (await conn.execute(sa.insert(alarms).values(at=now, code=effects.alarm["code"], warning_id=warning_id,
                                                        grid=grid, detail=detail)
                               .returning(alarms.c.id))).scalar_one()
