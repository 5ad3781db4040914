"""One warnd node: the stores, the channels, the dispatcher and the scheduled sweeps.

The scheduler only says *when* to look; every sweep reads what is due from the
database, so any node may run it, and a crash loses nothing. Each node beats in
the `nodes` table; the claims of one that stopped beating are taken over by the
others within `dispatcher.takeover_seconds`, and SMS and calls a dead node left
in flight are asked about at Twilio before anything is sent again.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timedelta, timezone


from warnd.clock import Clock, SystemClock, clock_time, provider_time
from warnd.config import Config
from warnd.domain.errors import WarndError
from warnd.domain import readiness
from warnd.domain.signing import sign
from warnd.engine.alerts import AlertCache
from warnd.engine.answers import Answers
from warnd.engine.dispatcher import DEADLINE_MARGIN, Dispatcher
from warnd.engine.intake import Intake
from warnd.engine.metrics import Metrics
from warnd.engine.notices import NoticeSender
from warnd.engine.receipts import Receipts
from warnd.engine.schedules import Schedules
from warnd.engine.sweeps import Sweeps
from warnd.feeds.poller import FeedPoller
from warnd.store import audit, settings
from warnd.store.call_lists import CallListStore
from warnd.store.confirmations import ConfirmationStore
from warnd.store.database import CHECKPOINT_SECONDS, Database
from warnd.store.deliveries import Claimed, DeliveryStore, Unsettled
from warnd.store.coverage import CoverageStore
from warnd.store.escalation import EscalationStore
from warnd.store.speakers import SpeakerStore
from warnd.store.directory import DirectoryStore
from warnd.store.nodes import NodeStore
from warnd.store.queries import Queries
from warnd.store.tokens import TokenStore
from warnd.store.users import UserStore
from warnd.store.warnings import WarningStore
from warnd.domain.sending import (Answered, Audience, Channel, InboundKind, KeyPress, ProviderSend, Receipt, ReceiptState,
                                  Reply, pick, send_window)
from warnd_channels.registry import SPECS, build_channels

log = logging.getLogger("warnd.node")
CALLBACK_VALIDITY = timedelta(days=7)
LINK_PATHS = {"confirm": "c", "call-list": "d"}
CATCH_UP_MARGIN = timedelta(minutes=1)  # replies fetched from before the newest one recorded
CATCH_UP_MAX_WAIT = 300.0  # seconds: a failed catch-up is asked again at most this far apart
RECONCILE_BATCH = 500  # sends looked up per sweep
RECONCILE_PARALLEL = 8  # lookups at once (they share the channel's connections with the sends)


class Node:
    def __init__(self, config: Config, *, clock: Clock | None = None,
                 channels: dict[str, Channel] | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.incarnation = f"{config.node_name}/{uuid.uuid4().hex[:12]}"
        self.db = Database(config.database_url, background_checkpoints=True)
        self.metrics = Metrics()
        self.secret_key = b""  # loaded at start: configured, or kept in the database
        self.channels = channels if channels is not None else build_channels(config, callback_url=self.callback_url)
        self.directory = DirectoryStore(self.db, self.clock,
                                        allow_private_urls=config.webhook.allow_private_urls)
        self.tokens = TokenStore(self.db, self.clock)
        self.users = UserStore(self.db, self.clock, config.accounts)
        self.queries = Queries(self.db)
        self.deliveries = DeliveryStore(self.db, self.clock, self.incarnation,
                                        backups_confirm=config.confirmation.backups_confirm_first_wave)
        self.nodes = NodeStore(self.db, self.clock)
        self.alerts = AlertCache(self.db, config)
        self.dispatcher = Dispatcher(self.deliveries, self.alerts, self.channels, config, self.clock,
                                     self.metrics, self.link_for)
        self.escalation = EscalationStore(self.db, self.clock, self.incarnation)
        self.coverage = CoverageStore(self.db)
        self.speakers = SpeakerStore(self.db, self.clock, config, next(iter(self.devices), None))
        self.receipts = Receipts(self.deliveries, config, self.clock, self.metrics, self.dispatcher.wake)
        self.answers = Answers(ConfirmationStore(self.db), config, self.clock)
        self.intake = Intake(config, self.clock, self.directory, WarningStore(self.db, self.clock),
                             self.alerts, self.metrics, frozenset(self.channels), self.dispatcher.wake)
        self.sweeps = Sweeps(config.display_zone)
        self.feeds = FeedPoller(self)
        self.notices = NoticeSender(self)  # the summary's and the roster's texts
        self.schedules = Schedules(self)
        # what routing and ladders cannot do with these channels (warnd serve refuses errors)
        self.readiness = readiness.check(config, {name: SPECS[name].audience for name in self.channels
                                                  if name in SPECS})
        self.started = False
        self.caught_up = False  # replies received while down fetched (see catch_up_replies)
        self._catch_up_wait = 0.0  # seconds until the next try after a failed one (retry_catch_up)
        self._catch_up_next = datetime.min.replace(tzinfo=timezone.utc)
        self._missed_since: datetime | None = None  # the first reply this node failed to apply (missed_reply)

    async def start(self, *, dispatch: bool = True) -> None:
        """Recover what a previous life of this node left in flight, then start working."""
        self.secret_key = await settings.secret_key(self.db, self.config.secret_key)
        await self.record_start()
        await self.nodes.register(self.incarnation, self.config.node_name)
        await self.recover()
        await self.expire()
        for name, channel in self.channels.items():
            if SPECS[name].stream:  # its own inbound stream (MQTT acks), reported to this node
                await channel.start(self)
        if dispatch:
            await self.dispatcher.start()
        # after the dispatcher (a slow provider list holds back no send), before any
        # escalation (a reply sent while down stops its grid's ladder); retried until done
        await self.catch_up_replies()
        sweeps = self.config.sweeps
        for job, seconds in ((self.heartbeat, self.config.dispatcher.heartbeat_seconds),
                             (self.recover, sweeps.recover_seconds), (self.expire, sweeps.expire_seconds),
                             (self.escalate, sweeps.escalate_seconds), (self.told_by_follow_ups, sweeps.escalate_seconds),
                             (self.refresh_metrics, 5.0),
                             (self.reconcile, sweeps.reconcile_seconds), (self.remind_approvals, 30.0),
                             (self.users.purge_sessions, 3600.0), (self.retry_catch_up, sweeps.recover_seconds),
                             *(((self.db.checkpoint, CHECKPOINT_SECONDS),) if self.db.is_sqlite else ()),
                             *(((self.watch_speakers, sweeps.speaker_seconds),) if self.devices else ())):
            self.sweeps.every(seconds, job)
        if self.notices.channels:
            self.sweeps.every(sweeps.recover_seconds, self.notices.send_due, name="notices")
        for job, seconds, name in self.feeds.jobs():  # one poll job per feed
            self.sweeps.every(seconds, job, name=name)
        for job, cron, name in self.schedules.jobs():  # drills, the daily summary, roster, retention
            self.sweeps.cron(cron, job, name=name)
        self.started = True
        for finding in self.readiness:  # once per start, as serve printed them
            log.log(logging.ERROR if finding.severity == "error" else
                    logging.WARNING if finding.severity == "warning" else logging.INFO,
                    "readiness: %s", finding.en, extra={"readiness": finding.json()})
        log.info("node started", extra={"node": self.incarnation, "channels": sorted(self.channels)})

    @property
    def devices(self) -> list[str]:
        """The enabled channels that reach devices (loudspeakers)."""
        return [name for name in self.channels if SPECS[name].audience is Audience.DEVICE]

    async def catch_up_replies(self) -> int:
        """Apply the replies providers received while warnd was down (or its webhook failed),
        from their message logs, for each channel that can read them: since the newest reply
        warnd had recorded for it (a minute's margin: providers' dates are whole seconds), at
        most `twilio.catch_up_hours` back. Each is applied once (its provider id), at the time
        it was received, oldest first. A lookup that fails is logged, the start goes on (the
        webhook works meanwhile) and the recover sweep asks again until one succeeds.
        Returns how many were new."""
        hours = self.config.twilio.catch_up_hours
        readers = [name for name in self.channels if SPECS[name].replies_lookup]
        if not readers or not hours:
            self.caught_up = True
            return 0
        applied, failed, missed = 0, False, self._missed_since
        for name in readers:
            found = await self._catch_up(name, hours)
            failed |= found is None
            applied += found or 0
        self.caught_up = not failed
        if not failed and self._missed_since == missed:  # none missed meanwhile: all are in
            self._missed_since = None
        return applied

    def missed_reply(self) -> None:
        """A reply's webhook could not be applied (the database away) and was answered 5xx.
        Twilio does not post it again, so the next recover sweep reads the provider's log
        back to a minute before the first reply missed, however many came in since."""
        now = self.clock.now()
        if self._missed_since is None:
            self._missed_since = now
        self.caught_up, self._catch_up_wait, self._catch_up_next = False, 0.0, now

    async def _catch_up(self, name: str, hours: float) -> int | None:
        now = self.clock.now()
        since = now - timedelta(hours=hours)  # nothing recorded yet: the whole window
        newest = await self.answers.store.newest_provider_inbound(name)
        if newest is not None:
            since = max(since, newest - CATCH_UP_MARGIN)
        if self._missed_since is not None:  # a reply refused since: from before it (within the window)
            since = max(now - timedelta(hours=hours), min(since, self._missed_since - CATCH_UP_MARGIN))
        replies = await self.channels[name].replies_since(provider_time(self.clock, since))
        if replies is None:  # logged by the channel; the recover sweep asks again
            return None
        applied = 0
        for reply in sorted(replies, key=lambda r: r.received_at):
            answer = await self.answers.sms_reply(reply.from_number, reply.body, reply.sid,
                                                  received_at=min(clock_time(self.clock, reply.received_at), now),
                                                  channel=name)
            if not answer.replayed:
                applied += 1
                self.metrics.answers.labels(name, answer.decision.kind.value).inc()
        if applied:
            log.warning("replies received while warnd was down applied",
                        extra={"channel": name, "replies": applied, "listed": len(replies),
                               "since": since.isoformat()})
        return applied

    async def retry_catch_up(self) -> None:
        """Ask again after a failed catch-up, backing off (recover interval, doubling, at most
        CATCH_UP_MAX_WAIT): a provider that stays unreachable is not asked, nor logged, every
        few seconds."""
        if self.caught_up or self.clock.now() < self._catch_up_next:
            return
        await self.catch_up_replies()
        if not self.caught_up:
            self._catch_up_wait = min(max(self._catch_up_wait * 2, self.config.sweeps.recover_seconds),
                                      CATCH_UP_MAX_WAIT)
            self._catch_up_next = self.clock.now() + timedelta(seconds=self._catch_up_wait)

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
            await self.notices.close()
            await self.dispatcher.stop()
            await self.receipts.drain()
            try:  # whatever is still claimed (a result that could not be written) is taken over at once
                await self.nodes.stopped(self.incarnation)
            except Exception:  # noqa: BLE001 - the database is away: the others see the beats stop
                log.exception("marking this node stopped failed")
        for channel in self.channels.values():
            await channel.close()
        await self.db.close()
        self.started = False

    def callback_url(self, purpose: str, delivery_id: int) -> str:
        """An absolute provider callback URL carrying the delivery id, signed for that purpose
        only ("<channel>-<kind>", e.g. "sms-status": `/providers/sms/status`).

        A receipt callback's also names the attempt being sent ("<id>.<attempt>"): a callback
        that overtakes its send's result carries no SID warnd knows yet, and the attempt
        alone tells it from a late one of the call before (see DeliveryStore.receipts).
        Without a claim of this process in flight (tools, tests) it is the delivery id alone,
        as URLs were before: those are still honoured, matched by SID only."""
        channel, _, kind = purpose.partition("-")
        receipts = SPECS[channel].inbound[kind].kind is InboundKind.RECEIPTS
        attempt = self.deliveries.sending_attempt(delivery_id) if receipts else None
        value = str(delivery_id) if attempt is None else f"{delivery_id}.{attempt}"
        token = sign(self.secret_key, purpose, value, self.clock.now() + CALLBACK_VALIDITY)
        return f"{self.config.public_base_url.rstrip('/')}/providers/{channel}/{kind}?d={token}"

    def link_url(self, kind: str, value: str) -> str:
        """A signed, expiring link for people: "confirm" (/c/…) or "call-list" (/d/…)."""
        token = sign(self.secret_key, kind, value, self.clock.now() + timedelta(days=self.config.link_days))
        return f"{self.config.public_base_url.rstrip('/')}/{LINK_PATHS[kind]}/{token}"

    def link_for(self, row: Claimed) -> str:
        if row.purpose in ("door_to_door", "door_alarm") and row.params and "list_id" in row.params:
            return self.link_url("call-list", str(row.params["list_id"]))
        if row.must_confirm and SPECS[row.channel].confirm_by_text and self.config.channel(row.channel).confirm_link:
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

    async def told_by_follow_ups(self) -> int:
        """Not-at-home households whose follow-up call was answered are 已通知 (told); a list
        whose every household is now told or moved covers its grid, as a visitor's mark does."""
        channels = [c for c in self.config.door.told_by_answered if c in self.channels]
        told = await CallListStore(self.db).told_by_follow_up(channels, self.clock.now())
        if told:
            log.info("households told by an answered follow-up", extra={"households": told})
        return told

    async def remind_approvals(self) -> None:
        """An approval waiting longer than `approval.remind_minutes` raises an operator alarm, once."""
        minutes = self.config.approval.remind_minutes
        for warning_id in await self.intake.warnings.overdue_approvals(self.clock.now() - timedelta(minutes=minutes)):
            if await self.intake.warnings.raise_overdue(warning_id, minutes):
                self.metrics.alarms.labels("approval.overdue").inc()
                log.error("operator alarm: warning waits for approval", extra={"alarm": True, "warning": warning_id,
                                                                               "minutes": minutes})

    # InboundSink: what channels report from their providers (the generic route, MQTT).
    async def receipt(self, channel: str, delivery_id: int | None, receipt: Receipt,
                      attempt: int | None = None) -> bool:
        if delivery_id is None:  # a receipt no delivery of ours is named in: nothing to settle
            log.info("receipt for no delivery", extra={"channel": channel, "code": receipt.code,
                                                       "sid": receipt.provider_ref})
            return False
        return await self.receipts.apply(channel, delivery_id, receipt.state, receipt.code,
                                         receipt.provider_ref or None, receipt.detail, attempt)

    async def reply(self, channel: str, reply: Reply) -> Answered:
        try:
            answer = await self.answers.sms_reply(reply.from_address, reply.body, reply.provider_ref or None,
                                                  received_at=reply.received_at, channel=channel)
        except WarndError:
            raise
        except Exception:
            if SPECS[channel].replies_lookup:  # answered 5xx: fetched from the provider's log later
                self.missed_reply()
            raise
        self.metrics.answers.labels(channel, "replayed" if answer.replayed else answer.decision.kind.value).inc()
        return Answered(answer.text, answer.language, answer.replayed)

    async def key_press(self, channel: str, press: KeyPress) -> Answered:
        pressed = await self.answers.key_press(press.delivery_id, press.digits, press.from_address,
                                               press.provider_ref, channel=channel)
        if pressed is None:  # this call's key press was applied before
            self.metrics.answers.labels(channel, "replayed").inc()
            return Answered("", replayed=True)
        self.metrics.answers.labels(channel, pressed.kind.value).inc()
        return Answered(pressed.text, pressed.language)

    async def presence(self, device_id: str, online: bool, detail: str = "") -> None:
        await self.speakers.set_presence(device_id, online, detail)

    async def watch_speakers(self) -> None:
        """Grids whose speakers stayed silent escalate; warnings in force are replayed."""
        if await self.speakers.mark_uncovered():
            await self.escalate()
        if await self.speakers.rebroadcast():
            self.dispatcher.wake()

    async def heartbeat(self) -> None:
        """This node is alive; a node that stopped beating has its claims taken over now."""
        if not await self.nodes.beat(self.incarnation):
            log.error("this node's heartbeat row is gone or marked stopped", extra={"node": self.incarnation})
        if await self.nodes.dead_with_claims(self.config.dispatcher.takeover_seconds, self.incarnation):
            await self.take_over()

    async def recover(self) -> None:
        """Dead claims are taken over, then uncertain SMS and calls are settled at the provider."""
        await self.take_over()
        await self.settle_uncertain()
        await self.resend_unlookable()

    async def take_over(self) -> dict[str, int]:
        """Claims of dead processes (an earlier life of this node, a node that stopped or stopped
        beating, a lease run out): unsent ones go out again at once, see DeliveryStore.recover."""
        dead = await self.nodes.dead_with_claims(self.config.dispatcher.takeover_seconds, self.incarnation)
        dedupe = {name for name in self.channels if SPECS[name].dedupes}
        counts = await self.deliveries.recover(self.config.node_name, dedupe, dead)
        for fate, n in counts.items():
            if n:
                self.metrics.recovered.labels(fate).inc(n)
                log.warning("recovered deliveries from a dead claim", extra={"fate": fate, "count": n,
                                                                             "dead": dead})
        if counts.get("unsent") or counts.get("resent"):
            self.dispatcher.wake()
        return counts

    async def settle_uncertain(self) -> None:
        """SMS and calls handed to Twilio whose outcome is unknown (a crash, a timeout) are
        looked up in Twilio's lists, per number: found → settled from its status, never sent
        again; not found → sent again at once; lookup failed → asked again next sweep (the
        first failure ends this one: Twilio is down or slow)."""
        lookup = {name: ch for name, ch in self.channels.items() if SPECS[name].status_lookup}
        if not lookup:
            return
        now, twilio = self.clock.now(), self.config.twilio
        rows = await self.deliveries.unsettled(
            sorted(lookup), now - timedelta(seconds=twilio.lookup_uncertain_after_seconds),
            now - timedelta(hours=twilio.reconcile_hours), RECONCILE_BATCH)
        groups: dict[tuple[str, str], list[Unsettled]] = {}
        for row in rows:
            groups.setdefault((row.channel, row.address), []).append(row)
        pending = list(groups.values())
        for start in range(0, len(pending), RECONCILE_PARALLEL):
            chunk = pending[start:start + RECONCILE_PARALLEL]
            windows = [[(r.id, *self._send_window(r)) for r in group] for group in chunk]
            found = await asyncio.gather(*(lookup[group[0].channel].find(group[0].address, min(w[1] for w in ws))
                                           for group, ws in zip(chunk, windows)))
            for group, ws, sends in zip(chunk, windows, found):
                if sends is not None:
                    await self._settle(group, ws, sends)
            if any(sends is None for sends in found):
                log.warning("looking up uncertain sends failed; asking again next sweep")
                break

    def _send_window(self, row: Unsettled) -> tuple:
        """When Twilio may have created the send, in Twilio's (real) time."""
        seconds = self.config.channel(row.channel).timeout_seconds + DEADLINE_MARGIN  # real seconds: HTTP
        real = [None if t is None else provider_time(self.clock, t) for t in (row.handed_at, row.created_at,
                                                                              row.updated_at)]
        return send_window(*real, seconds)

    async def _settle(self, group: list[Unsettled], windows: list[tuple], sends: list[ProviderSend]) -> None:
        """One number's uncertain sends of one channel, against what the provider has."""
        channel = group[0].channel
        taken = await self.deliveries.known_refs(channel, [s.sid for s in sends])
        picked = pick(windows, sends, taken)
        for row in group:
            send = picked[row.id]
            if send is None or not await self.deliveries.found_at_provider(row.id, send.sid):
                continue
            receipt = send.receipt
            if receipt.state != ReceiptState.SENT:  # its final status: as if its callback had come
                await self.receipts.apply(channel, row.id, receipt.state, receipt.code, send.sid, receipt.detail,
                                          row.attempts)
            self.metrics.reconciled.labels(channel, ReceiptState(receipt.state).value).inc()
        missing = [row.id for row in group if picked[row.id] is None]
        if await self.deliveries.not_at_provider(missing):
            self.metrics.recovered.labels("not_at_provider").inc(len(missing))
            log.warning("uncertain sends not at the provider: sending again", extra={"channel": channel,
                                                                                      "count": len(missing)})
            self.dispatcher.wake()

    async def resend_unlookable(self) -> None:
        """The last resort (twilio.resend_uncertain_after_seconds), only for channels that do
        not de-duplicate and cannot be looked up at their provider: none ship today."""
        quiet = self.config.twilio.resend_uncertain_after_seconds
        blind = sorted(name for name in self.channels if not SPECS[name].dedupes and not SPECS[name].status_lookup)
        if quiet is None or not blind:
            return
        n = await self.deliveries.resend_uncertain(blind, self.clock.now() - timedelta(seconds=quiet))
        if n:
            self.metrics.recovered.labels("resent_blind").inc(n)
            log.warning("sending again what stayed uncertain", extra={"count": n, "channels": blind})
            self.dispatcher.wake()

    async def reconcile(self) -> None:
        """Sends whose final status callback is overdue are looked up at the provider.

        Twilio posts each status once; one posted while warnd was down or unreachable
        is lost, and without this its delivery would stay `sent` for good.
        """
        lookup = {name: ch for name, ch in self.channels.items() if SPECS[name].status_lookup}
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
            found = await asyncio.gather(*(lookup[channel].status(sid) for _, channel, sid, _ in chunk))
            for (delivery_id, channel, _, attempt), receipt in zip(chunk, found):
                if receipt is None:  # not looked up: first in line next time
                    continue
                if receipt.state == ReceiptState.SENT:
                    waiting.append(delivery_id)
                    continue
                await self.receipts.apply(channel, delivery_id, receipt.state, receipt.code,
                                          receipt.provider_ref, receipt.detail, attempt)
                self.metrics.reconciled.labels(channel, ReceiptState(receipt.state).value).inc()
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
