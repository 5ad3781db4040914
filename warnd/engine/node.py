"""One warnd node: the stores, the channels, the dispatcher and the scheduled sweeps.

The scheduler only says *when* to look; every sweep reads what is due from the
database, so any node may run it, and a crash loses nothing.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta


from warnd.clock import Clock, SystemClock
from warnd.config import Config
from warnd.domain.signing import sign
from warnd.engine.alerts import AlertCache
from warnd.engine.answers import Answers
from warnd.engine.dispatcher import Dispatcher
from warnd.engine.intake import Intake
from warnd.engine.metrics import Metrics
from warnd.engine.receipts import Receipts
from warnd.engine.sweeps import Sweeps
from warnd.store import audit, settings
from warnd.store.confirmations import ConfirmationStore
from warnd.store.database import Database
from warnd.store.deliveries import Claimed, DeliveryStore
from warnd.store.coverage import CoverageStore
from warnd.store.escalation import EscalationStore
from warnd.store.speakers import SpeakerStore
from warnd.store.directory import DirectoryStore
from warnd.store.queries import Queries
from warnd.store.tokens import TokenStore
from warnd.store.users import UserStore
from warnd.store.warnings import WarningStore
from warnd_channels.base import Channel
from warnd_channels.registry import build_channels

log = logging.getLogger("warnd.node")
CALLBACK_PATHS = {"sms-status": "/twilio/sms/status", "voice-status": "/twilio/voice/status",
                  "voice-gather": "/twilio/voice/gather"}
CALLBACK_VALIDITY = timedelta(days=7)
LINK_PATHS = {"confirm": "c", "call-list": "d"}
RECONCILE_BATCH = 500  # sends looked up per sweep
RECONCILE_PARALLEL = 8  # lookups at once (they share the channel's connections with the sends)


class Node:
    def __init__(self, config: Config, *, clock: Clock | None = None,
                 channels: dict[str, Channel] | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.incarnation = f"{config.node_name}/{uuid.uuid4().hex[:12]}"
        self.db = Database(config.database_url)
        self.metrics = Metrics()
        self.secret_key = b""  # loaded at start: configured, or kept in the database
        self.channels = channels if channels is not None else build_channels(config, callback_url=self.callback_url)
        self.directory = DirectoryStore(self.db, self.clock,
                                        allow_private_urls=config.webhook.allow_private_urls)
        self.tokens = TokenStore(self.db, self.clock)
        self.users = UserStore(self.db, self.clock, config.accounts)
        self.queries = Queries(self.db)
        self.deliveries = DeliveryStore(self.db, self.clock, self.incarnation)
        self.alerts = AlertCache(self.db, config)
        self.dispatcher = Dispatcher(self.deliveries, self.alerts, self.channels, config, self.clock,
                                     self.metrics, self.link_for)
        self.escalation = EscalationStore(self.db, self.clock, self.incarnation)
        self.coverage = CoverageStore(self.db)
        self.speakers = SpeakerStore(self.db, self.clock, config)
        self.receipts = Receipts(self.deliveries, config, self.clock, self.metrics, self.dispatcher.wake)
        self.answers = Answers(ConfirmationStore(self.db), config, self.clock)
        self.intake = Intake(config, self.clock, self.directory, WarningStore(self.db, self.clock),
                             self.alerts, self.metrics, frozenset(self.channels), self.dispatcher.wake)
        self.sweeps = Sweeps()
        self.started = False

    async def start(self, *, dispatch: bool = True) -> None:
        """Recover what a previous life of this node left in flight, then start working."""
        self.secret_key = await settings.secret_key(self.db, self.config.secret_key)
        await self.record_start()
        await self.recover()
        await self.expire()
        for channel in self.channels.values():
            start = getattr(channel, "start", None)  # channels with an inbound stream (MQTT acks)
            if start is not None:
                await start(self)
        if dispatch:
            await self.dispatcher.start()
        sweeps = self.config.sweeps
        for job, seconds in ((self.recover, sweeps.recover_seconds), (self.expire, sweeps.expire_seconds),
                             (self.escalate, sweeps.escalate_seconds), (self.refresh_metrics, 5.0),
                             (self.reconcile, sweeps.reconcile_seconds), (self.remind_approvals, 30.0),
                             (self.users.purge_sessions, 3600.0),
                             *(((self.watch_speakers, sweeps.speaker_seconds),) if "speaker" in self.channels else ())):
            self.sweeps.every(seconds, job)
        self.started = True
        log.info("node started", extra={"node": self.incarnation, "channels": sorted(self.channels)})

    async def record_start(self) -> None:
        """The audit log keeps the configuration each life of a node ran with (secrets redacted):
        what a warning was routed and escalated by can be read back later."""
        async with self.db.write() as conn:
            await audit.append(conn, self.db, self.clock.now(), self.incarnation, "node.start",
                               f"node:{self.config.node_name}",
                               {"incarnation": self.incarnation,
                                "config": audit.redact(self.config.model_dump(mode="json"))})

    async def stop(self) -> None:
        if self.started:
            await self.sweeps.stop()
            await self.dispatcher.stop()
            await self.receipts.drain()
        for channel in self.channels.values():
            await channel.close()
        await self.db.close()
        self.started = False

    def callback_url(self, kind: str, delivery_id: int) -> str:
        """An absolute provider callback URL carrying the delivery id, signed for that purpose only."""
        token = sign(self.secret_key, kind, str(delivery_id), self.clock.now() + CALLBACK_VALIDITY)
        return f"{self.config.public_base_url.rstrip('/')}{CALLBACK_PATHS[kind]}?d={token}"

    def link_url(self, kind: str, value: str) -> str:
        """A signed, expiring link for people: "confirm" (/c/…) or "call-list" (/d/…)."""
        token = sign(self.secret_key, kind, value, self.clock.now() + timedelta(days=self.config.link_days))
        return f"{self.config.public_base_url.rstrip('/')}/{LINK_PATHS[kind]}/{token}"

    def link_for(self, row: Claimed) -> str:
        if row.purpose == "door_to_door" and row.params:
            return self.link_url("call-list", str(row.params["list_id"]))
        if row.must_confirm and row.channel == "sms" and self.config.sms.confirm_link:
            return self.link_url("confirm", f"{row.warning_id}/{row.recipient_id}")
        return ""

    async def escalate(self) -> None:
        """Fire the rungs that are due (any node may; each rung fires once)."""
        while fired := await self.escalation.fire_due():
            for rung_id, effects in fired:
                if effects.alarm is not None:
                    self.metrics.alarms.labels(effects.alarm["code"]).inc()
                    log.error("operator alarm: grid not confirmed", extra={"alarm": True, "rung": rung_id,
                                                                            **effects.alarm})
            if any(e.sends for _, e in fired):
                self.dispatcher.wake()

    async def remind_approvals(self) -> None:
        """An approval waiting longer than `approval.remind_minutes` raises an operator alarm, once."""
        minutes = self.config.approval.remind_minutes
        for warning_id in await self.intake.warnings.overdue_approvals(self.clock.now() - timedelta(minutes=minutes)):
            if await self.intake.warnings.raise_overdue(warning_id, minutes):
                self.metrics.alarms.labels("approval.overdue").inc()
                log.error("operator alarm: warning waits for approval", extra={"alarm": True, "warning": warning_id,
                                                                               "minutes": minutes})

    # ReceiptSink: what channels with their own inbound stream report.
    async def receipt(self, channel: str, delivery_id: int, state: str, code: str,
                      provider_ref: str | None, detail: str = "") -> None:
        await self.receipts.apply(channel, delivery_id, state, code, provider_ref, detail)

    async def presence(self, device_id: str, online: bool, detail: str = "") -> None:
        await self.speakers.set_presence(device_id, online, detail)

    async def watch_speakers(self) -> None:
        """Grids whose speakers stayed silent escalate; warnings in force are replayed."""
        if await self.speakers.mark_uncovered():
            await self.escalate()
        if await self.speakers.rebroadcast():
            self.dispatcher.wake()

    async def recover(self) -> None:
        dedupe = {name for name, ch in self.channels.items() if ch.dedupes}
        counts = await self.deliveries.recover(self.config.node_name, dedupe)
        for state, n in counts.items():
            if n:
                self.metrics.recovered.labels(state).inc(n)
                log.warning("recovered deliveries from a dead claim", extra={"state": state, "count": n})
        quiet = self.config.twilio.resend_uncertain_after_seconds
        resendable = sorted(name for name, ch in self.channels.items() if not ch.dedupes)  # SMS, calls
        if quiet is not None and resendable:
            n = await self.deliveries.resend_uncertain(resendable, self.clock.now() - timedelta(seconds=quiet))
            if n:
                counts["pending"] = counts.get("pending", 0) + n
                self.metrics.recovered.labels("resent").inc(n)
                log.warning("sending again what a crash left uncertain", extra={"count": n})
        if counts.get("pending"):
            self.dispatcher.wake()

    async def reconcile(self) -> None:
        """Sends whose final status callback is overdue are looked up at the provider.

        Twilio posts each status once; one posted while warnd was down or unreachable
        is lost, and without this its delivery would stay `sent` for good.
        """
        lookup = {name: ch for name, ch in self.channels.items() if hasattr(ch, "status")}
        if not lookup:
            return
        now = self.clock.now()
        twilio = self.config.twilio
        overdue = await self.deliveries.overdue_sent(
            sorted(lookup), now - timedelta(seconds=twilio.reconcile_after_seconds),
            now - timedelta(hours=twilio.reconcile_hours), RECONCILE_BATCH)
        settled, waiting = 0, []
        # A few at a time; the first failed lookup ends the sweep (the provider is down or
        # slow: the next sweep tries again, and stopping warnd never waits on many timeouts).
        for start in range(0, len(overdue), RECONCILE_PARALLEL):
            chunk = overdue[start:start + RECONCILE_PARALLEL]
            found = await asyncio.gather(*(lookup[channel].status(sid) for _, channel, sid in chunk))
            for (delivery_id, channel, _), receipt in zip(chunk, found):
                if receipt is None:  # not looked up: first in line next time
                    continue
                if receipt.state == "sent":
                    waiting.append(delivery_id)
                    continue
                await self.receipts.apply(channel, delivery_id, receipt.state, receipt.code,
                                          receipt.provider_ref, receipt.detail)
                self.metrics.reconciled.labels(channel, receipt.state).inc()
                settled += 1
            if any(receipt is None for receipt in found):
                break
        await self.deliveries.looked_up(waiting)
        if overdue:
            log.info("looked up sends with overdue status", extra={"count": len(overdue), "settled": settled})

    async def expire(self) -> None:
        n = await self.deliveries.expire()
        if n:
            log.info("expired pending deliveries", extra={"count": n})
        n = await self.deliveries.retire_stale()
        if n:
            log.info("retired pending sends of ended warnings", extra={"count": n})

    async def refresh_metrics(self) -> None:
        self.metrics.deliveries.clear()
        for channel, state, n in await self.deliveries.counts():
            self.metrics.deliveries.labels(channel, state).set(n)
        due = await self.deliveries.due_count()
        for name in self.channels:
            self.metrics.queue_depth.labels(name).set(due.get(name, 0))
