"""Provider limits kept in the database, so that every node on it keeps to them together.

- `reserve`: a run of cells of a shared rate (warnd/domain/rate_limit.py): one
  UPDATE … RETURNING, atomic on both databases.
- `admit`: a claim's sends checked against their numbers' caps, in one transaction
  that locks the numbers' rows (in address order, so two nodes never wait on each
  other in a circle). Sends over a cap go back to `pending` in the same transaction,
  due when the cap allows, their attempt given back: nothing was sent.
- `requeue_refused`: sends the provider refused (429/5xx) back to `pending` without
  their attempt, the attempt logged, their numbers' admissions released.

All on the dispatcher's database thread (`Database.transact`), as claims are.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from warnd.domain import rate_limit
from warnd.domain.delivery import Decision, State
from warnd.store.database import Database, Tx
from warnd.store.deliveries import Claimed
from warnd.store.schema import attempts, deliveries, number_sends, rate_limits

ADDRESS_CHARS = 200  # number_sends.address
PRUNE_SECONDS = 3600.0  # numbers with no send inside their longest window are deleted this often


@dataclass(frozen=True)
class Refusal:
    """A send the provider refused: back to pending, its attempt not counted."""

    channel: str
    delivery_id: int
    attempt: int
    address: str
    started_at: datetime
    finished_at: datetime
    decision: Decision
    admitted_at: float | None  # when its number's caps admitted it (released now); None: no caps


class _Hot:
    def __init__(self, db: Database) -> None:
        insert = sqlite.insert if db.is_sqlite else postgresql.insert
        r, n, d, a = rate_limits.c, number_sends.c, deliveries.c, attempts.c
        floor = sa.bindparam("b_floor", type_=sa.Double)
        self.ensure_rate = db.prepare(insert(rate_limits).values(key=sa.bindparam("b_key"), tat=0.0)
                                      .on_conflict_do_nothing())
        self.reserve = db.prepare(
            sa.update(rate_limits).where(r.key == sa.bindparam("b_key"))
            .values(tat=sa.case((r.tat > floor, r.tat), else_=floor) + sa.bindparam("b_span", type_=sa.Double))
            .returning(r.tat))
        at = sa.bindparam("b_at", type_=n.updated_at.type)
        # The list in one parameter: a JSON array on SQLite (an IN list cannot be prepared),
        # an array on PostgreSQL.
        if db.is_sqlite:
            values = sa.func.json_each(sa.bindparam("b_addresses", type_=sa.String)).table_valued("value")
            given = sa.select(values.c.value).scalar_subquery()
            new = sa.select(sa.bindparam("b_channel"), values.c.value, sa.literal(""), at).where(sa.true())
        else:
            addresses = sa.bindparam("b_addresses", type_=postgresql.ARRAY(sa.String))
            given = sa.any_(addresses)
            new = sa.select(sa.bindparam("b_channel"), sa.func.unnest(addresses), sa.literal(""), at)
        # Rows for numbers not seen before, so that every number of the claim can be locked.
        # (SQLite's upsert after a SELECT needs its WHERE: a parsing rule.)
        self.ensure_number = db.prepare(
            insert(number_sends).from_select(["channel", "address", "sends", "updated_at"], new)
            .on_conflict_do_nothing())
        listed = n.address.in_(given) if db.is_sqlite else n.address == given
        self.history = db.prepare(sa.select(n.address, n.sends)
                                  .where(n.channel == sa.bindparam("b_channel"), listed)
                                  .order_by(n.address).with_for_update())
        self.record = db.prepare(sa.update(number_sends)
                                 .where(n.channel == sa.bindparam("b_channel"), n.address == sa.bindparam("b_address"))
                                 .values(sends=sa.bindparam("b_sends"), updated_at=at))
        self.prune = db.prepare(sa.delete(number_sends).where(
            n.channel == sa.bindparam("b_channel"),
            n.updated_at < sa.bindparam("b_before", type_=n.updated_at.type)))
        ours = sa.and_(d.id == sa.bindparam("b_id"), d.state == State.SENDING.value,
                       d.claimed_by == sa.bindparam("b_node"))
        # Back in the queue, due later, the claim's attempt given back: it sent nothing.
        self.requeue = db.prepare(
            sa.update(deliveries).where(ours)
            .values(state=State.PENDING.value, attempts=d.attempts - 1,
                    next_attempt_at=sa.bindparam("b_next", type_=d.next_attempt_at.type),
                    last_code=sa.bindparam("b_code"), last_detail=sa.bindparam("b_detail"),
                    claimed_by=None, lease_until=None, updated_at=at, version=d.version + 1))
        self.log = db.prepare(sa.insert(attempts).inline().values(
            delivery_id=sa.bindparam("b_id", type_=a.delivery_id.type),
            attempt=sa.bindparam("b_attempt", type_=a.attempt.type),
            node=sa.bindparam("b_node", type_=a.node.type),
            started_at=sa.bindparam("b_started", type_=a.started_at.type), finished_at=at,
            outcome=State.PENDING.value, code=sa.bindparam("b_code", type_=a.code.type),
            detail=sa.bindparam("b_detail", type_=a.detail.type)))


class LimitStore:
    def __init__(self, db: Database, node: str) -> None:
        self.db = db
        self.node = node  # "<node_id>/<incarnation>", as claims are marked
        self._hot: _Hot | None = None
        self._pruned: dict[str, float] = {}  # channel → when its numbers were last pruned (monotonic)

    def _statements(self) -> _Hot:
        if self._hot is None:
            self._hot = _Hot(self.db)
        return self._hot

    async def reserve(self, key: str, cells: int, rate: float, now: float, burst: float) -> float:
        """Reserve `cells` of the limit `key`; when the first of them starts (epoch seconds).
        They follow the last ones any node reserved, or start `burst` before `now` if the
        limit was idle (see warnd.domain.rate_limit)."""
        hot = self._statements()
        span = cells / rate

        def work(tx: Tx) -> float:
            with tx.together():
                tx.run(hot.ensure_rate, {"b_key": key})
                end = tx.rows(hot.reserve, {"b_key": key, "b_floor": now - burst, "b_span": span})[0][0]
            return float(end) - span

        return await self.db.transact(work)

    async def admit(self, channel: str, rows: Sequence[Claimed], windows: Sequence[rate_limit.Window],
                    now: datetime) -> rate_limit.Admission:
        """Which claimed rows may be sent now under their numbers' caps; the others are
        already back in the queue (see `rate_limit.admit`), due when the caps allow."""
        hot = self._statements()
        db = self.db
        at_epoch = round(now.timestamp(), 3)  # stored to the millisecond: a refusal releases this very stamp
        pairs = [(r.id, r.address[:ADDRESS_CHARS]) for r in rows]
        addresses = sorted({a for _, a in pairs})
        keep = max(seconds for seconds, _ in windows) + rate_limit.CAP_MARGIN_SECONDS
        prune = time.monotonic() - self._pruned.get(channel, float("-inf")) > PRUNE_SECONDS
        if prune:
            self._pruned[channel] = time.monotonic()

        def work(tx: Tx) -> rate_limit.Admission:
            at = db.stamp(now)
            if prune:
                tx.run(hot.prune, {"b_channel": channel, "b_before": db.stamp(now - timedelta(seconds=keep))})
            history = self._history(tx, channel, addresses, at)
            admission = rate_limit.admit(pairs, history, windows, at_epoch)
            with tx.together():
                tx.many(hot.record, [{"b_channel": channel, "b_address": a, "b_sends": rate_limit.encode(t),
                                      "b_at": at} for a, t in sorted(admission.history.items())])
                tx.many(hot.requeue, [{"b_id": x.delivery_id, "b_node": self.node, "b_code": "limit.per_number",
                                       "b_detail": f"{x.detail} until {_iso(x.until)}",
                                       "b_next": db.stamp(datetime.fromtimestamp(x.until, timezone.utc)),
                                       "b_at": at} for x in admission.deferred])
            return admission

        return await db.transact(work)

    async def requeue_refused(self, refusals: Sequence[Refusal]) -> int:
        """Refused sends back to `pending` (compare-and-set on the claim), due at their
        decision's time, their attempt given back and logged; how many were still ours."""
        if not refusals:
            return 0
        hot = self._statements()
        db = self.db

        def work(tx: Tx) -> int:
            rows = [{"b_id": r.delivery_id, "b_node": self.node, "b_attempt": r.attempt,
                     "b_next": db.stamp(r.decision.next_attempt_at or r.finished_at),
                     "b_code": r.decision.code, "b_detail": r.decision.detail[:2000],
                     "b_started": db.stamp(r.started_at), "b_at": db.stamp(r.finished_at)} for r in refusals]
            with tx.together():
                changed = tx.many(hot.requeue, rows)
                tx.many(hot.log, rows)
            count = changed.rowcount
            by_channel: dict[str, list[Refusal]] = {}
            for r in refusals:
                if r.admitted_at is not None:
                    by_channel.setdefault(r.channel, []).append(r)
            for channel, released in by_channel.items():
                self._release(tx, channel, released, db.stamp(max(r.finished_at for r in released)))
            return count

        return await db.transact(work)

    def _history(self, tx: Tx, channel: str, addresses: list[str], at: object) -> dict[str, list[float]]:
        """The numbers' recent sends, their rows created if new and locked until commit."""
        hot = self._statements()
        listed = json.dumps(addresses) if self.db.is_sqlite else addresses
        tx.run(hot.ensure_number, {"b_channel": channel, "b_addresses": listed, "b_at": at})
        return {a: rate_limit.decode(s) for a, s in tx.rows(hot.history, {"b_channel": channel,
                                                                         "b_addresses": listed})}

    def _release(self, tx: Tx, channel: str, refusals: list[Refusal], at: object) -> None:
        """The provider took none of these: their numbers' caps no longer count them."""
        hot = self._statements()
        addresses = sorted({r.address[:ADDRESS_CHARS] for r in refusals})
        history = self._history(tx, channel, addresses, at)
        for r in refusals:
            address = r.address[:ADDRESS_CHARS]
            history[address] = rate_limit.release(history.get(address, []), r.admitted_at or 0.0)
        tx.many(hot.record, [{"b_channel": channel, "b_address": a, "b_sends": rate_limit.encode(history[a]),
                              "b_at": at} for a in addresses])


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")
