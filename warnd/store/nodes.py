"""Node heartbeats: which incarnations (process lives) are alive.

Each running node beats every `dispatcher.heartbeat_seconds`; a clean stop
writes `stopped_at`. Another node may then take over the claims of an
incarnation that stopped, or whose beat is older than `takeover_seconds`, at
once, instead of waiting out the 60 s lease. A claim by an incarnation that
never registered (a node of an older version, during a rolling upgrade) still
waits for its lease: a node that does not beat is not known to be dead.
(节点心跳：停止或心跳超时的节点，其认领的发送立即由其他节点接管。)
"""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from warnd.clock import Clock
from warnd.domain.delivery import State
from warnd.store.database import Database
from warnd.store.schema import deliveries, nodes

KEEP_DAYS = 7  # rows of lives that ended longer ago are dropped when a node starts


class NodeStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def register(self, incarnation: str, node_id: str) -> None:
        """This life of a node begins: its first beat (and old lives are forgotten)."""
        now = self.clock.now()
        n = nodes.c
        async with self.db.write() as conn:
            await conn.execute(sa.delete(nodes).where(n.heartbeat_at < now - timedelta(days=KEEP_DAYS)))
            await conn.execute(sa.insert(nodes).values(incarnation=incarnation, node_id=node_id, started_at=now,
                                                       heartbeat_at=now))

    async def beat(self, incarnation: str) -> bool:
        """Still alive; False when this life was already marked stopped (it must not go on)."""
        n = nodes.c
        async with self.db.write() as conn:
            return (await conn.execute(sa.update(nodes)
                                       .where(n.incarnation == incarnation, n.stopped_at.is_(None))
                                       .values(heartbeat_at=self.clock.now()))).rowcount == 1

    async def stopped(self, incarnation: str) -> None:
        """A clean stop: whatever this life still holds may be taken over at once."""
        now = self.clock.now()
        async with self.db.write() as conn:
            await conn.execute(sa.update(nodes).where(nodes.c.incarnation == incarnation)
                               .values(stopped_at=now, heartbeat_at=now))

    async def dead_with_claims(self, takeover_seconds: float, me: str) -> list[str]:
        """Incarnations other than `me` that stopped or stopped beating, and still hold claims."""
        now = self.clock.now()
        n, d = nodes.c, deliveries.c
        stale = now - timedelta(seconds=takeover_seconds)
        q = (sa.select(n.incarnation)
             .where(n.incarnation != me, sa.or_(n.stopped_at.is_not(None), n.heartbeat_at < stale),
                    sa.exists().where(d.state == State.SENDING.value, d.claimed_by == n.incarnation))
             .order_by(n.incarnation))
        async with self.db.read() as conn:
            return list((await conn.execute(q)).scalars())

    async def all(self) -> list[dict]:
        """Every known life, newest first (operators, tests)."""
        async with self.db.read() as conn:
            rows = await conn.execute(sa.select(nodes).order_by(nodes.c.started_at.desc()))
            return [dict(r._mapping) for r in rows]
