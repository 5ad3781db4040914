"""The speaker channel: pure parts by table, then against a real Mosquitto with simulated speakers."""
from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from factories import alert as make_alert
from mosquitto import running_mosquitto

from warnd.config import Config, MqttConfig, SpeakerConfig
from warnd.domain.model import MsgType, Reference, Resource, Status
from warnd.sim.speakers import Behaviour, SpeakerFleet
from warnd_channels import conformance as kit
from warnd_channels.base import Outcome, Recipient
from warnd_channels.mqtt_link import MqttLink
from warnd_channels.registry import SPECS, build_channels
from warnd_channels.speaker import SpeakerChannel, classify, parse_ack, parse_message_id

WAIT = 60.0  # every wait is bounded by this


# --- classification of PUBACK reason codes

CASES = [
    kit.Case("puback-success", (0x00,), Outcome.SENT, "mqtt.success"),
    kit.Case("puback-no-subscribers", (0x10,), Outcome.SENT, "mqtt.no_matching_subscribers"),
    kit.Case("puback-unspecified", (0x80,), Outcome.RETRY, "mqtt.unspecified_error"),
    kit.Case("puback-implementation", (0x83,), Outcome.RETRY, "mqtt.implementation_specific_error"),
    kit.Case("puback-not-authorized", (0x87,), Outcome.FAILED, "mqtt.not_authorized"),
    kit.Case("puback-topic-invalid", (0x90,), Outcome.FAILED, "mqtt.topic_name_invalid"),
    kit.Case("puback-packet-id-in-use", (0x91,), Outcome.RETRY, "mqtt.packet_identifier_in_use"),
    kit.Case("puback-quota", (0x97,), Outcome.RETRY, "mqtt.quota_exceeded"),
    kit.Case("puback-payload-format", (0x99,), Outcome.FAILED, "mqtt.payload_format_invalid"),
    kit.Case("puback-unknown-success", (0x05,), Outcome.SENT, "mqtt.reason_0x05", None),
    kit.Case("puback-unknown-error", (0xA2,), Outcome.RETRY, "mqtt.reason_0xa2", None),
]


@pytest.mark.parametrize("case", CASES, ids=kit.case_id)
def test_classify(case):
    kit.check_case(classify, case)


@pytest.mark.parametrize("payload, expected", [
    (b'{"message_id": "msg_warnd_12", "state": "played"}', (12, "delivered", "mqtt.played", "")),
    (b'{"message_id": "msg_warnd_3", "state": "failed", "detail": "amp"}', (3, "failed", "mqtt.play_failed", "amp")),
    (b'{"message_id": "msg_warnd_4", "state": "received"}', (4, "sent", "mqtt.received", "")),
    (b'{"message_id": "msg_warnd_4", "state": "playing"}', (4, "sent", "mqtt.playing", "")),
    (b'{"message_id": "msg_warnd_4", "state": "exploded"}', None),
    (b'{"message_id": "msg_other_4", "state": "played"}', None),
    (b'{"message_id": 4, "state": "played"}', None),
    (b'["played"]', None),
    (b"\xff\xfe not json", None),
])
def test_parse_ack(payload, expected):
    ack = parse_ack(payload)
    assert (ack and (ack.delivery_id, ack.state, ack.code, ack.detail)) == expected


def test_parse_message_id():
    assert parse_message_id("msg_warnd_77") == 77
    assert parse_message_id("msg_warnd_") is None and parse_message_id(None) is None


# --- rendering

def future_alert(identifier: str = "W1", **kw):
    return make_alert(identifier, expires=datetime.now(timezone.utc) + timedelta(hours=1), **kw)


def speaker_recipient(sid: str = "spk-00000", language: str = "zh-CN") -> Recipient:
    return Recipient("speaker", sid, sid, language)


def message_for(sid: str, alert, delivery_id: int = 1, warning_id: int = 1):
    return kit.sample_message(speaker_recipient(sid), alert=alert, delivery_id=delivery_id, warning_id=warning_id)


@pytest.fixture
def offline_channel():
    """A channel whose broker is nowhere: enough for render() and the checks before publishing."""
    return SpeakerChannel(MqttConfig(url="mqtt://127.0.0.1:9"), SpeakerConfig(enabled=True, timeout_seconds=0.3))


def test_renders_for_zh_and_en(offline_channel):
    out = kit.check_languages(offline_channel, lambda lang: kit.sample_message(speaker_recipient(language=lang)))
    assert out["zh-CN"].text.startswith("长沙市气象台发布暴雨红色预警。")
    assert "立即转移低洼地带人员" in out["zh-CN"].text and "\n" not in out["zh-CN"].text
    assert "red Rainstorm warning" in out["en"].text


def test_drills_are_marked(offline_channel):
    kit.check_drill_marking(offline_channel, lambda alert: kit.sample_message(speaker_recipient(), alert=alert))
    drill = kit.sample_message(speaker_recipient(), alert=kit.sample_alert(status=Status.EXERCISE))
    assert offline_channel.render(drill).text.startswith("【演练】")


def test_play_payload(offline_channel):
    base = kit.sample_alert()
    zh = replace(base.infos[0], instruction="立即转移，详见 https://example.cn/x 。",
                 resources=(Resource("map", "image/png", uri="https://example.cn/m.png"),
                            Resource("voice", "audio/mpeg", uri="https://example.cn/w.mp3")))
    alert = replace(base, msg_type=MsgType.UPDATE, infos=(zh, base.infos[1]),
                    references=(Reference(base.sender, "CN-OLD-1", "2025-07-01T07:00:00+08:00"),))
    message = kit.sample_message(speaker_recipient(), alert=alert, delivery_id=42, warning_id=7)
    rendered = offline_channel.render(message)
    body = json.loads(rendered.body)
    assert rendered.content_type == "application/json" and "红色" in rendered.body.decode()
    assert body == {"type": "play", "message_id": "msg_warnd_42", "warning_id": 7, "identifier": alert.identifier,
                    "references": ["CN-OLD-1"], "level": "red", "tts_text": rendered.text,
                    "audio_url": "https://example.cn/w.mp3", "repeat": 3, "volume": 90,
                    "expires": alert.expires.isoformat(), "drill": False}
    assert "http" not in rendered.text and "（更新）" in rendered.text


def test_cancel_is_a_stop(offline_channel):
    base = kit.sample_alert()
    alert = replace(base, identifier="CN-C-1", msg_type=MsgType.CANCEL,
                    references=(Reference(base.sender, base.identifier, "x"),))
    rendered = offline_channel.render(kit.sample_message(speaker_recipient(), alert=alert, delivery_id=5))
    assert json.loads(rendered.body) == {"type": "stop", "message_id": "msg_warnd_5",
                                         "references": [base.identifier], "identifier": "CN-C-1"}
    assert "解除" in rendered.text


# --- sending: the checks before any publish

async def test_expired_is_never_published(offline_channel):
    expired = make_alert("OLD", expires=datetime.now(timezone.utc) - timedelta(seconds=1))
    message = message_for("spk-1", expired)
    result = await offline_channel.send(message, offline_channel.render(message))
    assert (result.outcome, result.code, result.provider_ref) == (Outcome.FAILED, "expired", "msg_warnd_1")
    assert offline_channel._link is None  # nothing was even connected


@pytest.mark.parametrize("sid", ["", "a/b", "+", "#"])
async def test_bad_speaker_ids_fail(offline_channel, sid):
    message = message_for(sid, future_alert())
    result = await offline_channel.send(message, offline_channel.render(message))
    assert (result.outcome, result.code) == (Outcome.FAILED, "speaker.invalid_id")


async def test_no_broker_is_retry_disconnected(offline_channel):
    try:
        [result] = await kit.check_send_never_raises(offline_channel, [message_for("spk-1", future_alert())],
                                                     deadline=5)
    finally:
        await offline_channel.close()
    assert (result.outcome, result.code) == (Outcome.RETRY, "mqtt.disconnected")


def test_registry_builds_the_speaker_channel():
    config = Config(speaker=SpeakerConfig(enabled=True))
    channel = build_channels(config)["speaker"]
    assert isinstance(channel, SpeakerChannel) and SPECS["speaker"].dedupes and channel.name == "speaker"


# --- against a real broker

class RecordingSink:
    """The engine's side of acks and presence, recorded (a plain test double)."""

    def __init__(self) -> None:
        self.receipts: list[tuple] = []
        self.online: dict[str, bool] = {}
        self._event = asyncio.Event()

    async def receipt(self, channel: str, delivery_id: int | None, receipt, attempt: int | None = None) -> bool:  # noqa: ANN001
        self.receipts.append((channel, delivery_id, receipt.state.value, receipt.code, receipt.provider_ref or None,
                              receipt.detail))
        self._event.set()
        return True

    async def presence(self, device_id: str, online: bool, detail: str = "") -> None:
        self.online[device_id] = online
        self._event.set()

    def states(self, state: str) -> Counter:
        return Counter(r[1] for r in self.receipts if r[2] == state)

    async def wait_until(self, predicate, timeout: float = WAIT) -> None:
        async def until() -> None:
            while not predicate():
                self._event.clear()
                await self._event.wait()
        await asyncio.wait_for(until(), timeout)


async def poll(predicate, timeout: float = WAIT) -> None:  # noqa: ANN001
    """Wait for a condition nothing signals (a reconnect); fail after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


@pytest.fixture
async def broker(tmp_path):
    async with running_mosquitto(tmp_path, persistent=True) as b:
        yield b


@pytest.fixture
def sink():
    return RecordingSink()


def channel_for(broker, **speaker) -> SpeakerChannel:
    return SpeakerChannel(MqttConfig(url=broker.url, inflight=200),
                          SpeakerConfig(enabled=True, public=False, timeout_seconds=30, **speaker))


async def fan_out(channel: SpeakerChannel, sids, alert, first_id: int = 1):
    async def one(i: int, sid: str):
        message = message_for(sid, alert, delivery_id=first_id + i)
        return await channel.send(message, channel.render(message))
    return await asyncio.gather(*(one(i, sid) for i, sid in enumerate(sids)))


async def test_500_speakers_each_play_once(broker, sink):
    offline = "spk-00499"
    fleet = SpeakerFleet(500, behaviours={offline: Behaviour(offline=True)})
    channel = channel_for(broker)
    await fleet.start(broker.url)
    await channel.start(sink)
    results = await fan_out(channel, list(fleet.speakers), future_alert())
    assert {r.outcome for r in results} == {Outcome.SENT}
    # the offline speaker never connected, so it has no session and no subscription
    assert Counter(r.code for r in results) == {"mqtt.success": 499, "mqtt.no_matching_subscribers": 1}
    await fleet.wait_until(lambda f: f.played_count() == 499, WAIT)
    await sink.wait_until(lambda: len(sink.states("delivered")) == 499 and offline in sink.online)
    assert all(len(v) == 1 for sid, v in fleet.played.items() if sid != offline)
    assert fleet.played[offline] == [] and fleet.duplicates == 0
    assert set(sink.states("delivered").values()) == {1}
    assert 500 not in sink.states("delivered")  # delivery 500 went to the offline speaker
    assert {r[3] for r in sink.receipts} <= {"mqtt.played", "mqtt.received", "mqtt.playing"}
    assert sink.online[offline] is False and sink.online["spk-00000"] is True
    await channel.close()
    await fleet.stop()


async def test_broker_restart_mid_fan_out_loses_nothing(broker, sink):
    """Half is sent, the broker is stopped while the other half is being published, and
    started again on the same port: every speaker plays exactly once."""
    fleet = SpeakerFleet(300)
    channel = channel_for(broker)
    await fleet.start(broker.url)
    await channel.start(sink)
    sids = list(fleet.speakers)
    alert = future_alert()
    first = await fan_out(channel, sids[:150], alert)
    assert {r.outcome for r in first} == {Outcome.SENT}
    second = asyncio.create_task(fan_out(channel, sids[150:], alert, first_id=151))
    await asyncio.sleep(0)  # let the second half start publishing …
    await broker.stop()  # … into a broker that goes away (SIGTERM: it saves its sessions)
    assert not second.done()
    await broker.start()
    results = await asyncio.wait_for(second, WAIT)
    assert {r.outcome for r in results} == {Outcome.SENT}, Counter(r.code for r in results)
    await fleet.wait_until(lambda f: f.played_count() >= 300, WAIT)
    await sink.wait_until(lambda: len(sink.states("delivered")) == 300)
    assert fleet.play_counts() == {sid: 1 for sid in sids}  # nothing lost, nothing played twice
    assert set(sink.states("delivered").values()) == {1}
    assert channel._link.connects >= 2  # it did reconnect
    await channel.close()
    await fleet.stop()


async def test_cancel_stops_and_forgets(broker, sink):
    fleet = SpeakerFleet(2, default=Behaviour(ack_after=600))  # plays for ten minutes
    channel = channel_for(broker)
    await fleet.start(broker.url)
    await channel.start(sink)
    alert = future_alert("W-STOP")
    assert {r.outcome for r in await fan_out(channel, list(fleet.speakers), alert)} == {Outcome.SENT}
    await fleet.wait_until(lambda f: f.played_count() == 2, WAIT)
    cancel = make_alert("W-STOP-C", msg_type=MsgType.CANCEL, expires=None,
                        references=(Reference(alert.sender, alert.identifier, alert.sent.isoformat()),))
    results = await fan_out(channel, ["spk-00000"], cancel, first_id=10)
    assert results[0].outcome is Outcome.SENT
    await fleet.wait_until(lambda f: f.stopped["spk-00000"] == ["W-STOP"], WAIT)
    await sink.wait_until(lambda: (10, "delivered") in {(r[1], r[2]) for r in sink.receipts})
    assert fleet.stopped["spk-00001"] == []  # only the cancelled speaker stopped
    # a re-broadcast of the cancelled warning (a new message id) is not played again
    await fan_out(channel, ["spk-00000"], alert, first_id=20)
    await sink.wait_until(lambda: (20, "failed") in {(r[1], r[2]) for r in sink.receipts})
    assert len(fleet.played["spk-00000"]) == 1
    await channel.close()
    await fleet.stop()


async def test_mqtt5_expiry_drops_a_stale_command_at_the_broker(broker):
    """The speaker is away when the command is published with a 1 s Message Expiry
    Interval; when it comes back the broker has dropped it (the payload has not expired)."""
    fleet = SpeakerFleet(["spk-a"])
    await fleet.start(broker.url)
    alert = future_alert("W-EXP")  # expires in an hour …
    channel = SpeakerChannel(MqttConfig(url=broker.url), SpeakerConfig(enabled=True, public=False),
                             clock=lambda: alert.expires - timedelta(seconds=1))  # … the channel thinks in 1 s
    await fleet.pause("spk-a")
    [result] = await fan_out(channel, ["spk-a"], alert)
    assert result.outcome is Outcome.SENT
    # The expiry itself: Mosquitto counts whole seconds and drops a message only when
    # now > sent + interval, so 1 s takes up to 2 s of wall time.
    await asyncio.sleep(2.1)
    await fleet.resume("spk-a")
    marker = future_alert("W-MARK")
    fresh = SpeakerChannel(MqttConfig(url=broker.url), SpeakerConfig(enabled=True, public=False))
    await fan_out(fresh, ["spk-a"], marker, first_id=2)
    await fleet.wait_until(lambda f: f.played_count() == 1, WAIT)  # the broker queues in order
    assert [p.identifier for p in fleet.played["spk-a"]] == ["W-MARK"] and fleet.commands == 1
    await channel.close()
    await fresh.close()
    await fleet.stop()


async def test_expired_payload_is_never_played(broker, sink):
    """A command whose `expires` has passed (MQTT 3.1.1 has nothing else) is refused by the speaker."""
    fleet = SpeakerFleet(["spk-a"])
    channel = channel_for(broker)
    await fleet.start(broker.url)
    await channel.start(sink)
    link = MqttLink(broker.url, client_id="raw-publisher", protocol=4)
    await link.start()
    command = {"type": "play", "message_id": "msg_warnd_9", "identifier": "W-OLD", "references": [],
               "tts_text": "过期", "expires": (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()}
    await link.publish("warnd/speakers/spk-a/cmd", json.dumps(command).encode(), timeout=WAIT)
    await fleet.wait_until(lambda f: f.expired["spk-a"] == ["msg_warnd_9"], WAIT)
    await sink.wait_until(lambda: (9, "failed") in {(r[1], r[2]) for r in sink.receipts})
    assert fleet.played["spk-a"] == []
    await link.close()
    await channel.close()
    await fleet.stop()


async def test_behaviours_reach_the_sink(broker, sink):
    """fail_play → failed; lost_acks → no receipt; drop_out_after → Last Will → offline."""
    fleet = SpeakerFleet(["ok", "broken", "mute", "leaver"], behaviours={
        "broken": Behaviour(fail_play=True), "mute": Behaviour(lost_acks=True),
        "leaver": Behaviour(drop_out_after=0.0, ack_after=600)})
    channel = channel_for(broker)
    await fleet.start(broker.url)
    await channel.start(sink)
    await sink.wait_until(lambda: sink.online.get("leaver") is True)
    await fan_out(channel, ["ok", "broken", "mute", "leaver"], future_alert())
    await sink.wait_until(lambda: (1, "delivered") in {(r[1], r[2]) for r in sink.receipts}
                          and (2, "failed") in {(r[1], r[2]) for r in sink.receipts}
                          and sink.online.get("leaver") is False)
    await fleet.wait_until(lambda f: f.played_count() == 3, WAIT)  # ok, mute, and leaver began to
    by_delivery = {r[1] for r in sink.receipts}
    assert 3 not in by_delivery  # the mute speaker played but never said so
    assert (4, "delivered") not in {(r[1], r[2]) for r in sink.receipts}
    assert [r[3] for r in sink.receipts if r[1] == 2 and r[2] == "failed"] == ["mqtt.play_failed"]
    await channel.close()
    await fleet.stop()


async def test_malformed_acks_are_ignored(broker, sink):
    channel = channel_for(broker)
    await channel.start(sink)
    assert await channel._link.wait_connected(WAIT)
    link = MqttLink(broker.url, client_id="prankster")
    await link.start()
    await link.publish("warnd/speakers/s1/status", b'{"online": "yes"}', timeout=WAIT)
    for payload in (b"nonsense", b'{"message_id": "x", "state": "played"}',
                    b'{"message_id": "msg_warnd_5", "state": "played"}'):  # the last one counts
        await link.publish("warnd/speakers/s1/ack", payload, timeout=WAIT)
    await sink.wait_until(lambda: sink.receipts)
    assert [r[:4] for r in sink.receipts] == [("speaker", 5, "delivered", "mqtt.played")]
    assert sink.online == {}
    counts = channel.inbound
    assert (counts["malformed_ack"], counts["malformed_status"], channel.held) == (2, 1, 0)
    # acknowledged at once, though no receipt came of them: after a broken connection none comes back
    channel._link.client.socket().shutdown(socket.SHUT_RDWR)
    await poll(lambda: channel._link.connects == 2 and channel._link.connected.is_set())
    await link.publish("warnd/speakers/s1/ack", b'{"message_id": "msg_warnd_6", "state": "played"}', timeout=WAIT)
    await sink.wait_until(lambda: len(sink.receipts) == 2)  # re-sent messages would have come first
    assert (counts["redelivered"], counts["malformed_ack"], counts["not_acked"]) == (0, 2, 0)
    await link.close()
    await channel.close()


async def test_a_channel_without_a_sink_takes_no_share_of_the_acks(broker, sink):
    """Only a channel that records acks subscribes: one that only sends would drop its share."""
    sender, reader = channel_for(broker), channel_for(broker)
    fleet = SpeakerFleet(10)
    await fleet.start(broker.url)
    await reader.start(sink)
    assert await reader._link.wait_connected(WAIT)
    await fan_out(sender, list(fleet.speakers), future_alert())
    await sink.wait_until(lambda: len(sink.states("delivered")) == 10)
    assert sender.inbound["received"] == 0
    await sender.close()
    await reader.close()
    await fleet.stop()


async def test_two_nodes_share_the_acks(broker):
    """MQTT 5 shared subscription: each ack reaches exactly one of two warnd nodes."""
    sinks = [RecordingSink(), RecordingSink()]
    nodes = [channel_for(broker), channel_for(broker)]
    fleet = SpeakerFleet(40)
    await fleet.start(broker.url)
    for node, node_sink in zip(nodes, sinks):
        await node.start(node_sink)
        assert await node._link.wait_connected(WAIT)
    await fan_out(nodes[0], list(fleet.speakers), future_alert())
    sinks[1]._event = sinks[0]._event  # so one wait sees both
    await sinks[0].wait_until(lambda: len(sinks[0].states("delivered")) + len(sinks[1].states("delivered")) == 40)
    got = sinks[0].states("delivered") + sinks[1].states("delivered")
    assert set(got) == set(range(1, 41)) and set(got.values()) == {1}
    assert sinks[0].receipts and sinks[1].receipts  # the broker split them
    for node in nodes:
        await node.close()
    await fleet.stop()
