"""Sending notices: texts to people that belong to no warning (the daily summary, roster asks).

Only channels whose spec says `notices` take them (a text to a phone, no callbacks). They
use the channel's shared provider rate (the same cells the dispatcher reserves, so a
roster round of thousands keeps to the provider's rate across nodes) and are sent once:
a provider refusal (429/5xx) puts the notice back for the next sweep, a send whose
outcome is unknown is `uncertain`, never repeated.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from warnd.domain.sending import Outcome, SendResult
from warnd.domain.sms_segments import segment_info
from warnd.engine.ratelimit import SharedRate
from warnd.store.notices import NoticeState, NoticeStore
from warnd_channels.registry import SPECS

log = logging.getLogger("warnd.notices")
BATCH = 50  # notices claimed per sweep
LEASE = timedelta(minutes=10)  # a claim older than this was left by a dead node
STATES = {Outcome.SENT: NoticeState.SENT, Outcome.DELIVERED: NoticeState.SENT, Outcome.RETRY: NoticeState.PENDING,
          Outcome.FAILED: NoticeState.FAILED, Outcome.UNCERTAIN: NoticeState.UNCERTAIN}


class NoticeSender:
    def __init__(self, node) -> None:  # noqa: ANN001 - the Node
        self.node = node
        self.store = NoticeStore(node.db)
        self.channels = [name for name in node.channels if SPECS[name].notices]
        self._rates: dict[str, SharedRate] = {}

    def _rate(self, name: str) -> SharedRate:
        if name not in self._rates:
            rate = self.node.config.channel(name).rate_per_second
            limits = self.node.dispatcher.limits

            async def reserve(cells: int, now: float, burst: float) -> float:
                return await limits.reserve(name, cells, rate, now, burst)
            self._rates[name] = SharedRate(f"notices-{name}", rate, reserve)
        return self._rates[name]

    async def send_due(self) -> int:
        """Send what is pending (a batch a sweep); returns how many went out."""
        clock = self.node.clock
        if await self.store.abandon_stale(clock.now(), LEASE):
            log.warning("notices left in flight by a dead node marked uncertain")
        sent = 0
        for due in await self.store.claim(self.channels, BATCH, clock.now()):
            result = await self._send(due)
            await self.store.settle(due.id, STATES[result.outcome], clock.now())
            sent += result.outcome in (Outcome.SENT, Outcome.DELIVERED)
            log.log(logging.DEBUG if result.outcome is Outcome.SENT else logging.INFO, "notice send",
                    extra={"notice": due.id, "channel": due.channel, "outcome": result.outcome.value,
                           "code": result.code})
        return sent

    async def _send(self, due) -> SendResult:  # noqa: ANN001 - a Due
        channel = self.node.channels.get(due.channel)
        if channel is None or not due.address:
            return SendResult(Outcome.FAILED, "notice.channel", detail=f"{due.channel} is not enabled here")
        rate = self._rate(due.channel)
        await rate.take()
        rate.charge(segment_info(due.body).segments - 1)
        try:
            return await channel.send_notice(due.address, due.body)
        except Exception as exc:  # noqa: BLE001 - one notice must not stop the others
            log.exception("notice send failed", extra={"notice": due.id})
            return SendResult(Outcome.FAILED, "internal", detail=f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        for rate in self._rates.values():
            await rate.close()
