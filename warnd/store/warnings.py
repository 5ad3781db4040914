"""The outbox: a warning, every delivery and every confirmation in one transaction.

`submit` is the only way a warning enters the database. A warning that needs
approval is stored held (`awaiting`): nothing planned, nothing sent; the last
approval publishes it (`approve`), in the same transaction as that approval.
Publishing de-duplicates by (sender, identifier), applies the lifecycle of Update/Cancel to the earlier
versions (pending sends superseded or cancelled, open confirmations closed),
and writes the plan, in which an Update carries the work done over to the new
version (store/updates, domain/updates). Once it returns, nothing of it can be lost.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from warnd.clock import Clock
from warnd.domain.authority import Referenced, Scope, approval_rule
from warnd.domain.delivery import REACHED, State
from warnd.domain.errors import WarndError, error
from warnd.domain.model import Alert, Level, MsgType, ParsedAlert
from warnd.domain.planning import Plan, PlannedDelivery, Prior
from warnd.domain.states import CONFIRMATION, DELIVERY, WARNING, ConfirmationState, WarningState
from warnd.store import audit
from warnd.store.bulk import insert_rows, insert_rows_chunked
from warnd.store.database import Database
from warnd.store.escalation import skip_warnings, write_ladders
from warnd.store.schema import alarms, approvals, confirmations, deliveries, warnings
from warnd.store.transitions import transition
from warnd.store.updates import carry_work, changed_meanwhile, prior_grids
from warnd_channels.base import Recipient

Planner = Callable[[Prior], Plan]


@dataclass(frozen=True)
class Submitted:
    warning_id: int
    created: bool  # False: the same (sender, identifier) was already stored
    awaiting: bool = False  # held for approval: nothing planned, nothing sent


@dataclass(frozen=True)
class Decided:
    """What an approval or rejection did."""

    warning_id: int
    state: str  # awaiting (more approvals needed) / active / expired / rejected
    approvals: int
    needed: int


HELD = (WarningState.AWAITING.value, WarningState.REJECTED.value)  # never published: not part of any chain
class WarningStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def submit(self, parsed: ParsedAlert, level: int, event: str, headline: str | None,
                     scope: Scope, planner: Planner, needed: int = 0) -> Submitted:
        """Store a warning; with `needed` approvals it waits, else it is planned and published now."""
        alert = parsed.alert
        try:
            async with self.db.write() as conn:
                existing = await self._find(conn, alert.sender, alert.identifier)
                if existing is not None:
                    if existing[1] != scope.department:
                        raise error("auth.identifier_taken", "identifier",
                                    f"{alert.sender},{alert.identifier} is a warning of another department",
                                    f"{alert.sender},{alert.identifier} 是其他单位的预警")
                    return Submitted(existing[0], False)
                now = self.clock.now()
                chain = await self._chain(conn, alert)
                wid = await self._insert_warning(conn, parsed, level, event, headline, scope, needed,
                                                 await self._root_of(conn, chain), chain[-1] if chain else None, now)
                await audit.append(conn, self.db, now, scope.who, f"warning.{alert.msg_type.value.lower()}",
                                   f"warning:{wid}", {"sender": alert.sender, "identifier": alert.identifier,
                                                      "department": scope.department, "level": Level(level).label,
                                                      "approvals_needed": needed})
                if needed:
                    return Submitted(wid, True, awaiting=True)
                await self._publish(conn, wid, alert, planner, now)
                return Submitted(wid, True)
        except IntegrityError:
            # Two identical submissions raced; the other one won. Return its row.
            async with self.db.read() as conn:
                existing = await self._find(conn, alert.sender, alert.identifier)
            if existing is None:
                raise
            return Submitted(existing[0], False)

    async def approve(self, warning_id: int, alert: Alert, approver: Scope, planner: Planner) -> Decided:
        """One person's approval; the last one needed publishes the warning in the same transaction."""
        now = self.clock.now()
        async with self.db.write() as conn:
            row = await self._held(conn, warning_id)
            done = await self._approvers(conn, warning_id)
            if (refused := approval_rule(approver, row.submitted_by, done)) is not None:
                raise refused
            await conn.execute(sa.insert(approvals).values(warning_id=warning_id, approver=approver.user,
                                                           decision="approved", at=now))
            count = len(done) + 1
            await audit.append(conn, self.db, now, approver.who, "warning.approve", f"warning:{warning_id}",
                               {"approvals": count, "needed": row.approvals_needed})
            if count < row.approvals_needed:
                return Decided(warning_id, WarningState.AWAITING.value, count, row.approvals_needed)
            await conn.execute(sa.update(warnings).where(warnings.c.id == warning_id).values(approved_at=now))
            state = await self._publish(conn, warning_id, alert, planner, now)
            return Decided(warning_id, state, count, row.approvals_needed)

    async def reject(self, warning_id: int, approver: Scope, reason: str) -> Decided:
        now = self.clock.now()
        async with self.db.write() as conn:
            row = await self._held(conn, warning_id)
            if approver.user is not None:
                await conn.execute(sa.insert(approvals).values(warning_id=warning_id, approver=approver.user,
                                                               decision="rejected", reason=reason, at=now))
            w = warnings.c
            await conn.execute(transition(WARNING, WarningState.REJECTED).where(w.id == warning_id)
                               .values(rejected_reason=reason))
            await audit.append(conn, self.db, now, approver.who, "warning.reject", f"warning:{warning_id}",
                               {"reason": reason})
            return Decided(warning_id, WarningState.REJECTED.value, len(await self._approvers(conn, warning_id)),
                           row.approvals_needed)

    async def refused(self, alert: Alert, scope: Scope, err: WarndError) -> None:
        """A submission refused for authority is itself a record (who tried what)."""
        now = self.clock.now()
        async with self.db.write() as conn:
            await audit.append(conn, self.db, now, scope.who, "warning.refused", f"{alert.sender},{alert.identifier}",
                               {"code": err.code, "department": scope.department, "msg_type": alert.msg_type.value,
                                "fields": [p.field for p in err.problems]})

    async def overdue_approvals(self, older_than: datetime) -> list[int]:
        """Warnings waiting for approval since before `older_than` with no alarm raised for it yet."""
        w, a = warnings.c, alarms.c
        raised = sa.select(a.warning_id).where(a.code == "approval.overdue", a.warning_id.is_not(None))
        q = sa.select(w.id).where(w.state == WarningState.AWAITING.value, w.created_at < older_than,
                                  w.id.not_in(raised))
        async with self.db.read() as conn:
            return list((await conn.execute(q)).scalars())

    async def raise_overdue(self, warning_id: int, minutes: float) -> bool:
        now = self.clock.now()
        async with self.db.write() as conn:
            a = alarms.c
            seen = (await conn.execute(sa.select(a.id).where(a.code == "approval.overdue",
                                                             a.warning_id == warning_id))).first()
            state = (await conn.execute(sa.select(warnings.c.state).where(warnings.c.id == warning_id))).scalar()
            if seen is not None or state != WarningState.AWAITING:
                return False
            await conn.execute(sa.insert(alarms).values(at=now, code="approval.overdue", warning_id=warning_id,
                                                        detail={"waiting_minutes": minutes}))
            await audit.append(conn, self.db, now, "system", "alarm.raise", f"warning:{warning_id}",
                               {"code": "approval.overdue"})
        return True

    async def cap_of(self, warning_id: int) -> str | None:
        """The stored CAP XML of a warning, or None if there is no such warning."""
        async with self.db.read() as conn:
            return (await conn.execute(sa.select(warnings.c.cap_xml).where(warnings.c.id == warning_id))).scalar()

    async def referenced(self, alert: Alert) -> list[Referenced]:
        """The stored warnings this message references, and the first warning of each of their chains."""
        if not alert.references:
            return []
        w = warnings.c
        refs = [(r.sender, r.identifier) for r in alert.references]
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(w.id, w.root_id).where(sa.tuple_(w.sender, w.identifier).in_(refs)))).all()
            ids = {r.id for r in rows} | {r.root_id for r in rows if r.root_id}
            if not ids:
                return []
            found = await conn.execute(sa.select(w.id, w.department, w.regions).where(w.id.in_(ids)).order_by(w.id))
            return [Referenced(r.id, r.department, tuple(r.regions or ())) for r in found]

    async def _held(self, conn: AsyncConnection, warning_id: int):  # noqa: ANN202 - a Row
        q = sa.select(warnings).where(warnings.c.id == warning_id)
        if not self.db.is_sqlite:
            q = q.with_for_update()  # two approvers at once: one waits, then sees the other's row
        row = (await conn.execute(q)).first()
        if row is None:
            raise WarndError("warning.not_found")
        if row.state != WarningState.AWAITING:
            raise error("approval.not_pending", "state", f"warning {warning_id} is {row.state}",
                        f"预警 {warning_id} 当前状态为 {row.state}")
        return row

    @staticmethod
    async def _approvers(conn: AsyncConnection, warning_id: int) -> set[str]:
        a = approvals.c
        q = sa.select(a.approver).where(a.warning_id == warning_id, a.decision == "approved")
        return set((await conn.execute(q)).scalars())

    async def _publish(self, conn: AsyncConnection, wid: int, alert: Alert, planner: Planner, now: datetime) -> str:
        """Plan and write every delivery and confirmation; earlier versions stop. Returns the new state."""
        chain = [c for c in await self._chain(conn, alert) if c != wid]
        prior = await self._prior(conn, chain)
        plan = planner(prior)
        state = (WarningState.EXPIRED if alert.expires is not None and alert.expires <= now
                 else WarningState.ACTIVE)
        notes = (await conn.execute(sa.select(warnings.c.notes).where(warnings.c.id == wid))).scalar_one()
        await conn.execute(transition(WARNING, state, within=(WarningState.AWAITING,))
                           .where(warnings.c.id == wid).values(
            regions=list(plan.regions), published_at=now,
            notes=list(notes) + [{"code": "plan", "en": n} for n in plan.notes]))
        if chain:
            await self._retire(conn, chain, alert.msg_type, now)
            # Another node may have fired a rung or recorded an answer while the retirement waited.
            if (grids := await changed_meanwhile(conn, dict(prior.grids))) is not None:
                plan = planner(dataclasses.replace(prior, grids=grids))
        level = (await conn.execute(sa.select(warnings.c.level).where(warnings.c.id == wid))).scalar_one()
        await self._insert_deliveries(conn, wid, level, alert.expires, plan, now)
        ids = await self._insert_confirmations(conn, wid, plan, now)
        detail = {"deliveries": len(plan.deliveries), "confirmations": len(plan.confirmations)}
        if prior.grids:  # an Update: what it kept of the work done (see domain/updates)
            detail.update(await carry_work(conn, wid, level, alert.expires, plan, ids, prior.grids, now))
        await audit.append(conn, self.db, now, "system", "warning.publish", f"warning:{wid}", detail)
        return state.value

    @staticmethod
    async def _find(conn: AsyncConnection, sender: str, identifier: str) -> tuple[int, str | None] | None:
        q = sa.select(warnings.c.id, warnings.c.department).where(warnings.c.sender == sender,
                                                                  warnings.c.identifier == identifier)
        row = (await conn.execute(q)).first()
        return None if row is None else (row.id, row.department)

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
        q = sa.select(warnings.c.id).where(sa.or_(warnings.c.id.in_(roots), warnings.c.root_id.in_(roots)),
                                           warnings.c.state.not_in(HELD))
        return sorted((await conn.execute(q)).scalars())

    @staticmethod
    async def _root_of(conn: AsyncConnection, chain: list[int]) -> int | None:
        if not chain:
            return None
        q = sa.select(warnings.c.id, warnings.c.root_id).where(warnings.c.id == chain[0])
        row = (await conn.execute(q)).one()
        return row.root_id or row.id

    async def prior_of(self, alert: Alert) -> Prior:
        """What an Update or Cancel's earlier versions left, read without locks (previews)."""
        async with self.db.read() as conn:
            return await self._prior(conn, await self._chain(conn, alert), lock=False)

    async def _prior(self, conn: AsyncConnection, chain: list[int], lock: bool | None = None) -> Prior:
        if not chain:
            return Prior()
        latest = (await conn.execute(sa.select(warnings.c.level).where(warnings.c.id == chain[-1]))).scalar_one()
        grids = await prior_grids(conn, chain, lock=not self.db.is_sqlite if lock is None else lock)
        return Prior(await self._reached(conn, chain), Level(latest), grids)

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
                              headline: str | None, scope: Scope, needed: int, root: int | None,
                              previous: int | None, now: datetime) -> int:
        """The warning row, held: `_publish` makes it active (at once, or on the last approval)."""
        alert = parsed.alert
        values = dict(
            sender=alert.sender, identifier=alert.identifier, sent=alert.sent, status=alert.status.value,
            msg_type=alert.msg_type.value, level=level, event=event, headline=headline,
            expires=alert.expires, state=WarningState.AWAITING.value, root_id=root, previous_id=previous,
            department=scope.department, submitted_by=scope.who, approvals_needed=needed,
            cap_xml=parsed.cap_xml, regions=[], created_at=now, version=1,
            notes=[{"code": n.code, "field": n.field, "en": n.message_en, "zh": n.message_zh}
                   for n in parsed.notes])
        result = await conn.execute(sa.insert(warnings).values(**values).returning(warnings.c.id))
        return result.scalar_one()

    @staticmethod
    async def _retire(conn: AsyncConnection, chain: list[int], msg_type: MsgType, now: datetime) -> None:
        """Earlier versions stop: no stale text leaves after the update is accepted."""
        cancel = msg_type is MsgType.CANCEL
        end = State.CANCELLED if cancel else State.SUPERSEDED
        d = deliveries.c
        await conn.execute(transition(DELIVERY, end).where(d.warning_id.in_(chain))
                           .values(updated_at=now, done_at=now))
        c = confirmations.c
        await conn.execute(transition(CONFIRMATION, ConfirmationState.CLOSED).where(c.warning_id.in_(chain))
                           .values(closed_reason=end.value))
        w = warnings.c
        ended = WarningState.CANCELLED if cancel else WarningState.SUPERSEDED
        await conn.execute(transition(WARNING, ended).where(w.id.in_(chain)))
        await skip_warnings(conn, chain, end.value)

    @staticmethod
    async def _insert_deliveries(conn: AsyncConnection, wid: int, level: int, expires: datetime | None,
                                 plan: Plan, now: datetime) -> None:
        shared = dict(warning_id=wid, priority=level, state=State.PENDING.value, attempts=0, next_attempt_at=now,
                      expires=expires, created_at=now, updated_at=now, version=1)
        rows = (dict(channel=p.channel, recipient_kind=p.recipient.kind, grid=p.grid, recipient_id=p.recipient.id,
                     address=p.recipient.address, language=p.recipient.language) for p in plan.deliveries)
        if any(p.params for p in plan.deliveries):  # a group message's mentions (rarely: the column stays NULL)
            rows = (row | {"params": dict(p.params) if p.params else None} for row, p in zip(rows, plan.deliveries))
        await insert_rows_chunked(conn, deliveries, shared, rows)

    @staticmethod
    async def _insert_confirmations(conn: AsyncConnection, wid: int, plan: Plan, now: datetime) -> dict[str, int]:
        """Each grid's requirement, and its ladder snapshot: a few statements, however many grids.

        A requirement an Update keeps goes on as it was: confirmed or covered (carried), or open
        with its deadline, 未叫醒 and uncovered marks and its ladder (see domain/updates).
        Returns the new requirements' ids by grid."""
        if not plan.confirmations:
            return {}
        shared = dict(warning_id=wid, late=False, version=1)
        opened = {**shared, "state": ConfirmationState.OPEN.value, "created_at": now}
        await insert_rows_chunked(conn, confirmations, opened, (
            dict(grid=p.grid, person_id=p.person_id, backup_id=p.backup_id, deadline=p.deadline)
            for p in plan.confirmations if p.kept is None))
        await insert_rows(conn, confirmations, shared, [
            dict(grid=p.grid, person_id=p.person_id, backup_id=p.backup_id, deadline=p.deadline, state=k.state,
                 confirmed_at=now if k.state == ConfirmationState.CONFIRMED else None,
                 covered_at=now if k.state == ConfirmationState.COVERED else None,
                 confirmed_by=k.confirmed_by, channel="carried" if p.carried else None, created_at=k.since or now,
                 not_woken_at=k.not_woken_at, uncovered_at=k.uncovered_at, uncovered_reason=k.uncovered_reason)
            for p in plan.confirmations if (k := p.kept) is not None])
        # The ids the rows were given. A plan has one requirement per grid, and this
        # transaction made the warning, so (warning, grid) names each of them.
        c = confirmations.c
        ids = dict((await conn.execute(sa.select(c.grid, c.id).where(c.warning_id == wid))).all())
        await write_ladders(conn, [(ids[p.grid], wid, p.grid, p.rungs) for p in plan.confirmations])
        return ids
