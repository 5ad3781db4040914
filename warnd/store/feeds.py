"""What warnd knows of the CAP feeds it polls: each feed's status and every entry it saw.

Both are shared by every node on the database:
- a poll is *claimed* (compare-and-set on `next_poll_at`), so nodes polling the
  same feed take turns, and a backoff one node decided holds for all;
- an entry is recorded once handled (applied, or refused with its code), so a
  restart or another node neither fetches it again nor applies its CAP twice;
  `applied` answers for a (sender, identifier) across every feed;
- the operator alarm is raised by whoever first sets `alarmed_at`: once per run
  of failures, cleared by the next successful poll.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from warnd.store import audit
from warnd.store.database import Database
from warnd.store.schema import alarms, feed_entries, feed_status

DETAIL_CHARS = 500
ALARM = "feed.down"  # the operator alarm's code (alarms table, metrics, logs)
DUPLICATE = "duplicate"  # an entry whose CAP was applied before (from this feed, another, or the API)


@dataclass(frozen=True)
class FeedState:
    """A feed's row as a poll found it."""

    name: str
    created_at: datetime
    last_success_at: datetime | None
    consecutive_failures: int
    etag: str | None
    last_modified: str | None
    alarmed_at: datetime | None
    last_error_code: str | None


@dataclass(frozen=True)
class Seen:
    """One entry handled: applied (code None) or refused with an error code."""

    key: str
    ref: str
    sender: str | None = None
    identifier: str | None = None
    code: str | None = None
    detail: str | None = None
    warning_id: int | None = None


class FeedStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._insert = sqlite.insert if db.is_sqlite else postgresql.insert

    async def claim(self, name: str, now: datetime, hold_seconds: float) -> FeedState | None:
        """This node's turn to poll `name`, or None (another node's turn, or backing off)."""
        f = feed_status.c
        async with self.db.write() as conn:
            await conn.execute(self._insert(feed_status).values(name=name, created_at=now, consecutive_failures=0)
                               .on_conflict_do_nothing())
            row = (await conn.execute(
                sa.update(feed_status)
                .where(f.name == name, sa.or_(f.next_poll_at.is_(None), f.next_poll_at <= now))
                .values(last_poll_at=now, next_poll_at=now + timedelta(seconds=hold_seconds))
                .returning(f.name, f.created_at, f.last_success_at, f.consecutive_failures, f.etag,
                           f.last_modified, f.alarmed_at, f.last_error_code))).first()
        return None if row is None else FeedState(*row)

    async def state(self, name: str) -> FeedState | None:
        f = feed_status.c
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(f.name, f.created_at, f.last_success_at, f.consecutive_failures,
                                                f.etag, f.last_modified, f.alarmed_at, f.last_error_code)
                                      .where(f.name == name))).first()
        return None if row is None else FeedState(*row)

    async def succeeded(self, name: str, now: datetime, etag: str | None, last_modified: str | None,
                        new_alerts: int, refused: tuple[str, str] | None = None) -> bool:
        """A poll that read the index (or heard 304); True if it cleared a raised alarm.

        `refused`: the (code, detail) of an entry it refused, shown as the feed's last error."""
        f, a = feed_status.c, alarms.c
        code, detail = refused or (None, None)
        async with self.db.write() as conn:
            values = dict(last_success_at=now, consecutive_failures=0, last_error_code=code,
                          last_error_detail=detail[:DETAIL_CHARS] if detail else None,
                          etag=etag, last_modified=last_modified, alarmed_at=None)
            if new_alerts:
                values["last_new_alert_at"] = now
            cleared = (await conn.execute(sa.update(feed_status).where(f.name == name, f.alarmed_at.is_not(None))
                                          .values(**values))).rowcount == 1
            if not cleared:
                await conn.execute(sa.update(feed_status).where(f.name == name).values(**values))
                return False
            await conn.execute(sa.update(alarms).where(a.code == ALARM, a.grid.is_(None), a.acknowledged_at.is_(None),
                                                       a.detail["feed"].as_string() == name)
                               .values(acknowledged_at=now, acknowledged_by=f"feed:{name} recovered"))
            await audit.append(conn, self.db, now, "system", "alarm.clear", f"feed:{name}", {"code": ALARM})
        return True

    async def failed(self, name: str, code: str, detail: str, next_poll_at: datetime) -> int:
        """A failed poll; returns the failures in a row, this one included."""
        f = feed_status.c
        async with self.db.write() as conn:
            return (await conn.execute(
                sa.update(feed_status).where(f.name == name)
                .values(consecutive_failures=f.consecutive_failures + 1, last_error_code=code,
                        last_error_detail=detail[:DETAIL_CHARS], next_poll_at=next_poll_at)
                .returning(f.consecutive_failures))).scalar_one()

    async def raise_alarm(self, name: str, now: datetime, detail: dict) -> bool:
        """Raise the feed's operator alarm (an `alarms` row, audited); True for the one caller that
        raised it: it stays raised until a successful poll clears it."""
        f = feed_status.c
        async with self.db.write() as conn:
            if (await conn.execute(sa.update(feed_status).where(f.name == name, f.alarmed_at.is_(None))
                                   .values(alarmed_at=now))).rowcount != 1:
                return False
            await conn.execute(sa.insert(alarms).values(at=now, code=ALARM, detail={"feed": name, **detail}))
            await audit.append(conn, self.db, now, "system", "alarm.raise", f"feed:{name}", {"code": ALARM, **detail})
        return True

    async def seen(self, name: str, keys: list[str]) -> set[str]:
        """Which of these entry keys were handled before."""
        e = feed_entries.c
        found: set[str] = set()
        async with self.db.read() as conn:
            for start in range(0, len(keys), 500):
                rows = await conn.execute(sa.select(e.entry_key).where(e.feed == name,
                                                                       e.entry_key.in_(keys[start:start + 500])))
                found.update(r[0] for r in rows)
        return found

    async def applied(self, sender: str, identifier: str) -> bool:
        """Was this CAP applied from any feed?"""
        e = feed_entries.c
        async with self.db.read() as conn:
            return (await conn.execute(sa.select(e.id).where(e.sender == sender[:200], e.identifier == identifier[:200],
                                                             e.code.is_(None)).limit(1))).first() is not None

    async def record(self, name: str, seen: Seen, now: datetime) -> None:
        """Remember one handled entry (a second node recording the same entry changes nothing)."""
        async with self.db.write() as conn:
            await conn.execute(self._insert(feed_entries).values(
                feed=name, entry_key=seen.key, ref=seen.ref[:500], at=now,
                sender=seen.sender[:200] if seen.sender else None,
                identifier=seen.identifier[:200] if seen.identifier else None, code=seen.code,
                detail=seen.detail[:DETAIL_CHARS] if seen.detail else None, warning_id=seen.warning_id)
                .on_conflict_do_nothing())

    async def statuses(self) -> dict[str, dict]:
        """Every feed's status row and its entry counts, by feed name (for the API)."""
        e = feed_entries.c
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(feed_status))).mappings().all()
            counts = (await conn.execute(
                sa.select(e.feed, e.code, sa.func.count()).group_by(e.feed, e.code))).all()
        out = {r["name"]: {**r, "applied": 0, "duplicates": 0, "refused": 0} for r in rows}
        for feed, code, n in counts:
            if feed in out:
                out[feed]["applied" if code is None else "duplicates" if code == DUPLICATE else "refused"] += n
        return out

    async def entries(self, name: str, limit: int = 20) -> list[dict]:
        """The newest entries handled from one feed."""
        e = feed_entries.c
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(e.ref, e.at, e.sender, e.identifier, e.code, e.detail,
                                                 e.warning_id).where(e.feed == name)
                                       .order_by(e.id.desc()).limit(limit))).mappings().all()
        return [dict(r) for r in rows]
