"""Receipts: a provider's later word on a send (delivered, failed, not answered → redial).

Receipts arrive by the thousand during a fan-out (two status callbacks per SMS,
a played-ack per speaker), each from its own request or message. They are
written in groups (warnd.grouping), and each caller is answered only once its
receipt is committed: a provider's callback is acknowledged only when durable.
"""
from __future__ import annotations

import logging

from warnd.clock import Clock
from warnd.config import Config
from warnd.domain.delivery import State, decide
from warnd.engine.metrics import Metrics
from warnd.grouping import Grouped
from warnd.store.deliveries import DeliveryStore, Receipt
from warnd_channels.base import Outcome, SendResult

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
                    detail: str = "") -> bool:
        """Apply one receipt; "retry" (no answer, busy) schedules a redial per the channel's policy."""
        if state == "sent":
            return False  # nothing new: the dispatcher already recorded the send
        if state == "retry":
            attempts = await self.store.attempts_of(delivery_id) or 1  # counted at claim
            retry = self.config.channel(channel).retry
            decision = decide(SendResult(Outcome.RETRY, code, detail=detail), attempts - 1, self.clock.now(),
                              max_attempts=retry.max_attempts, base=retry.base_seconds, maximum=retry.max_seconds)
            receipt = Receipt(delivery_id, decision.state, decision.code, provider_ref, decision.detail,
                              decision.next_attempt_at)
        else:
            receipt = Receipt(delivery_id, STATES[state], code, provider_ref, detail)
        changed = await self._write(receipt)
        if changed and receipt.state is State.PENDING:
            self.wake()
        self.metrics.receipts.labels(channel, state, code).inc()
        if not changed:
            log.info("receipt changed nothing", extra={"delivery": delivery_id, "state": state, "code": code})
        return changed

    async def drain(self) -> None:
        """Wait for the receipts being written (at shutdown)."""
        await self._write.drain()
