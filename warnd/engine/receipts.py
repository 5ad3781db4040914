"""Receipts: a provider's later word on a send (delivered, failed, not answered → redial)."""
from __future__ import annotations

import logging

from warnd.clock import Clock
from warnd.config import Config
from warnd.domain.delivery import State, decide
from warnd.engine.metrics import Metrics
from warnd.store.deliveries import DeliveryStore
from warnd_channels.base import Outcome, SendResult

log = logging.getLogger("warnd.receipts")
STATES = {"delivered": State.DELIVERED, "failed": State.FAILED}


class Receipts:
    def __init__(self, store: DeliveryStore, config: Config, clock: Clock, metrics: Metrics, wake) -> None:  # noqa: ANN001
        self.store = store
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.wake = wake

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
            changed = await self.store.receipt(delivery_id, decision.state, decision.code, provider_ref,
                                               decision.detail, decision.next_attempt_at)
            if changed and decision.state is State.PENDING:
                self.wake()
        else:
            changed = await self.store.receipt(delivery_id, STATES[state], code, provider_ref, detail)
        self.metrics.receipts.labels(channel, state, code).inc()
        if not changed:
            log.info("receipt changed nothing", extra={"delivery": delivery_id, "state": state, "code": code})
        return changed
