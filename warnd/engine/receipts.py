"""Receipts: a provider's later word on a send (delivered, failed, not answered → redial).

Receipts arrive by the thousand during a fan-out (two status callbacks per SMS,
a played-ack per speaker), each from its own request or message. They are
written in groups (warnd.grouping), and each caller is answered only once its
receipt is committed: a provider's callback is acknowledged only when durable.
A receipt belongs to one attempt (its SID, and the attempt its signed callback
URL names): one of an earlier attempt, or a replay, changes nothing.
"""
from __future__ import annotations

import logging

from warnd.clock import Clock
from warnd.config import Config
from warnd.domain.delivery import State, decide
from warnd.engine.metrics import Metrics
from warnd.grouping import Grouped
from warnd.store.deliveries import DeliveryStore, Receipt
from warnd.domain.sending import Outcome, ReceiptState, SendResult

log = logging.getLogger("warnd.receipts")
STATES = {"delivered": State.DELIVERED, "failed": State.FAILED}
MAX_GROUP = 500  # receipts per transaction


class Receipts:
    def __init__(self, store: DeliveryStore, config: Config, clock: Clock, metrics: Metrics, wake) -> None:  # noqa: ANN001
        self.store = store
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.wake = wake
        self._write = Grouped(store.receipts, MAX_GROUP, "receipts")

    async def apply(self, channel: str, delivery_id: int, state: str, code: str, provider_ref: str | None,
                    detail: str = "", attempt: int | None = None) -> bool:
        """Apply one receipt; "retry" (no answer, busy) schedules a redial per the channel's policy.

        `attempt`: the one the receipt is about, when known (signed into the callback URL);
        the receipt changes nothing unless it is still the delivery's current attempt."""
        state = ReceiptState(state).value  # an enum member or its value
        if state == "sent":
            return False  # nothing new: the dispatcher already recorded the send
        if state == "retry":
            attempts = attempt or await self.store.attempts_of(delivery_id) or 1  # counted at claim
            retry = self.config.channel(channel).retry
            decision = decide(SendResult(Outcome.RETRY, code, detail=detail), attempts - 1, self.clock.now(),
                              max_attempts=retry.max_attempts, base=retry.base_seconds, maximum=retry.max_seconds)
            receipt = Receipt(delivery_id, decision.state, decision.code, provider_ref, decision.detail,
                              decision.next_attempt_at, attempt)
        else:
            receipt = Receipt(delivery_id, STATES[state], code, provider_ref, detail, attempt=attempt)
        changed = await self._write(receipt)
        if changed and receipt.state is State.PENDING:
            self.wake()
        self.metrics.receipts.labels(channel, state, code).inc()
        if changed and receipt.state is State.FAILED:  # the provider's word, or redials exhausted
            log.warning("send gave up", extra={"channel": channel, "delivery": delivery_id, "code": receipt.code,
                                               "detail": receipt.detail, "sid": provider_ref, "attempt": attempt})
        if not changed:
            log.info("receipt changed nothing", extra={"delivery": delivery_id, "state": state, "code": code,
                                                       "sid": provider_ref, "attempt": attempt})
        return changed

    async def drain(self) -> None:
        """Wait for the receipts being written (at shutdown)."""
        await self._write.drain()
