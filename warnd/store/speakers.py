"""Loudspeakers: presence, grids left uncovered by silent speakers, and re-broadcasts."""
from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from warnd.clock import Clock
from warnd.config import Config
from warnd.domain.delivery import State
from warnd.domain.escalation import snapshot
from warnd.domain.model import Level
from warnd.domain.sending import Audience, RecipientKind
from warnd.store.database import Database
from warnd.store.escalation import write_ladder
from warnd.store.schema import attempts, confirmations, deliveries, speaker_presence, warnings
from warnd_channels.registry import SPECS

WAITING = [s.value for s in (State.PENDING, State.SENDING, State.SENT, State.UNCERTAIN)]


def silent(since: datetime) -> sa.ColumnElement[bool]:
    """A speaker command with no played-ack that is overdue: published before `since` (its
    PUBACK written as `sent_at`, or handed and its result lost), or never published though
    warnd tried before `since` (the broker refused or was away: its attempts are logged).
    A command only planned, or claimed by a node that died before publishing, is not
    overdue: it is published after the restart and its time runs from then.
    (应答超时从每次下发起算，而非从计划起算。)"""
    d, a = deliveries.c, attempts.c
    published = sa.func.coalesce(d.sent_at, d.handed_at) < since
    tried = sa.and_(d.sent_at.is_(None), d.handed_at.is_(None),
                    sa.exists().where(a.delivery_id == d.id, a.started_at < since))
    return sa.or_(published, tried)


class SpeakerStore:
    def __init__(self, db: Database, clock: Clock, config: Config, channel: str | None = None) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        # the channel that reaches loudspeakers (its deliveries are the ones watched and replayed)
        self.channel = channel or next(n for n, s in SPECS.items() if s.audience is Audience.DEVICE)

    async def set_presence(self, speaker_id: str, online: bool, detail: str = "") -> None:
        now = self.clock.now()
        insert = (sqlite.insert if self.db.is_sqlite else postgresql.insert)(speaker_presence)
        stmt = insert.values(speaker_id=speaker_id, online=online, changed_at=now, detail=detail[:400])
        stmt = stmt.on_conflict_do_update(index_elements=[speaker_presence.c.speaker_id],
                                          set_={"online": online, "changed_at": now, "detail": detail[:400]})
        async with self.db.write() as conn:
            await conn.execute(stmt)

    async def offline(self) -> set[str]:
        async with self.db.read() as conn:
            rows = await conn.execute(sa.select(speaker_presence.c.speaker_id)
                                      .where(speaker_presence.c.online.is_(False)))
            return {r.speaker_id for r in rows}

    async def mark_uncovered(self) -> int:
        """Grids whose speakers are offline, failed, or silent past the ack timeout: mark, and escalate
        them by the "uncovered" ladder (written once, in the same transaction).

        The ack timeout runs from each publish (`silent`), not from planning: a command that
        went out late, after a restart, gets its full time to be played and acked."""
        now = self.clock.now()
        d, c, p = deliveries.c, confirmations.c, speaker_presence.c
        silent_since = now - timedelta(seconds=self.config.speaker.ack_timeout_seconds)
        reason = sa.case((d.state == State.FAILED.value, "play_failed"),
                         (p.online.is_(False), "speaker_offline"), else_="no_played_ack")
        q = (sa.select(c.id, c.warning_id, c.grid, sa.func.min(reason).label("reason"))
             .select_from(deliveries.join(confirmations, sa.and_(c.warning_id == d.warning_id, c.grid == d.grid))
                          .outerjoin(speaker_presence, p.speaker_id == d.recipient_id))
             .where(d.channel == self.channel, d.purpose == "warning", c.state == "open", c.uncovered_at.is_(None),
                    sa.or_(d.state == State.FAILED.value, p.online.is_(False),
                           sa.and_(d.state.in_(WAITING), silent(silent_since))))
             .group_by(c.id, c.warning_id, c.grid))
        ladder = self.config.ladder("uncovered")
        async with self.db.write() as conn:
            found = (await conn.execute(q)).all()
            for row in found:
                changed = (await conn.execute(sa.update(confirmations)
                                              .where(c.id == row.id, c.uncovered_at.is_(None))
                                              .values(uncovered_at=now, uncovered_reason=row.reason,
                                                      version=c.version + 1))).rowcount
                if changed:
                    await write_ladder(conn, row.id, row.warning_id, row.grid, snapshot("uncovered", ladder, now))
        return len(found)

    async def rebroadcast(self) -> int:
        """Replay warnings every N minutes (per level) to speakers of grids not yet confirmed."""
        now = self.clock.now()
        d, c, w = deliveries.c, confirmations.c, warnings.c
        created = 0
        async with self.db.write() as conn:
            for name, minutes in self.config.speaker.rebroadcast_minutes.items():
                due = now - timedelta(minutes=minutes)
                latest = (sa.select(d.warning_id, d.recipient_id, d.grid, sa.func.max(d.created_at).label("last"))
                          .join(warnings, w.id == d.warning_id)
                          .where(d.channel == self.channel, w.state == "active", w.msg_type != "Cancel",
                                 w.level == int(Level.parse(name)),
                                 sa.or_(w.expires.is_(None), w.expires > now))
                          .group_by(d.warning_id, d.recipient_id, d.grid).subquery())
                q = (sa.select(latest, d.address, d.language, d.priority, d.expires)
                     .join(deliveries, sa.and_(d.warning_id == latest.c.warning_id,
                                               d.recipient_id == latest.c.recipient_id,
                                               d.created_at == latest.c.last, d.channel == self.channel))
                     .where(latest.c.last <= due, ~sa.exists().where(
                         c.warning_id == latest.c.warning_id, c.grid == latest.c.grid, c.state != "open")))
                rows = (await conn.execute(q)).all()
                if rows:
                    await conn.execute(sa.insert(deliveries), [
                        dict(warning_id=r.warning_id, channel=self.channel, recipient_kind=RecipientKind.SPEAKER.value,
                             recipient_id=r.recipient_id, grid=r.grid, address=r.address, language=r.language,
                             priority=r.priority, state=State.PENDING.value, attempts=0, next_attempt_at=now,
                             expires=r.expires, created_at=now, updated_at=now, version=1, purpose="rebroadcast")
                        for r in rows])
                created += len(rows)
        return created


