"""The append-only, hash-chained audit log.

Each entry's hash covers its content and the previous entry's hash, so any
edit or deletion breaks the chain from that point on (`verify`). Appends are
serialised: SQLite write transactions already are; on PostgreSQL an advisory
transaction lock keeps two nodes from forking the chain.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from warnd.store.database import Database
from warnd.store.schema import audit

GENESIS = "0" * 64
LOCK_KEY = 0x5741524E  # "WARN"


def entry_hash(prev: str, at: datetime, actor: str, action: str, subject: str, detail: dict) -> str:
    body = json.dumps([prev, at.isoformat(), actor, action, subject, detail], sort_keys=True,
                      ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


async def append(conn: AsyncConnection, db: Database, at: datetime, actor: str, action: str,
                 subject: str, detail: dict) -> None:
    if not db.is_sqlite:
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
    prev = (await conn.execute(sa.select(audit.c.hash).order_by(audit.c.id.desc()).limit(1))).scalar() or GENESIS
    await conn.execute(sa.insert(audit).values(
        at=at, actor=actor, action=action, subject=subject, detail=detail, prev_hash=prev,
        hash=entry_hash(prev, at, actor, action, subject, detail)))


async def verify(db: Database) -> int | None:
    """The id of the first entry that breaks the chain, or None if it is intact."""
    prev = GENESIS
    async with db.read() as conn:
        rows = await conn.execute(sa.select(audit).order_by(audit.c.id))
        for r in rows:
            if r.prev_hash != prev or r.hash != entry_hash(prev, r.at, r.actor, r.action, r.subject, r.detail):
                return r.id
            prev = r.hash
    return None
