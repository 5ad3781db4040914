"""Confirmation requirements: who still has to answer, and recording their answers."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from warnd.domain.confirmation import OpenItem
from warnd.domain.model import Level
from warnd.store import audit
from warnd.store.database import Database
from warnd.store.escalation import stop_grids
from warnd.store.schema import confirmations, deliveries, inbound, people, warnings


class ConfirmationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def people_by_phone(self, phone: str) -> list[tuple[str, str]]:
        """(person id, language) of everyone with this number."""
        async with self.db.read() as conn:
            rows = await conn.execute(sa.select(people.c.id, people.c.language).where(people.c.phone == phone))
            return [(r.id, r.language) for r in rows]

    async def open_items(self, person_ids: list[str], warning_id: int | None = None) -> list[OpenItem]:
        """Open requirements a person answers for (as responsible or backup), newest warning first."""
        if not person_ids:
            return []
        c, w = confirmations.c, warnings.c
        q = (sa.select(c.id, c.warning_id, w.event, w.level)
             .join(warnings, w.id == c.warning_id)
             .where(c.state == "open", w.state == "active",
                    sa.or_(c.person_id.in_(person_ids), c.backup_id.in_(person_ids)))
             .order_by(c.warning_id.desc(), c.id))
        if warning_id is not None:
            q = q.where(c.warning_id == warning_id)
        async with self.db.read() as conn:
            return [OpenItem(r.id, r.warning_id, r.event, Level(r.level).zh) for r in await conn.execute(q)]

    async def confirm(self, ids: list[int], person_id: str, channel: str, now: datetime,
                      reason: str | None = None, actor: str | None = None) -> int:
        """Open → confirmed (late if past the deadline) and, in the same transaction, the rest of
        the ladder skipped and queued sends to the grid cancelled; a repeat changes nothing."""
        if not ids:
            return 0
        c = confirmations.c
        async with self.db.write() as conn:
            done = list((await conn.execute(
                sa.update(confirmations).where(c.id.in_(ids), c.state == "open")
                .values(state="confirmed", confirmed_at=now, confirmed_by=person_id, channel=channel,
                        late=c.deadline < now, reason=reason, version=c.version + 1)
                .returning(c.id))).scalars())
            await stop_grids(conn, done, now, "confirmed")
            if actor is not None:  # recorded on someone's behalf: the audit log says who and why
                await audit.append(conn, self.db, now, actor, "confirmation.record", f"confirmations:{ids}",
                                   {"person_id": person_id, "channel": channel, "reason": reason,
                                    "confirmed": done})
            return len(done)

    async def recipient_of(self, delivery_id: int) -> tuple[int, str, str] | None:
        """(warning id, recipient kind, recipient id) of a delivery."""
        d = deliveries.c
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(d.warning_id, d.recipient_kind, d.recipient_id)
                                      .where(d.id == delivery_id))).first()
        return tuple(row) if row else None

    async def record(self, *, at: datetime, channel: str, from_address: str, body: str, outcome: str,
                     confirmation_ids: list[int], person_id: str | None = None, delivery_id: int | None = None,
                     provider_ref: str | None = None) -> None:
        async with self.db.write() as conn:
            await conn.execute(sa.insert(inbound).values(
                at=at, channel=channel, from_address=from_address, body=body[:2000], outcome=outcome,
                confirmation_ids=confirmation_ids, person_id=person_id, delivery_id=delivery_id,
                provider_ref=provider_ref))
