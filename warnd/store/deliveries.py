"""Claiming due deliveries and recording what happened to them.

Claims are safe across processes: PostgreSQL locks the chosen rows with
FOR UPDATE SKIP LOCKED, so two nodes never claim the same row; SQLite write
transactions are serialised (BEGIN IMMEDIATE). Every result is applied with
compare-and-set on (state = sending, claimed_by = me), so a result that
arrives after a sweep recovered the row changes nothing.

A provider's receipt applies only to the attempt it is about: `provider_ref`
is the current attempt's (a claim clears it), and a receipt with another SID,
or whose signed callback URL names another attempt, changes nothing. A late
"no answer" of call 1 must not move call 2.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from warnd.clock import Clock
from warnd.domain.delivery import Decision, State
from warnd.domain.states import CONFIRMATION, DELIVERY, WARNING, ConfirmationState, WarningState
from warnd.store.database import Database, Prepared, Tx
from warnd.store.escalation import skip_warnings
from warnd.store.schema import attempts, confirmations, deliveries, subscribers, warnings
from warnd.store.transitions import transition
from warnd.store.updates import follow_updates

MAX_PRIORITIES = 64  # distinct priorities one claim looks through (levels are 1-4)


@dataclass(frozen=True)
class Claimed:
    id: int
    warning_id: int
    channel: str
    recipient_kind: str
    recipient_id: str
    address: str
    language: str
    priority: int
    attempts: int  # including the one now starting
    created_at: datetime
    secret: str | None
    format: str | None
    public: bool | None
    must_confirm: bool
    purpose: str
    params: dict | None


@dataclass(frozen=True)
class Receipt:
    """A provider's later word on a send: a status callback, a played-ack."""

    delivery_id: int
    state: State
    code: str
    provider_ref: str | None
    detail: str = ""
    next_attempt_at: datetime | None = None  # for a redial (state pending)
    attempt: int | None = None  # the attempt its signed callback URL names; None: not known (older URLs)


@dataclass(frozen=True)
class Applied:
    """One attempt's result, ready to write."""

    delivery_id: int
    attempt: int
    started_at: datetime
    finished_at: datetime
    decision: Decision
    provider_ref: str | None


class _Hot:
    """The statements of claim and apply, compiled once (see `Prepared`).

    A claim takes one priority at a time, the highest due below `b_below`,
    ordered by next_attempt_at only, so `pick` (and `probe`) read
    ix_deliveries_due (state, channel, priority, next_attempt_at) in index order
    and stop after `limit` rows; ties come in index order (id on SQLite,
    insertion on PostgreSQL). A single `ORDER BY priority DESC,
    next_attempt_at` would sort every due row of the channel on each claim:
    20-40 ms per claim with 20,000 rows due.
    """

    def __init__(self, db: Database, backups_confirm: bool = False) -> None:
        d, s, c = deliveries.c, subscribers.c, confirmations.c
        now = sa.bindparam("b_now", type_=d.next_attempt_at.type)
        # Only rows of warnings still in force: a retry of an old version that was in
        # flight when its update arrived must never leave (the sweep retires it).
        live = sa.select(warnings.c.id).where(warnings.c.state == WarningState.ACTIVE.value)
        due = sa.and_(d.state == State.PENDING.value, d.channel == sa.bindparam("b_channel"),
                      d.next_attempt_at <= now, sa.or_(d.expires.is_(None), d.expires > now),
                      d.warning_id.in_(live))
        top = (sa.select(d.priority).where(due, d.priority < sa.bindparam("b_below"))
               .order_by(d.priority.desc()).limit(1))
        self.probe = db.prepare(top)
        # Two EXISTS, not one with an OR: each reads its own index (warning, person) or
        # (warning, backup). With the OR, SQLite read every confirmation of the warning
        # for every claimed row: 56 ms a claim in a 10,000-person fan-out.
        def confirms(who: sa.Column, *more: sa.ColumnElement[bool]) -> sa.Exists:
            return sa.exists().where(c.warning_id == d.warning_id, who == d.recipient_id,
                                     c.state == ConfirmationState.OPEN.value, *more)
        # Told to confirm (回复1确认, the link): the grid's responsible person; anyone a rung
        # asks about a grid (its sends carry the grid and come after the requirement: a
        # backup, a township duty officer; read by ix_confirmations_grid); a backup from the
        # first wave only if config says.
        asked = sa.exists().where(c.warning_id == d.warning_id, c.grid == d.grid,
                                  c.state == ConfirmationState.OPEN.value,
                                  c.created_at < d.created_at)
        told = [confirms(c.person_id), asked, *((confirms(c.backup_id),) if backups_confirm else ())]
        must_confirm = sa.and_(d.recipient_kind == "person", sa.or_(*told)).label("must_confirm")
        # The columns of Claimed, in order (attempts as before this one). Locked as they are
        # read: FOR UPDATE SKIP LOCKED on PostgreSQL; on SQLite the transaction holds the
        # write lock.
        self.pick = db.prepare(
            sa.select(d.id, d.warning_id, d.channel, d.recipient_kind, d.recipient_id, d.address, d.language,
                      d.priority, d.attempts, d.created_at, s.secret, s.format, s.public, must_confirm,
                      d.purpose, d.params)
            .select_from(deliveries.outerjoin(subscribers, sa.and_(d.recipient_kind == "subscriber",
                                                                   s.id == d.recipient_id)))
            .where(due, d.priority == top.scalar_subquery())
            .order_by(d.next_attempt_at).limit(sa.bindparam("b_limit"))
            .with_for_update(skip_locked=True, of=deliveries))
        # The attempt is counted when it starts, so a receipt that overtakes the result
        # (a fast "no answer") still sees how many attempts were made; the previous
        # attempt's SID is cleared, so its late receipts no longer match (see `receipt`).
        # SQLite: one UPDATE per row (in-process, cheap; an IN list cannot be prepared).
        # PostgreSQL: one UPDATE for all, the ids as an array: 200 statements in a pipeline
        # still cost the server 200 executions while the senders waited for the claim.
        one = d.id == sa.bindparam("b_id")
        every = d.id == sa.any_(sa.bindparam("b_ids", type_=postgresql.ARRAY(sa.BigInteger)))
        # (The rows were just picked, locked, as pending: the state's CAS is the table's, and free.)
        self.mark = db.prepare(
            transition(DELIVERY, State.SENDING).where(one if db.is_sqlite else every)
            .values(claimed_by=sa.bindparam("b_node"), attempts=d.attempts + 1,
                    provider_ref=None, handed_at=None,  # handed: this attempt's, written just before its send
                    lease_until=sa.bindparam("b_lease", type_=d.lease_until.type),
                    updated_at=sa.bindparam("b_now", type_=d.updated_at.type)))
        # Handed to the provider, just before the send: a crash before this mark is known to
        # have sent nothing (see `recover`). Compare-and-set on the claim, so a row another
        # node took over from us (our heartbeat was late) is not sent by us as well.
        # One statement for all the ids: a JSON array on SQLite (an IN list cannot be prepared),
        # an array on PostgreSQL.
        listed = (d.id.in_(sa.select(sa.func.json_each(sa.bindparam("b_ids", type_=sa.String))
                                     .table_valued("value").c.value))
                  if db.is_sqlite else every)
        self.hand = db.prepare(
            sa.update(deliveries)
            .where(listed, d.state == State.SENDING.value, d.claimed_by == sa.bindparam("b_node"))
            .values(handed_at=sa.bindparam("b_now", type_=d.handed_at.type))
            .returning(d.id))
        # A result: from `sending` (the table allows it into every state a Decision has), still ours.
        self.result = db.prepare(
            transition(DELIVERY, RESULT_STATES, within=(State.SENDING,), state=sa.bindparam("b_state"))
            .where(d.id == sa.bindparam("b_id"), d.claimed_by == sa.bindparam("b_node"))
            .values(next_attempt_at=sa.func.coalesce(sa.bindparam("b_next", type_=d.next_attempt_at.type),
                                                     d.next_attempt_at),
                    provider_ref=sa.func.coalesce(sa.bindparam("b_ref", type_=d.provider_ref.type),
                                                  d.provider_ref),
                    last_code=sa.bindparam("b_code"), last_detail=sa.bindparam("b_detail"),
                    claimed_by=None, lease_until=None, updated_at=sa.bindparam("b_at", type_=d.updated_at.type),
                    sent_at=sa.func.coalesce(d.sent_at, sa.bindparam("b_sent", type_=d.sent_at.type)),
                    done_at=sa.bindparam("b_done", type_=d.done_at.type)))
        # A provider's receipt: CAS from any state the table lets it follow (sending, sent,
        # uncertain). DELIVERED may also follow `pending`: the recipient has it, even if a
        # recovery re-queued the row. And only for the current attempt (`ours`).
        ref = sa.bindparam("b_ref", type_=d.provider_ref.type)
        attempt = sa.bindparam("b_attempt", type_=d.attempts.type)
        # Its SID is the stored one, or none is stored yet (it overtook its send's result, or the
        # provider's word has no SID); and the attempt its callback URL names is the one under way.
        ours = sa.and_(sa.or_(ref.is_(None), d.provider_ref.is_(None), d.provider_ref == ref),
                       sa.or_(attempt.is_(None), d.attempts == attempt))

        def receipt(into: tuple[State, ...]) -> Prepared:
            return db.prepare(
                transition(DELIVERY, into, state=sa.bindparam("b_state"))
                .where(d.id == sa.bindparam("b_id"), ours)
                .values(last_code=sa.bindparam("b_code"),
                        last_detail=sa.bindparam("b_detail"),
                        provider_ref=sa.func.coalesce(ref, d.provider_ref),
                        next_attempt_at=sa.func.coalesce(sa.bindparam("b_next", type_=d.next_attempt_at.type),
                                                         d.next_attempt_at),
                        claimed_by=None, lease_until=None, updated_at=sa.bindparam("b_at", type_=d.updated_at.type),
                        done_at=sa.bindparam("b_done", type_=d.done_at.type)))
        self.receipt = receipt(RECEIPT_STATES)
        self.receipt_delivered = receipt((State.DELIVERED,))
        a = attempts.c
        self.log = db.prepare(sa.insert(attempts).inline().values(
            delivery_id=sa.bindparam("b_id", type_=a.delivery_id.type),
            attempt=sa.bindparam("b_attempt", type_=a.attempt.type),
            node=sa.bindparam("b_node", type_=a.node.type),
            started_at=sa.bindparam("b_started", type_=a.started_at.type),
            finished_at=sa.bindparam("b_at", type_=a.finished_at.type),
            outcome=sa.bindparam("b_state", type_=a.outcome.type),
            code=sa.bindparam("b_code", type_=a.code.type), detail=sa.bindparam("b_detail", type_=a.detail.type)))

    def write_results(self, tx: Tx, written: list[dict]) -> Any:
        """The results' rows (compare-and-set) and their attempts; the cursor of the
        rows' update, whose rowcount is how many were still ours."""
        changed = tx.many(self.result, written)
        tx.many(self.log, written)
        return changed


# What recovery writes for each fate of a dead claim (see `after_crash`). "recovered"
# and "orphaned" are the codes the simulation report counts as re-sent and uncertain.
RECOVERY: dict[str, dict[str, Any]] = {
    "unsent": {"state": State.PENDING.value, "attempts": deliveries.c.attempts - 1, "last_code": "recovered",
               "last_detail": "claimed by a process that stopped before handing it to the provider: queued again"},
    "resent": {"state": State.PENDING.value, "handed_at": None, "last_code": "recovered",
               "last_detail": "claimed by a process that stopped; the receiver drops a duplicate: sent again"},
    "uncertain": {"state": State.UNCERTAIN.value, "last_code": "orphaned",
                  "last_detail": "handed to the provider by a process that stopped: asking the provider"},
}


def after_crash(handed: bool, dedupes: bool) -> str:
    """The fate of a claim its process left behind. Never handed: nothing reached the
    provider, so it is queued again at once and its attempt given back ("unsent").
    Handed: where receivers drop duplicates it is simply sent again ("resent"); else
    (SMS, calls) a second send would be a real duplicate: "uncertain", until the
    provider says whether it has it."""
    if not handed:
        return "unsent"
    return "resent" if dedupes else "uncertain"


@dataclass(frozen=True)
class Unsettled:
    """An uncertain send, as the provider lookup needs it."""

    id: int
    channel: str
    address: str
    attempts: int
    handed_at: datetime | None  # None: uncertain from before the handed mark existed
    created_at: datetime
    updated_at: datetime


# The states a result (a Decision) and a receipt other than DELIVERED may write: each hot
# statement's sources are those its table allows into all of them (see warnd.store.transitions).
RESULT_STATES = (State.SENT, State.DELIVERED, State.FAILED, State.UNCERTAIN, State.PENDING)
RECEIPT_STATES = (State.FAILED, State.PENDING)  # failed, or not answered: a redial

NO_PRIORITY = 2**31 - 1  # above every priority: where the first probe starts
SENT_STATES = frozenset({State.SENT, State.DELIVERED})
DONE_STATES = frozenset({State.DELIVERED, State.FAILED})


class DeliveryStore:
    def __init__(self, db: Database, clock: Clock, node: str, *, backups_confirm: bool = False) -> None:
        self.db = db
        self.clock = clock
        self.node = node  # "<node_id>/<incarnation>": unique per process lifetime
        self.backups_confirm = backups_confirm  # confirmation.backups_confirm_first_wave
        self._hot: _Hot | None = None
        self._sending: dict[int, int] = {}  # delivery id → the attempt this process claimed and is sending

    def sending_attempt(self, delivery_id: int) -> int | None:
        """The attempt of a delivery this process claimed and has no result for yet.

        The channel builds the provider's callback URL during the send (`Node.callback_url`),
        and the URL names the attempt, signed: a receipt that overtakes the send's result is
        then told apart from a late one of an earlier attempt (see `_Hot.receipt`)."""
        return self._sending.get(delivery_id)

    def _settled(self, results: Sequence[Applied]) -> None:
        """Their results are on their way to the database: their callback URLs are built."""
        for r in results:
            if self._sending.get(r.delivery_id) == r.attempt:
                del self._sending[r.delivery_id]

    def _statements(self) -> _Hot:
        if self._hot is None:
            self._hot = _Hot(self.db, self.backups_confirm)
        return self._hot

    async def claim(self, channel: str, limit: int, lease_seconds: float,
                    results: Sequence[Applied] = ()) -> list[Claimed]:
        """Take up to `limit` due deliveries of a channel, highest level first, then longest due.

        `results` are written first, in the same transaction (see `apply`).
        """
        hot = self._statements()
        now = self.clock.now()
        db = self.db
        self._settled(results)

        def work(tx: Tx) -> list[Claimed]:  # on the database thread: the loop has sends to run
            due = {"b_channel": channel, "b_now": db.stamp(now)}
            below = NO_PRIORITY
            with tx.together():  # the results go with the first pick: one round trip to PostgreSQL
                if results:
                    hot.write_results(tx, self._result_rows(results))
                got = tx.rows(hot.pick, {**due, "b_below": below, "b_limit": limit})
            rows = list(got)
            for _ in range(MAX_PRIORITIES):  # bounded; `below` falls on every turn anyway
                if len(rows) >= limit:
                    break
                if got:  # fewer than asked at this priority: go on below it
                    below = got[0][7]
                else:  # none at the highest due priority: none due at all, or (PostgreSQL) every
                    top = tx.rows(hot.probe, {**due, "b_below": below})  # row of it is locked
                    if not top:
                        break
                    below = top[0][0]
                got = tx.rows(hot.pick, {**due, "b_below": below, "b_limit": limit - len(rows)})
                rows += got
            mark = {**due, "b_node": self.node, "b_lease": db.stamp(now + timedelta(seconds=lease_seconds))}
            if db.is_sqlite:
                tx.many(hot.mark, [{**mark, "b_id": r[0]} for r in rows])
            elif rows:
                tx.rows_changed(hot.mark, {**mark, "b_ids": [r[0] for r in rows]})
            return [Claimed(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8] + 1, db.unstamp(r[9]), r[10],
                            r[11], None if r[12] is None else bool(r[12]), bool(r[13]), r[14], db.unjson(r[15]))
                    for r in rows]

        claimed = await db.transact(work)
        self._sending.update((row.id, row.attempts) for row in claimed)
        return claimed

    async def unclaim(self, ids: list[int]) -> int:
        """Hand back claimed rows that were never sent (the dispatcher stopped first).

        The claim counted an attempt that never started, so it is taken back too.
        """
        now = self.clock.now()
        d = deliveries.c
        for delivery_id in ids:
            self._sending.pop(delivery_id, None)
        async with self.db.write() as conn:
            return (await conn.execute(transition(DELIVERY, State.PENDING, within=(State.SENDING,))
                                       .where(d.id.in_(ids), d.claimed_by == self.node)
                                       .values(claimed_by=None, lease_until=None,
                                               attempts=d.attempts - 1, updated_at=now))).rowcount

    async def hand(self, ids: Sequence[int]) -> set[int]:
        """Mark claimed rows handed to the provider, just before they are sent; the ids
        still ours (the others were taken over by another node and must not be sent).

        One UPDATE for the rows whose senders are about to send, committed before any of
        them starts: a crash after it leaves them `uncertain` (asked at the provider), a
        crash before it leaves them unsent (queued again at once, see `recover`)."""
        if not ids:
            return set()
        hot = self._statements()
        db = self.db
        params = {"b_node": self.node, "b_now": db.stamp(self.clock.now()),
                  "b_ids": json.dumps(list(ids)) if db.is_sqlite else list(ids)}

        def work(tx: Tx) -> set[int]:  # on the database thread: one wait for the loop, as claims
            return {r[0] for r in tx.rows(hot.hand, params)}

        return await db.transact(work)

    async def apply(self, results: Sequence[Applied]) -> int:
        """Write a batch of results; returns how many rows were still ours to change.

        Each with compare-and-set (still `sending`, still claimed by this process), and
        every attempt in delivery_attempts, whether or not its row was still ours.
        """
        if not results:
            return 0
        hot = self._statements()
        self._settled(results)

        def work(tx: Tx) -> int:  # on the database thread
            written = self._result_rows(results)
            with tx.together():
                changed = hot.write_results(tx, written)
            return changed.rowcount

        return await self.db.transact(work)

    def _result_rows(self, results: Sequence[Applied]) -> list[dict]:
        stamp, node = self.db.stamp, self.node
        rows = []
        for r in results:
            decision = r.decision
            at = stamp(r.finished_at)
            rows.append({"b_id": r.delivery_id, "b_node": node, "b_state": decision.state.value,
                         "b_next": None if decision.next_attempt_at is None else stamp(decision.next_attempt_at),
                         "b_ref": r.provider_ref, "b_code": decision.code, "b_detail": decision.detail[:2000],
                         "b_at": at, "b_sent": at if decision.state in SENT_STATES else None,
                         "b_done": at if decision.state in DONE_STATES else None,
                         "b_attempt": r.attempt, "b_started": stamp(r.started_at)})
        return rows

    async def receipts(self, batch: Sequence[Receipt]) -> list[bool]:
        """Apply providers' receipts in one transaction; for each, whether it changed its row.

        One commit for many: every status callback and played-ack used to be its own
        fsync'd transaction, and a fan-out's receipts queued behind each other. A receipt
        of another attempt than the current one changes nothing (see `_Hot.receipt`).
        """
        if not batch:
            return []
        hot = self._statements()
        stamp = self.db.stamp
        at = stamp(self.clock.now())

        def work(tx: Tx) -> list[bool]:  # on the database thread
            changed = []
            for r in batch:
                done = at if r.state in DONE_STATES else None
                statement = hot.receipt_delivered if r.state is State.DELIVERED else hot.receipt
                rows = tx.rows_changed(statement, {
                    "b_id": r.delivery_id, "b_state": r.state.value, "b_code": r.code,
                    "b_detail": r.detail[:2000], "b_ref": r.provider_ref, "b_attempt": r.attempt,
                    "b_next": None if r.next_attempt_at is None else stamp(r.next_attempt_at),
                    "b_at": at, "b_done": done})
                changed.append(rows == 1)
            return changed

        return await self.db.transact(work)

    async def overdue_sent(self, channels: Sequence[str], quiet_since: datetime, sent_since: datetime,
                           limit: int) -> list[tuple[int, str, str, int]]:
        """(id, channel, provider_ref, attempts) of sends still `sent` with no word since
        `quiet_since`, sent after `sent_since`: their final status callback is overdue. Longest
        quiet first. The attempt goes with the lookup's receipt: should the row have moved on to
        another attempt meanwhile, the receipt changes nothing."""
        d = deliveries.c
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(d.id, d.channel, d.provider_ref, d.attempts)
                .where(d.state == State.SENT.value, d.channel.in_(channels), d.provider_ref.is_not(None),
                       d.updated_at <= quiet_since, d.sent_at >= sent_since)
                .order_by(d.updated_at).limit(limit))
            return [(r.id, r.channel, r.provider_ref, r.attempts) for r in rows]

    async def looked_up(self, ids: Sequence[int]) -> None:
        """Sends the provider still calls in flight: looked up again only after another quiet spell."""
        if not ids:
            return
        d = deliveries.c
        async with self.db.write() as conn:
            await conn.execute(sa.update(deliveries).where(d.id.in_(ids), d.state == State.SENT.value)
                               .values(updated_at=self.clock.now()))

    async def attempts_of(self, delivery_id: int) -> int | None:
        async with self.db.read() as conn:
            return (await conn.execute(sa.select(deliveries.c.attempts)
                                       .where(deliveries.c.id == delivery_id))).scalar()

    async def recover(self, node_id: str, dedupe_channels: set[str], dead: Sequence[str] = ()) -> dict[str, int]:
        """Rows left in `sending` by a dead process, each as `after_crash` decides; how many
        of each: "unsent" and "resent" (both `pending` again, due now), "uncertain".

        A row is orphaned when its lease ran out, when it was claimed by an earlier
        incarnation of this very node (we just restarted, so it is dead), or by one of
        the `dead` incarnations (stopped, or no heartbeat for `takeover_seconds`: see
        warnd.store.nodes), at once. A lease outlasts every send (the configuration
        checks it), so a row of this very process whose lease ran out is one it lost
        track of: recovered too.
        """
        now = self.clock.now()
        d = deliveries.c
        others = [x for x in dead if x != self.node]
        orphan = sa.and_(d.state == State.SENDING.value,
                         sa.or_(d.lease_until < now,
                                sa.and_(d.claimed_by.like(f"{node_id}/%"), d.claimed_by != self.node),
                                *([d.claimed_by.in_(others)] if others else [])))
        counts = dict.fromkeys(RECOVERY, 0)
        async with self.db.write() as conn:
            found = (await conn.execute(sa.select(d.id, d.channel, d.handed_at.is_not(None))
                                        .where(orphan).with_for_update(skip_locked=True))).all()
            by_fate: dict[str, list[int]] = {}
            for row_id, channel, handed in found:
                by_fate.setdefault(after_crash(bool(handed), channel in dedupe_channels), []).append(row_id)
            for fate, ids in by_fate.items():
                await conn.execute(transition(DELIVERY, State(RECOVERY[fate]["state"]), within=(State.SENDING,))
                                   .where(d.id.in_(ids))
                                   .values(**RECOVERY[fate], claimed_by=None, lease_until=None, next_attempt_at=now,
                                           updated_at=now))
                counts[fate] = len(ids)
        return counts

    async def unsettled(self, channels: Sequence[str], handed_before: datetime, handed_since: datetime,
                        limit: int) -> list["Unsettled"]:
        """`uncertain` sends of these channels handed between the two times: to be asked
        about at the provider (see Node.settle_uncertain). Longest waiting first."""
        d = deliveries.c
        handed = sa.func.coalesce(d.handed_at, d.updated_at)  # rows from before the handed mark: when recovered
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(d.id, d.channel, d.address, d.attempts, d.handed_at, d.created_at, d.updated_at)
                .where(d.state == State.UNCERTAIN.value, d.channel.in_(channels), handed <= handed_before,
                       handed >= handed_since)
                .order_by(d.updated_at).limit(limit))
            return [Unsettled(r.id, r.channel, r.address, r.attempts, r.handed_at, r.created_at, r.updated_at)
                    for r in rows]

    async def known_refs(self, channel: str, refs: Sequence[str]) -> set[str]:
        """Which of these provider SIDs some delivery of the channel already owns (not
        another's lost send, then). Looked up only while settling uncertain sends: rare."""
        if not refs:
            return set()
        d = deliveries.c
        async with self.db.read() as conn:
            return set((await conn.execute(sa.select(d.provider_ref)
                                           .where(d.channel == channel, d.provider_ref.in_(list(refs)))))
                       .scalars())

    async def found_at_provider(self, delivery_id: int, provider_ref: str) -> bool:
        """An uncertain send the provider has: `sent` under its SID (its status settles it,
        now or by reconciliation); whether the row was still uncertain."""
        now = self.clock.now()
        d = deliveries.c
        async with self.db.write() as conn:
            return (await conn.execute(
                transition(DELIVERY, State.SENT, within=(State.UNCERTAIN,)).where(d.id == delivery_id)
                .values(provider_ref=provider_ref, last_code="found_at_provider",
                        last_detail="the provider has it: not sent again",
                        sent_at=sa.func.coalesce(d.sent_at, d.handed_at, now), updated_at=now))).rowcount == 1

    async def not_at_provider(self, ids: Sequence[int]) -> int:
        """Uncertain sends the provider does not have: queued again, due now (the handed
        attempt stays counted: it was made, and reached nobody)."""
        if not ids:
            return 0
        now = self.clock.now()
        d = deliveries.c
        async with self.db.write() as conn:
            return (await conn.execute(
                transition(DELIVERY, State.PENDING, within=(State.UNCERTAIN,)).where(d.id.in_(list(ids)))
                .values(next_attempt_at=now, last_code="uncertain_resent",
                        last_detail="not at the provider: sent again", updated_at=now))).rowcount

    async def resend_uncertain(self, channels: Sequence[str], quiet_since: datetime) -> int:
        """`uncertain` sends of warnings in force with no word from the provider since
        `quiet_since` go out again: the last resort for channels that cannot be looked up
        at their provider (see twilio.resend_uncertain_after_seconds; SMS and calls are
        settled by `unsettled` and a lookup instead, never re-sent blind)."""
        now = self.clock.now()
        d, w = deliveries.c, warnings.c
        async with self.db.write() as conn:
            return (await conn.execute(
                transition(DELIVERY, State.PENDING, within=(State.UNCERTAIN,))
                .where(d.channel.in_(channels), d.updated_at <= quiet_since,
                       d.warning_id.in_(sa.select(w.id).where(w.state == WarningState.ACTIVE.value)))
                .values(next_attempt_at=now, last_code="uncertain_resent",
                        last_detail="no word from the provider since the crash: sent again",
                        updated_at=now))).rowcount

    async def retire_stale(self) -> int:
        """Pending rows of warnings no longer in force take their warning's end.

        They arise when a send of an earlier version was in flight as its update or
        cancel was accepted, and then came back as a retry (or was recovered). A rung's
        send whose grid is still open under the Update follows it there instead.
        """
        now = self.clock.now()
        d, w = deliveries.c, warnings.c
        n = 0
        async with self.db.write() as conn:
            await follow_updates(conn, now)
            for end in (State.SUPERSEDED, State.CANCELLED, State.EXPIRED):
                ended = sa.select(w.id).where(w.state == WarningState(end.value).value)
                n += (await conn.execute(transition(DELIVERY, end).where(d.warning_id.in_(ended))
                                         .values(done_at=now, updated_at=now,
                                                 last_code=f"warning_{end.value}"))).rowcount
        return n

    async def expire(self) -> int:
        """Pending sends of expired warnings end; the warnings are marked expired."""
        now = self.clock.now()
        d, w, c = deliveries.c, warnings.c, confirmations.c
        async with self.db.write() as conn:
            n = (await conn.execute(transition(DELIVERY, State.EXPIRED).where(d.expires <= now)
                                    .values(done_at=now, updated_at=now, last_code="expired"))).rowcount
            ended = sa.select(w.id).where(w.state == WarningState.ACTIVE.value, w.expires <= now)
            await conn.execute(transition(CONFIRMATION, ConfirmationState.CLOSED).where(c.warning_id.in_(ended))
                               .values(closed_reason="expired"))
            expired = [r.id for r in await conn.execute(ended)]
            await conn.execute(transition(WARNING, WarningState.EXPIRED, within=(WarningState.ACTIVE,))
                               .where(w.id.in_(expired)))
            await skip_warnings(conn, expired, "expired")
        return n

    async def counts(self) -> list[tuple[str, str, int]]:
        """(channel, state, count) for every delivery: the metrics' view of the queue."""
        d = deliveries.c
        async with self.db.read() as conn:
            rows = await conn.execute(sa.select(d.channel, d.state, sa.func.count()).group_by(d.channel, d.state))
            return [(r[0], r[1], r[2]) for r in rows]

    async def due_count(self) -> dict[str, int]:
        now = self.clock.now()
        d = deliveries.c
        async with self.db.read() as conn:
            rows = await conn.execute(sa.select(d.channel, sa.func.count())
                                      .where(d.state == State.PENDING.value, d.next_attempt_at <= now)
                                      .group_by(d.channel))
            return {r[0]: r[1] for r in rows}
