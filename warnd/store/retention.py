"""Retention: delivery attempts and inbound answers older than a cut-off are deleted, in batches.

A province's tables hold millions of rows: each batch is its own short transaction (the
oldest `batch` rows by id, then `id <= last` of those, so no IN list of ids is bound), and
other writers get the lock between batches. Deliveries, confirmations and warnings stay
(reports are made of them), and the audit log is never touched: the purge is itself an
entry of it, so `warnd audit verify` still verifies the whole chain.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from warnd.store import audit
from warnd.store.database import Database
from warnd.store.schema import attempts, inbound

PURGED = ((attempts, attempts.c.finished_at), (inbound, inbound.c.at))


@dataclass(frozen=True)
class Purged:
    cutoff: datetime
    rows: dict[str, int]  # table → rows deleted


async def purge(db: Database, now: datetime, cutoff: datetime, batch: int, actor: str = "system") -> Purged:
    counts: dict[str, int] = {}
    for table, at in PURGED:
        total = 0
        while True:
            async with db.write() as conn:
                ids = (await conn.execute(sa.select(table.c.id).where(at < cutoff).order_by(table.c.id)
                                          .limit(batch))).scalars().all()
                if ids:
                    await conn.execute(sa.delete(table).where(table.c.id <= ids[-1], at < cutoff))
            total += len(ids)
            if len(ids) < batch:
                break
        counts[table.name] = total
    async with db.write() as conn:
        await audit.append(conn, db, now, actor, "retention.purge", "retention",
                           {"cutoff": cutoff.isoformat(), "rows": counts})
    return Purged(cutoff, counts)
