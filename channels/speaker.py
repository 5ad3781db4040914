"""Village loudspeakers (应急广播, 村村响) over MQTT: play, played-acks, presence, stop.

Topics, under `mqtt.topic_prefix` (default `warnd/speakers`):

    {prefix}/{speaker_id}/cmd     warnd → speaker, QoS 1, not retained
    {prefix}/{speaker_id}/ack     speaker → warnd: {"message_id", "state", "detail"?}
                                  state: received | playing | played | failed
    {prefix}/{speaker_id}/status  speaker, retained: {"online": true|false, "at": iso};
                                  the speaker's Last Will is the offline status, retained

Commands (JSON, UTF-8). A warning (CAP Alert/Update):

    {"type": "play", "message_id": "msg_warnd_<delivery id>", "warning_id": 7,
     "identifier": <CAP identifier>, "references": [CAP identifiers this one replaces],
     "level": "red", "tts_text": <spoken zh-CN text, 【演练】 first for drills>,
     "audio_url": <first CAP resource uri with an audio/* type, or null>,
     "repeat": 3, "volume": 90, "expires": iso or null, "drill": false}

A CAP Cancel: {"type": "stop", "message_id", "references": [identifiers], "identifier"}
— the speaker stops playing those warnings and forgets them (acks it played).

Speakers keep a persistent session (MQTT 5: clean_start false + a session
expiry; 3.1.1: clean_session false) and subscribe to their cmd topic with QoS 1,
so commands published while they are away wait at the broker. They drop a
message_id they have seen (QoS 1 may deliver twice; a retry re-sends the same
id), never play a command after `expires` (ack failed "expired"), and stop the
warnings a play command's `references` replace. With MQTT 5 the publish
carries a Message Expiry Interval ending at `expires`, so the broker drops it
for a speaker that comes back too late; an already expired warning is not
published at all (FAILED `expired`). MQTT 3.1.1 has only the payload field.

A speaker re-publishes a played/failed ack, with backoff, while its PUBACK
says 0x10 "no matching subscribers": no warnd node is subscribed at that moment
— e.g. just after a broker restart, as Mosquitto 2.0 does not restore shared
subscriptions from its persistence file (warnd subscribes again on reconnect).

`send()` is SENT when the broker acknowledged the publish (PUBACK); the played
ack later makes the delivery delivered (`mqtt.played`) or failed
(`mqtt.play_failed`). Acks are read through the shared subscription
`$share/{shared_group}/{prefix}/+/ack` (MQTT 5), so each ack reaches one warnd
node; on 3.1.1 every node reads every ack (receipts are idempotent). A channel
without a sink (`start` not called: it only sends) does not subscribe, so it
takes no share of the acks it could not record.

Acks and statuses are acknowledged to the broker (PUBACK) only once their
receipt or presence is committed: a node killed in between loses none, as the
broker keeps them in the node's persistent session and re-sends them when the
node (the same client id, `warnd-<node name>`) connects again; the receipt is
then applied again, which changes nothing if it had been committed. A message
that is not a receipt (malformed, not ours) is acknowledged at once, or it would
come back after every reconnect; it is counted in `inbound` and logged.
Without `mqtt.url` the channel starts the embedded broker (warnd.sim.broker).
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from warnd.config import MqttConfig, SpeakerConfig
from warnd.domain.model import Alert, Level, MsgType
from warnd.render import render as render_template
from warnd.render import warning_context

from .base import Audience, ChannelSpec, InboundSink, Message, Outcome, Receipt, ReceiptState, Rendered, SendResult
from .mqtt_link import Acker, Disconnected, MqttLink, PublishError, PublishTimeout, publish_properties
from .webhook import webhook_id

log = logging.getLogger("warnd.speaker")

CONTENT_TYPE = "application/json"
MESSAGE_ID_RE = re.compile(r"^msg_warnd_(\d{1,18})$")
URL_RE = re.compile(r"(https?://|www\.)\S+", re.IGNORECASE)
BAD_ID_CHARS = frozenset("/+#\x00")
RECEIPT_WORKERS = 32
SPOKEN_KEPT = 256  # spoken texts kept (warning × level × language)
COMMIT_ATTEMPTS = 5  # tries of one receipt's write before it is left to the broker to re-send
COMMIT_BACKOFF = (0.2, 5.0)  # seconds between tries: first, most
STALL_SECONDS = 1.0  # messages held with no commit for this long: the database is stalled
STALL_LOG_EVERY = 10.0  # seconds between two "stalled" warnings
# ack state → (receipt state for the engine, code); "sent" changes nothing there
ACK_STATES = {"played": ("delivered", "mqtt.played"), "failed": ("failed", "mqtt.play_failed"),
              "received": ("sent", "mqtt.received"), "playing": ("sent", "mqtt.playing")}
# PUBACK reason codes (MQTT 5 §3.4.2.1) → (outcome, code)
REASONS: dict[int, tuple[Outcome, str]] = {
    0x00: (Outcome.SENT, "mqtt.success"),
    0x10: (Outcome.SENT, "mqtt.no_matching_subscribers"),  # the speaker has no session yet: acks decide
    0x80: (Outcome.RETRY, "mqtt.unspecified_error"),
    0x83: (Outcome.RETRY, "mqtt.implementation_specific_error"),
    0x87: (Outcome.FAILED, "mqtt.not_authorized"),
    0x90: (Outcome.FAILED, "mqtt.topic_name_invalid"),
    0x91: (Outcome.RETRY, "mqtt.packet_identifier_in_use"),
    0x97: (Outcome.RETRY, "mqtt.quota_exceeded"),
    0x99: (Outcome.FAILED, "mqtt.payload_format_invalid"),
}


def classify(reason_code: int) -> SendResult:
    """What a PUBACK reason code means for the delivery (3.1.1 acks are always 0)."""
    if reason_code in REASONS:
        outcome, code = REASONS[reason_code]
    elif reason_code < 0x80:
        outcome, code = Outcome.SENT, f"mqtt.reason_{reason_code:#04x}"
    else:
        outcome, code = Outcome.RETRY, f"mqtt.reason_{reason_code:#04x}"
    detail = "" if outcome is Outcome.SENT else f"PUBACK reason {reason_code:#04x}"
    return SendResult(outcome, code, detail=detail)


def parse_message_id(message_id: object) -> int | None:
    """msg_warnd_<delivery id> → the delivery id."""
    match = MESSAGE_ID_RE.match(message_id) if isinstance(message_id, str) else None
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Ack:
    delivery_id: int
    state: str  # the engine's receipt state: delivered / failed / sent
    code: str
    detail: str


def parse_ack(payload: bytes) -> Ack | None:
    """A speaker's ack, or None when it is not one we understand."""
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("state") not in ACK_STATES:
        return None
    delivery_id = parse_message_id(data.get("message_id"))
    if delivery_id is None:
        return None
    state, code = ACK_STATES[data["state"]]
    detail = data.get("detail")
    return Ack(delivery_id, state, code, detail[:500] if isinstance(detail, str) else "")


def audio_url(alert: Alert, language: str) -> str | None:
    """The first CAP resource with an audio MIME type (the recipient's info block first)."""
    first = alert.info_for(language)
    infos = ([first] if first else []) + [i for i in alert.infos if i is not first]
    return next((r.uri for i in infos for r in i.resources
                 if r.uri and r.mime_type.lower().startswith("audio/")), None)


def _spoken(text: str) -> str:
    """Text fit for TTS: no URLs, no trailing full stop (the template adds one)."""
    return " ".join(URL_RE.sub("", text).split()).rstrip("。.！!；; ")


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).isoformat()


class SpeakerChannel:
    name = "speaker"

    def __init__(self, mqtt: MqttConfig, speaker: SpeakerConfig,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.mqtt = mqtt
        self.speaker = speaker
        self.prefix = mqtt.topic_prefix.rstrip("/")
        self.client_id = mqtt.client_id or f"warnd-{secrets.token_hex(4)}"
        self.protocol = mqtt.protocol
        self._clock = clock
        self._link: MqttLink | None = None
        self._sink: InboundSink | None = None
        self._inbox: asyncio.Queue = asyncio.Queue()  # (kind, item, its acker)
        # received, redelivered (DUP), acked, not_acked (left to the broker to re-send), and
        # what was acknowledged without a receipt: not_ours, malformed_ack, malformed_status, …
        self.inbound: Counter[str] = Counter()
        self._workers: list[asyncio.Task] = []
        self._stop_broker = None
        self._starting = asyncio.Lock()
        self._spoken: dict[tuple[int, Level, str], tuple[Alert, str]] = {}  # see _spoken_text

    # --- rendering -------------------------------------------------------------------

    def render(self, message: Message) -> Rendered:
        alert, language = message.alert, message.recipient.language
        text = self._spoken_text(alert, message.level, language)
        common = {"message_id": webhook_id(message.delivery_id), "identifier": alert.identifier,
                  "references": [r.identifier for r in alert.references]}
        if alert.msg_type is MsgType.CANCEL:
            payload = {"type": "stop", **common}
        else:
            payload = {"type": "play", **common, "warning_id": message.warning_id,
                       "level": message.level.label, "tts_text": text, "audio_url": audio_url(alert, language),
                       "repeat": self.speaker.repeat, "volume": self.speaker.volume,
                       "expires": _iso(alert.expires), "drill": alert.status.is_drill}
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return Rendered(body, CONTENT_TYPE, text)

    def _spoken_text(self, alert: Alert, level: Level, language: str) -> str:
        """What the speakers say: the same for every speaker of a warning, level and language,
        so rendered once, not once per speaker. Keyed by the parsed warning itself (the
        dispatcher hands every row of a warning the same one), which the cache keeps alive."""
        key = (id(alert), level, language)
        known = self._spoken.get(key)
        if known is not None and known[0] is alert:
            return known[1]
        context = warning_context(alert, level, language)
        for name in ("sender_name", "event", "headline", "instruction"):
            context[name] = _spoken(context[name])
        joiner = "" if language.lower().startswith("zh") else " "
        text = re.sub(r"\s*\n\s*", joiner, render_template("speaker", "tts", language, context))
        if len(self._spoken) >= SPOKEN_KEPT:
            self._spoken.clear()
        self._spoken[key] = (alert, text)
        return text

    # --- sending ---------------------------------------------------------------------

    async def send(self, message: Message, rendered: Rendered) -> SendResult:
        """Publish once (QoS 1) and wait for the PUBACK; never raises."""
        msg_id = webhook_id(message.delivery_id)
        result = await self._send(message, rendered)
        return replace(result, provider_ref=msg_id)

    async def _send(self, message: Message, rendered: Rendered) -> SendResult:
        alert, speaker_id = message.alert, message.recipient.address
        if not speaker_id or BAD_ID_CHARS & set(speaker_id):
            return SendResult(Outcome.FAILED, "speaker.invalid_id", detail=f"speaker id {speaker_id!r}")
        properties = None
        if alert.msg_type is not MsgType.CANCEL and alert.expires is not None:
            remaining = (alert.expires - self._clock()).total_seconds()
            if remaining <= 0:
                return SendResult(Outcome.FAILED, "expired", detail=f"the warning expired at {_iso(alert.expires)}")
            if self.protocol == 5:
                properties = publish_properties(math.ceil(remaining))
        try:
            link = await self._ensure_link()
            reason = await link.publish(f"{self.prefix}/{speaker_id}/cmd", rendered.body, qos=1,
                                        properties=properties, timeout=self.speaker.timeout_seconds)
        except Disconnected as exc:
            return SendResult(Outcome.RETRY, "mqtt.disconnected", detail=str(exc))
        except PublishTimeout as exc:  # the broker may have it: a re-send is de-duplicated
            return SendResult(Outcome.RETRY, "mqtt.timeout", detail=str(exc))
        except PublishError as exc:
            return SendResult(Outcome.RETRY, "mqtt.publish_error", detail=str(exc))
        except ValueError as exc:  # paho: bad topic, payload too large
            return SendResult(Outcome.FAILED, "mqtt.invalid", detail=str(exc)[:256])
        except Exception as exc:  # noqa: BLE001 - e.g. the embedded broker did not start
            return SendResult(Outcome.RETRY, "mqtt.error", detail=f"{type(exc).__name__}: {exc}"[:256])
        return classify(reason)

    # --- the inbound stream: acks and presence ------------------------------------------

    async def start(self, sink: InboundSink) -> None:
        """Connect (in the background) and report acks and presence to `sink`."""
        self._sink = sink
        link = await self._ensure_link()
        if link.connected.is_set():  # connected by an earlier send, without a sink: subscribe now
            self._subscribe(link, True)

    async def _ensure_link(self) -> MqttLink:
        if self._link is not None:
            return self._link
        async with self._starting:  # two first sends must not make two connections
            if self._link is None:
                await self._connect()
        return self._link

    async def _connect(self) -> None:
        url = self.mqtt.url
        if url is None:
            url = await self._embedded_broker()
        link = MqttLink(url, client_id=self.client_id, protocol=self.protocol, inflight=self.mqtt.inflight,
                        on_connect=self._subscribe, on_message=lambda m: self._on_message(link, m),
                        manual_ack=True)
        self._link = link
        self._workers = [asyncio.create_task(self._report()) for _ in range(RECEIPT_WORKERS)]
        self._workers.append(asyncio.create_task(self._watch_stalls()))
        await link.start()

    async def _embedded_broker(self) -> str:
        from warnd.sim.broker import BrokerError, start_embedded_broker  # the demo's broker

        port = self.mqtt.embedded_port
        try:
            url, self.protocol, self._stop_broker = await start_embedded_broker(port)
        except (BrokerError, OSError) as exc:  # another local node runs it already
            log.warning("embedded broker not started; using the one on its port",
                        extra={"port": port, "error": str(exc)})
            url = f"mqtt://127.0.0.1:{port}"
        return url

    def _subscribe(self, link: MqttLink, session_present: bool) -> None:
        if self._sink is None:
            return  # nobody to record acks: leave them to the nodes that do
        acks = f"{self.prefix}/+/ack"
        if self.protocol == 5:
            acks = f"$share/{self.mqtt.shared_group}/{acks}"
        link.subscribe([(acks, 1), (f"{self.prefix}/+/status", 1)])  # again on every connect

    def _on_message(self, link: MqttLink, message) -> None:  # noqa: ANN001 - a paho MQTTMessage
        """Queue a receipt or presence with its PUBACK, sent once it is committed; acknowledge
        anything else at once (un-acknowledged, it would come back after every reconnect)."""
        ack = link.acker(message)
        self.inbound["received"] += 1
        if message.dup:
            self.inbound["redelivered"] += 1
        try:
            item = self._read(message)
        except Exception:  # noqa: BLE001 - e.g. a topic that is not UTF-8
            log.exception("unreadable speaker message")
            self.inbound["unreadable"] += 1
            item = None
        if item is None:
            self._settle(ack)
        else:
            self._inbox.put_nowait((*item, ack))

    def _read(self, message) -> tuple[str, object] | None:  # noqa: ANN001
        """("receipt", Ack) or ("presence", (speaker, online, at)); None (counted) for anything else."""
        topic = message.topic
        speaker_id, _, kind = topic[len(self.prefix) + 1:].rpartition("/")
        if not topic.startswith(self.prefix + "/") or kind not in ("ack", "status"):
            self.inbound["not_ours"] += 1
            return None
        if self._sink is None:
            self.inbound["no_sink"] += 1
            return None
        if kind == "ack":
            ack = parse_ack(message.payload)
            if ack is None:
                log.warning("malformed speaker ack", extra={"speaker": speaker_id,
                                                            "payload": message.payload[:200]})
                self.inbound["malformed_ack"] += 1
                return None
            return "receipt", ack
        if not message.payload:  # an empty retained message clears the status
            self.inbound["cleared_status"] += 1
            return None
        try:
            status = json.loads(message.payload)
            online = status["online"]
            if not isinstance(online, bool):
                raise TypeError("online is not a boolean")
        except (ValueError, TypeError, KeyError, UnicodeDecodeError):
            log.warning("malformed speaker status", extra={"speaker": speaker_id})
            self.inbound["malformed_status"] += 1
            return None
        return "presence", (speaker_id, online, str(status.get("at", "")))

    def _settle(self, ack: Acker) -> None:
        """Send a PUBACK; one whose connection is gone is re-sent by the broker instead."""
        self.inbound["acked" if ack() else "not_acked"] += 1

    @property
    def held(self) -> int:
        """Messages read and not yet acknowledged (their receipts are being committed)."""
        return self.inbound["received"] - self.inbound["acked"] - self.inbound["not_acked"]

    async def _report(self) -> None:
        while True:
            kind, item, ack = await self._inbox.get()
            try:
                if await self._commit(kind, item):
                    self._settle(ack)
                else:
                    self.inbound["not_acked"] += 1
            finally:
                self._inbox.task_done()

    async def _commit(self, kind: str, item) -> bool:  # noqa: ANN001
        """Hand one message to the sink; True once committed. A failed write is tried again (the
        database may be back in a moment); after COMMIT_ATTEMPTS it stays un-acknowledged, and
        the broker re-sends it after the next reconnect."""
        pause, most = COMMIT_BACKOFF
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                if kind == "receipt":
                    await self._sink.receipt(self.name, item.delivery_id,
                                             Receipt(ReceiptState(item.state), item.code, "", item.detail))
                else:
                    await self._sink.presence(*item)
                return True
            except Exception as exc:  # noqa: BLE001 - one bad receipt must not stop the others
                if attempt == COMMIT_ATTEMPTS:
                    log.exception("speaker receipt not committed; left to the broker to re-send",
                                  extra={"item": repr(item)[:200]})
                    return False
                log.warning("speaker receipt not committed; trying again",
                            extra={"item": repr(item)[:200], "error": repr(exc)[:200], "attempt": attempt})
                await asyncio.sleep(pause)
                pause = min(pause * 2, most)
        return False

    async def _watch_stalls(self) -> None:
        """Warn when messages wait while none gets committed: the database is stalled. (They
        are safe: un-acknowledged, the broker keeps them until their PUBACK.)"""
        loop = asyncio.get_running_loop()
        held, settled, quiet_until = 0, 0, 0.0
        while True:
            await asyncio.sleep(STALL_SECONDS)
            now_settled = self.inbound["acked"] + self.inbound["not_acked"]
            # held a whole tick ago, and not one settled since (a message just read is no stall)
            if held > 0 and now_settled == settled and loop.time() >= quiet_until:
                log.warning("speaker messages wait for the database; not acknowledged to the broker yet",
                            extra={"held": self.held})
                quiet_until = loop.time() + STALL_LOG_EVERY
            held, settled = self.held, now_settled

    async def close(self) -> None:
        if self._link is not None:
            try:  # commit and acknowledge what was read while the connection is still up
                await asyncio.wait_for(self._inbox.join(), 5.0)
            except TimeoutError:
                log.warning("speaker messages left for the broker to re-send", extra={"count": self.held})
            await self._link.close()
            self._link = None
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._stop_broker is not None:
            await self._stop_broker()
            self._stop_broker = None


def _build(section: SpeakerConfig, config, callback_url) -> SpeakerChannel:  # noqa: ANN001
    # A stable client id: a restarted node resumes its persistent session instead of
    # leaving a dead one in the shared ack group to swallow half of the acks.
    mqtt = config.mqtt if config.mqtt.client_id else config.mqtt.model_copy(
        update={"client_id": f"warnd-{config.node_name}"})
    return SpeakerChannel(mqtt, section)


SPEC = ChannelSpec(
    name="speaker", audience=Audience.DEVICE, address="device",
    dedupes=True,  # speakers drop duplicate message ids
    public=True,  # village loudspeakers: never for drills unless configured otherwise
    config_model=SpeakerConfig, build=_build, stream=True)
