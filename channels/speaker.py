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
node; on 3.1.1 every node reads every ack (receipts are idempotent).
Without `mqtt.url` the channel starts the embedded broker (warnd.sim.broker).
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from warnd.config import MqttConfig, SpeakerConfig
from warnd.domain.model import Alert, MsgType
from warnd.render import render as render_template
from warnd.render import warning_context

from .base import Message, Outcome, ReceiptSink, Rendered, SendResult
from .mqtt_link import Disconnected, MqttLink, PublishError, PublishTimeout, publish_properties
from .webhook import webhook_id

log = logging.getLogger("warnd.speaker")

CONTENT_TYPE = "application/json"
MESSAGE_ID_RE = re.compile(r"^msg_warnd_(\d{1,18})$")
URL_RE = re.compile(r"(https?://|www\.)\S+", re.IGNORECASE)
BAD_ID_CHARS = frozenset("/+#\x00")
RECEIPT_WORKERS = 32
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
    dedupes = True  # speakers drop duplicate message ids

    def __init__(self, mqtt: MqttConfig, speaker: SpeakerConfig,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.mqtt = mqtt
        self.speaker = speaker
        self.prefix = mqtt.topic_prefix.rstrip("/")
        self.client_id = mqtt.client_id or f"warnd-{secrets.token_hex(4)}"
        self.protocol = mqtt.protocol
        self._clock = clock
        self._link: MqttLink | None = None
        self._sink: ReceiptSink | None = None
        self._inbox: asyncio.Queue = asyncio.Queue()
        self._workers: list[asyncio.Task] = []
        self._stop_broker = None
        self._starting = asyncio.Lock()

    # --- rendering -------------------------------------------------------------------

    def render(self, message: Message) -> Rendered:
        alert, language = message.alert, message.recipient.language
        context = warning_context(alert, message.level, language)
        for key in ("sender_name", "event", "headline", "instruction"):
            context[key] = _spoken(context[key])
        joiner = "" if language.lower().startswith("zh") else " "
        text = re.sub(r"\s*\n\s*", joiner, render_template("speaker", "tts", language, context))
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

    # --- sending ---------------------------------------------------------------------

    async def send(self, message: Message, rendered: Rendered) -> SendResult:
        """Publish once (QoS 1) and wait for the PUBACK; never raises."""
        msg_id = webhook_id(message.delivery_id)
        result = await self._send(message, rendered)
        return replace(result, provider_ref=msg_id)

    async def _send(self, message: Message, rendered: Rendered) -> SendResult:
        alert, speaker_id = message.alert, message.recipient.address
        if alert.status.is_drill and (self.speaker.public or message.recipient.public):
            return SendResult(Outcome.FAILED, "drill.public",
                              detail="Exercise/Test warnings never reach public loudspeakers")
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

    async def start(self, sink: ReceiptSink) -> None:
        """Connect (in the background) and report acks and presence to `sink`."""
        self._sink = sink
        await self._ensure_link()

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
                        on_connect=self._subscribe, on_message=self._on_message)
        self._link = link
        self._workers = [asyncio.create_task(self._report()) for _ in range(RECEIPT_WORKERS)]
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
        acks = f"{self.prefix}/+/ack"
        if self.protocol == 5:
            acks = f"$share/{self.mqtt.shared_group}/{acks}"
        link.subscribe([(acks, 1), (f"{self.prefix}/+/status", 1)])  # again on every connect

    def _on_message(self, message) -> None:  # noqa: ANN001 - a paho MQTTMessage
        topic = message.topic
        if not topic.startswith(self.prefix + "/"):
            return
        speaker_id, _, kind = topic[len(self.prefix) + 1:].rpartition("/")
        if kind == "ack":
            ack = parse_ack(message.payload)
            if ack is None:
                log.warning("malformed speaker ack", extra={"speaker": speaker_id,
                                                            "payload": message.payload[:200]})
                return
            self._inbox.put_nowait(("receipt", ack))
        elif kind == "status" and message.payload:  # an empty retained message clears the status
            try:
                status = json.loads(message.payload)
                online = status["online"]
                if not isinstance(online, bool):
                    raise TypeError("online is not a boolean")
            except (ValueError, TypeError, KeyError, UnicodeDecodeError):
                log.warning("malformed speaker status", extra={"speaker": speaker_id})
                return
            self._inbox.put_nowait(("presence", (speaker_id, online, str(status.get("at", "")))))

    async def _report(self) -> None:
        while True:
            kind, item = await self._inbox.get()
            try:
                if self._sink is None:
                    continue
                if kind == "receipt":
                    await self._sink.receipt(self.name, item.delivery_id, item.state, item.code, None, item.detail)
                else:
                    await self._sink.presence(*item)
            except Exception:  # noqa: BLE001 - one bad receipt must not stop the others
                log.exception("speaker receipt failed", extra={"item": repr(item)[:200]})
            finally:
                self._inbox.task_done()

    async def close(self) -> None:
        if self._link is not None:
            await self._link.close()
            self._link = None
            try:  # hand over the receipts already read
                await asyncio.wait_for(self._inbox.join(), 5.0)
            except TimeoutError:
                log.warning("speaker receipts dropped at close", extra={"count": self._inbox.qsize()})
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._stop_broker is not None:
            await self._stop_broker()
            self._stop_broker = None
