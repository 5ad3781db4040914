"""Notices (the daily summary, roster asks): claimed, sent once, their outcome recorded.

A notice is claimed (pending → sending, a compare-and-set: two nodes never both take
one), sent, then settled. One left `sending` by a crash is marked `uncertain` after
`lease`, never sent again: a summary or a roster question twice is worse than an
operator reading "uncertain" in `GET /api/v1/notices`.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from warnd.store.database import Database
from warnd.store.schema import notices


class NoticeState(str, enum.Enum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNCERTAIN = "uncertain"  # in flight at a crash: may have gone out, not sent again


@dataclass(frozen=True)
class Due:
    id: int
    channel: str
    address: str
    body: str


class NoticeStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim(self, channels: list[str], limit: int, now: datetime) -> list[Due]:
        """Up to `limit` pending notices of these channels, oldest first, now `sending`."""
        n = notices.c
        async with self.db.write() as conn:
            ids = (await conn.execute(sa.select(n.id).where(n.state == NoticeState.PENDING.value,
                                                           n.channel.in_(channels))
                                      .order_by(n.id).limit(limit))).scalars().all()
            if not ids:
                return []
            taken = (await conn.execute(
                sa.update(notices).where(n.id.in_(ids), n.state == NoticeState.PENDING.value)
                .values(state=NoticeState.SENDING.value, updated_at=now)
                .returning(n.id, n.channel, n.address, n.body))).all()
        return sorted((Due(*row) for row in taken), key=lambda d: d.id)

    async def settle(self, notice_id: int, state: NoticeState, now: datetime) -> None:
        n = notices.c
        async with self.db.write() as conn:
            await conn.execute(sa.update(notices).where(n.id == notice_id, n.state == NoticeState.SENDING.value)
                               .values(state=state.value, updated_at=now))

    async def abandon_stale(self, now: datetime, lease: timedelta) -> int:
        """`sending` for longer than `lease` (its node died mid-send): uncertain, not sent again."""
        n = notices.c
        async with self.db.write() as conn:
            return (await conn.execute(sa.update(notices).where(n.state == NoticeState.SENDING.value,
                                                                n.updated_at < now - lease)
                                       .values(state=NoticeState.UNCERTAIN.value, updated_at=now))).rowcount
