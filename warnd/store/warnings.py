"""The outbox: a warning, every delivery and every confirmation in one transaction.

`submit` is the only way a warning enters the database. It de-duplicates by
(sender, identifier), applies the lifecycle of Update/Cancel to the earlier
versions (pending sends superseded or cancelled, open confirmations closed),
and writes the plan. Once it returns, nothing of it can be lost.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from warnd.clock import Clock
from warnd.domain.delivery import REACHED, State
from warnd.domain.model import MsgType, ParsedAlert
from warnd.domain.model import Level
from warnd.domain.planning import Plan, PlannedDelivery, Prior
from warnd.store import audit
from warnd.store.bulk import insert_rows
from warnd.store.database import Database
from warnd.store.escalation import skip_warnings, write_ladders
from warnd.store.schema import confirmations, deliveries, warnings
from warnd_channels.base import Recipient

Planner = Callable[[Prior], Plan]


@dataclass(frozen=True)
class Submitted:
    warning_id: int
    created: bool  # False: the same (sender, identifier) was already stored


class WarningStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def submit(self, parsed: ParsedAlert, level: int, event: str, headline: str | None,
                     department: str, planner: Planner) -> Submitted:
        alert = parsed.alert
        try:
            async with self.db.write() as conn:
                existing = await self._find(conn, alert.sender, alert.identifier)
                if existing is not None:
                    return Submitted(existing, False)
                chain = await self._chain(conn, alert)
                plan = planner(await self._prior(conn, chain))
                now = self.clock.now()
                root = await self._root_of(conn, chain)
                wid = await self._insert_warning(conn, parsed, level, event, headline, department,
                                                 plan, root, chain[-1] if chain else None, now)
                if chain:
                    await self._retire(conn, chain, alert.msg_type, now)
                await self._insert_deliveries(conn, wid, level, alert.expires, plan, now)
                await self._insert_confirmations(conn, wid, plan, now)
                await audit.append(conn, self.db, now, department, f"warning.{alert.msg_type.value.lower()}",
                                   f"warning:{wid}", {"sender": alert.sender, "identifier": alert.identifier,
                                                      "deliveries": len(plan.deliveries)})
                return Submitted(wid, True)
        except IntegrityError:
            # Two identical submissions raced; the other one won. Return its row.
            async with self.db.read() as conn:
                existing = await self._find(conn, alert.sender, alert.identifier)
            if existing is None:
                raise
            return Submitted(existing, False)

    @staticmethod
    async def _find(conn: AsyncConnection, sender: str, identifier: str) -> int | None:
        q = sa.select(warnings.c.id).where(warnings.c.sender == sender, warnings.c.identifier == identifier)
        return (await conn.execute(q)).scalar()

    async def _chain(self, conn: AsyncConnection, alert) -> list[int]:  # noqa: ANN001
        """Ids of every stored warning in the referenced chains, oldest first."""
        if not alert.references:
            return []
        refs = [(r.sender, r.identifier) for r in alert.references]
        q = sa.select(warnings.c.id, warnings.c.root_id).where(
            sa.tuple_(warnings.c.sender, warnings.c.identifier).in_(refs))
        rows = (await conn.execute(q)).all()
        roots = {r.root_id or r.id for r in rows}
        if not roots:
            return []
        q = sa.select(warnings.c.id).where(sa.or_(warnings.c.id.in_(roots), warnings.c.root_id.in_(roots)))
        return sorted((await conn.execute(q)).scalars())

    @staticmethod
    async def _root_of(conn: AsyncConnection, chain: list[int]) -> int | None:
        if not chain:
            return None
        q = sa.select(warnings.c.id, warnings.c.root_id).where(warnings.c.id == chain[0])
        row = (await conn.execute(q)).one()
        return row.root_id or row.id

    async def _prior(self, conn: AsyncConnection, chain: list[int]) -> Prior:
        if not chain:
            return Prior()
        latest = (await conn.execute(sa.select(warnings.c.level).where(warnings.c.id == chain[-1]))).scalar_one()
        c = confirmations.c
        done = await conn.execute(sa.select(c.grid).where(c.warning_id.in_(chain),
                                                          c.state.in_(["confirmed", "covered"])))
        return Prior(await self._reached(conn, chain), Level(latest), frozenset(r.grid for r in done))

    @staticmethod
    async def _reached(conn: AsyncConnection, chain: list[int]) -> tuple[PlannedDelivery, ...]:
        """Who may already hold an earlier version: they get the update or cancel."""
        if not chain:
            return ()
        d = deliveries.c
        q = (sa.select(d.channel, d.recipient_kind, d.recipient_id, d.address, d.language)
             .where(d.warning_id.in_(chain), d.state.in_([s.value for s in REACHED])).distinct())
        return tuple(PlannedDelivery(r.channel, Recipient(r.recipient_kind, r.recipient_id, r.address, r.language))
                     for r in await conn.execute(q))

    @staticmethod
    async def _insert_warning(conn: AsyncConnection, parsed: ParsedAlert, level: int, event: str,
                              headline: str | None, department: str, plan: Plan, root: int | None,
                              previous: int | None, now: datetime) -> int:
        alert = parsed.alert
        state = "expired" if alert.expires is not None and alert.expires <= now else "active"
        values = dict(
            sender=alert.sender, identifier=alert.identifier, sent=alert.sent, status=alert.status.value,
            msg_type=alert.msg_type.value, level=level, event=event, headline=headline,
            expires=alert.expires, state=state, root_id=root, previous_id=previous, department=department,
            cap_xml=parsed.cap_xml, regions=list(plan.regions), created_at=now, version=1,
            notes=[{"code": n.code, "field": n.field, "en": n.message_en, "zh": n.message_zh}
                   for n in parsed.notes] + [{"code": "plan", "en": n} for n in plan.notes])
        result = await conn.execute(sa.insert(warnings).values(**values).returning(warnings.c.id))
        return result.scalar_one()

    @staticmethod
    async def _retire(conn: AsyncConnection, chain: list[int], msg_type: MsgType, now: datetime) -> None:
        """Earlier versions stop: no stale text leaves after the update is accepted."""
        cancel = msg_type is MsgType.CANCEL
        end = State.CANCELLED if cancel else State.SUPERSEDED
        d = deliveries.c
        await conn.execute(sa.update(deliveries)
                           .where(d.warning_id.in_(chain), d.state == State.PENDING.value)
                           .values(state=end.value, updated_at=now, done_at=now, version=d.version + 1))
        c = confirmations.c
        await conn.execute(sa.update(confirmations)
                           .where(c.warning_id.in_(chain), c.state == "open")
                           .values(state="closed", closed_reason=end.value, version=c.version + 1))
        w = warnings.c
        await conn.execute(sa.update(warnings).where(w.id.in_(chain), w.state == "active")
                           .values(state="cancelled" if cancel else "superseded", version=w.version + 1))
        await skip_warnings(conn, chain, end.value)

    @staticmethod
    async def _insert_deliveries(conn: AsyncConnection, wid: int, level: int, expires: datetime | None,
                                 plan: Plan, now: datetime) -> None:
        shared = dict(warning_id=wid, priority=level, state=State.PENDING.value, attempts=0, next_attempt_at=now,
                      expires=expires, created_at=now, updated_at=now, version=1)
        await insert_rows(conn, deliveries, shared, [
            dict(channel=p.channel, recipient_kind=p.recipient.kind, grid=p.grid, recipient_id=p.recipient.id,
                 address=p.recipient.address, language=p.recipient.language) for p in plan.deliveries])

    @staticmethod
    async def _insert_confirmations(conn: AsyncConnection, wid: int, plan: Plan, now: datetime) -> None:
        """Each grid's requirement, and its ladder snapshot: a few statements, however many grids."""
        if not plan.confirmations:
            return
        await insert_rows(conn, confirmations, dict(warning_id=wid, late=False, version=1, created_at=now), [
            dict(grid=c.grid, person_id=c.person_id, backup_id=c.backup_id, deadline=c.deadline,
                 state="confirmed" if c.carried else "open", confirmed_at=now if c.carried else None,
                 channel="carried" if c.carried else None) for c in plan.confirmations])
        # The ids the rows were given. A plan has one requirement per grid, and this
        # transaction made the warning, so (warning, grid) names each of them.
        c = confirmations.c
        ids = dict((await conn.execute(sa.select(c.grid, c.id).where(c.warning_id == wid))).all())
        await write_ladders(conn, [(ids[p.grid], wid, p.grid, p.rungs) for p in plan.confirmations])
