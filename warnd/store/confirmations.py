"""Confirmation requirements: who still has to answer, and recording their answers."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from warnd.domain.confirmation import OpenItem
from warnd.domain.model import Level
from warnd.store import audit
from warnd.store.database import Database
from warnd.store.escalation import stop_grids
from warnd.store.schema import confirmations, deliveries, people, warnings
from warnd.store.schema import inbound as inbound_table


def _open_items(of_warning: bool) -> sa.Select:
    """Open requirements of some people (bound: person_ids, warning_id), newest warning first.

    A union of two selects, one index each: with an OR of the two columns SQLite read
    every open requirement. Built once: building the union cost more than running it.
    """
    c, w = confirmations.c, warnings.c

    def answering_as(who: sa.Column) -> sa.Select:
        q = (sa.select(c.id, c.warning_id, w.event, w.level, c.created_at).join(warnings, w.id == c.warning_id)
             .where(who.in_(sa.bindparam("person_ids", expanding=True)), c.state == "open", w.state == "active"))
        return q.where(c.warning_id == sa.bindparam("warning_id")) if of_warning else q

    both = sa.union(answering_as(c.person_id), answering_as(c.backup_id)).subquery()
    return sa.select(both).order_by(both.c.warning_id.desc(), both.c.id)


OPEN_ITEMS = {False: _open_items(False), True: _open_items(True)}


@dataclass(frozen=True)
class Inbound:
    """What came in: a reply, a key press, a click, an operator's record."""

    at: datetime
    channel: str  # sms / voice / link / operator
    from_address: str
    body: str
    person_id: str | None
    delivery_id: int | None = None
    provider_ref: str | None = None


class ConfirmationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def people_by_phone(self, phone: str) -> list[tuple[str, str]]:
        """(person id, language) of everyone with this number."""
        async with self.db.read() as conn:
            rows = await conn.execute(sa.select(people.c.id, people.c.language).where(people.c.phone == phone))
            return [(r.id, r.language) for r in rows]

    async def open_items(self, person_ids: list[str], warning_id: int | None = None,
                         asked_by: datetime | None = None) -> list[OpenItem]:
        """Open requirements a person answers for (as responsible or backup), newest warning
        first; with `asked_by`, only those that existed then (a reply fetched late answers
        what was open when it was sent, not a warning issued since)."""
        if not person_ids:
            return []
        q, params = OPEN_ITEMS[warning_id is not None], {"person_ids": person_ids, "warning_id": warning_id}
        async with self.db.read() as conn:
            return [OpenItem(r.id, r.warning_id, r.event, Level(r.level).zh) for r in await conn.execute(q, params)
                    if asked_by is None or r.created_at is None or r.created_at <= asked_by]

    async def newest_provider_inbound(self, channel: str) -> datetime | None:
        """When the newest message a provider passed on (one with its reference) was received."""
        i = inbound_table.c
        async with self.db.read() as conn:
            return (await conn.execute(sa.select(sa.func.max(i.at)).where(
                i.channel == channel, i.provider_ref.is_not(None)))).scalar()

    async def answer(self, inbound: Inbound, ids: list[int], outcome: Callable[[int], str], *,
                     confirm: bool = True, confirmed_by: str | None = None, reason: str | None = None,
                     actor: str | None = None, action: str = "confirmation.record") -> int | None:
        """Record what came in and (`confirm`) confirm `ids` (open → confirmed, late if past the
        deadline), in one transaction shared with other answers (group commit): with it, the
        rest of the grids' ladders skipped and their queued sends cancelled. A repeat
        changes nothing. `outcome(confirmed)` names the inbound row's outcome; returns how
        many requirements this answer confirmed. With an `actor` it is audited as `action`
        (an operator's record, a person's click on a link), in that same transaction.

        A provider's message is applied once: with a `provider_ref` (MessageSid, CallSid) that
        is already recorded for the channel, nothing changes and None is returned. The row is
        written first, so a replay confirms nothing, not even a warning opened since (the
        `ids` it was given are the open ones of now)."""
        c = confirmations.c

        async def work(conn: AsyncConnection) -> int | None:
            expected = outcome(len(ids) if confirm else 0)  # the outcome unless some were answered meanwhile
            row_id = await self._record(conn, inbound, ids, expected)
            if row_id is None:
                return None
            done: list[int] = []
            if confirm and ids:
                done = list((await conn.execute(
                    sa.update(confirmations).where(c.id.in_(ids), c.state == "open")
                    .values(state="confirmed", confirmed_at=inbound.at,
                            confirmed_by=confirmed_by or inbound.person_id,
                            channel=inbound.channel, late=c.deadline < inbound.at, reason=reason,
                            version=c.version + 1)
                    .returning(c.id))).scalars())
                await stop_grids(conn, done, inbound.at, "confirmed")
            if outcome(len(done)) != expected:
                await conn.execute(sa.update(inbound_table).where(inbound_table.c.id == row_id)
                                   .values(outcome=outcome(len(done))))
            if actor is not None:  # who, and on someone's behalf why; last in the work (see audit)
                await audit.append(conn, self.db, inbound.at, actor, action, f"confirmations:{ids}",
                                   {"person_id": inbound.person_id, "channel": inbound.channel, "reason": reason,
                                    "confirmed": done})
            return len(done)

        return await self.db.write_grouped(work)

    async def _record(self, conn: AsyncConnection, inbound: Inbound, ids: list[int], outcome: str) -> int | None:
        """Insert the inbound row; its id, or None when (channel, provider_ref) is already recorded.

        ON CONFLICT DO NOTHING, not a caught IntegrityError: on PostgreSQL no error aborts the
        group's transaction, and a second node's copy waits for the first's commit and then
        finds it. Rows without a provider_ref (links, operators) never conflict."""
        i = inbound_table.c
        insert = (sqlite.insert if self.db.is_sqlite else postgresql.insert)(inbound_table).values(
            at=inbound.at, channel=inbound.channel, from_address=inbound.from_address,
            body=inbound.body[:2000], outcome=outcome, confirmation_ids=ids,
            person_id=inbound.person_id, delivery_id=inbound.delivery_id, provider_ref=inbound.provider_ref)
        return (await conn.execute(insert.on_conflict_do_nothing(index_elements=[i.channel, i.provider_ref])
                                   .returning(i.id))).scalar()

    async def recipient_of(self, delivery_id: int) -> tuple[int, str, str] | None:
        """(warning id, recipient kind, recipient id) of a delivery."""
        d = deliveries.c
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(d.warning_id, d.recipient_kind, d.recipient_id)
                                      .where(d.id == delivery_id))).first()
        return tuple(row) if row else None
