"""What warnd's own CAP feed (/feeds/cap.atom) may list: real warnings in force, newest first.

The database decides state, status and message type; the CAP scope (Public /
Restricted / Private) lives only in the stored CAP, so the caller checks it on
the parsed alert (`Alert.drill_or_closed`, the one rule for public outlets).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from warnd.domain.model import MsgType, Status
from warnd.domain.states import WarningState
from warnd.store.database import Database
from warnd.store.schema import warnings

LISTED_TYPES = (MsgType.ALERT.value, MsgType.UPDATE.value)  # a Cancel ends its warning: the entry leaves
CHANGING_TYPES = (MsgType.UPDATE.value, MsgType.CANCEL.value)  # these take an earlier entry off the feed


@dataclass(frozen=True)
class FeedWarning:
    id: int
    sender: str
    identifier: str
    event: str
    headline: str | None
    level: int
    department: str | None
    updated: datetime  # when it was published (for an Update: the change)


def _in_force(now: datetime) -> list[sa.ColumnElement[bool]]:
    w = warnings.c
    return [w.state == WarningState.ACTIVE.value, w.status == Status.ACTUAL.value, w.msg_type.in_(LISTED_TYPES),
            w.published_at.is_not(None), sa.or_(w.expires.is_(None), w.expires > now)]


class CapFeedStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def in_force(self, now: datetime, limit: int, before: tuple[datetime, int] | None = None
                       ) -> list[FeedWarning]:
        """Real (Actual) Alerts and Updates in force and published, newest first; the page after
        `before` (the last one's (updated, id)) when given."""
        w = warnings.c
        q = (sa.select(w.id, w.sender, w.identifier, w.event, w.headline, w.level, w.department, w.published_at)
             .where(*_in_force(now)).order_by(w.published_at.desc(), w.id.desc()).limit(limit))
        if before is not None:
            at, wid = before
            q = q.where(sa.or_(w.published_at < at, sa.and_(w.published_at == at, w.id < wid)))
        async with self.db.read() as conn:
            return [FeedWarning(r.id, r.sender, r.identifier, r.event, r.headline, r.level, r.department,
                                r.published_at) for r in await conn.execute(q)]

    async def last_removal(self, now: datetime) -> datetime | None:
        """The latest time an entry may have left the feed: an Update or Cancel published, a
        warning's expiry passed. With the entries' own times this is the feed's Last-Modified,
        so a conditional GET by date alone still sees a cancelled warning go."""
        w = warnings.c
        published = [WarningState.ACTIVE.value, WarningState.SUPERSEDED.value, WarningState.CANCELLED.value,
                     WarningState.EXPIRED.value]
        changed = sa.select(sa.func.max(w.published_at)).where(
            w.status == Status.ACTUAL.value, w.msg_type.in_(CHANGING_TYPES), w.published_at.is_not(None),
            w.published_at <= now)
        expired = sa.select(sa.func.max(w.expires)).where(
            w.status == Status.ACTUAL.value, w.state.in_(published), w.published_at.is_not(None),
            w.expires <= now)
        async with self.db.read() as conn:
            times = [(await conn.execute(q)).scalar() for q in (changed, expired)]
        return max((t for t in times if t is not None), default=None)

    async def cap_xml(self, warning_id: int, now: datetime) -> str | None:
        """The stored CAP of a warning the feed may list (None otherwise: nothing else is served)."""
        w = warnings.c
        q = sa.select(w.cap_xml).where(w.id == warning_id, *_in_force(now))
        async with self.db.read() as conn:
            return (await conn.execute(q)).scalar()
