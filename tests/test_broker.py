"""The embedded broker (mosquitto or amqtt) and the test helper that restarts mosquitto."""
from __future__ import annotations

import asyncio

import pytest
from mosquitto import require_mosquitto, running_mosquitto
from test_channel_speaker import RecordingSink, fan_out, future_alert

from warnd.config import MqttConfig, SpeakerConfig
from warnd.sim.broker import free_port, start_embedded_broker
from warnd.sim.speakers import SpeakerFleet
from warnd_channels.base import Outcome
from warnd_channels.mqtt_link import MqttLink
from warnd_channels.speaker import SpeakerChannel

WAIT = 30.0


async def round_trip(url: str, protocol: int) -> bytes:
    """Subscribe with one client, publish QoS 1 with another, return what arrived."""
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def on_connect(link: MqttLink, session_present: bool) -> None:
        link.subscribe([("t/+/x", 1)])

    sub = MqttLink(url, client_id="rt-sub", protocol=protocol, on_connect=on_connect,
                   on_message=lambda m: got.done() or got.set_result(m.payload))
    pub = MqttLink(url, client_id="rt-pub", protocol=protocol)
    await sub.start()
    await pub.start()
    try:
        assert await sub.wait_connected(WAIT)
        # Our own publish after the SUBSCRIBE, on the same connection, proves the subscription is in.
        await sub.publish("t/sync/y", b"", timeout=WAIT)
        assert await pub.publish("t/1/x", "你好".encode(), timeout=WAIT) == 0
        return await asyncio.wait_for(got, WAIT)
    finally:
        await pub.close()
        await sub.close()


async def test_amqtt_fallback_speaks_mqtt_311():
    url, protocol, stop = await start_embedded_broker(0, mosquitto=False)
    try:
        assert protocol == 4 and url.startswith("mqtt://127.0.0.1:")
        assert await round_trip(url, 4) == "你好".encode()
    finally:
        await stop()


async def test_speakers_over_amqtt():
    """warnd without a configured broker and without mosquitto: protocol 4 end to end."""
    url, protocol, stop = await start_embedded_broker(free_port(), mosquitto=False)
    fleet = SpeakerFleet(10, protocol=protocol)
    channel = SpeakerChannel(MqttConfig(url=url, protocol=protocol),
                             SpeakerConfig(enabled=True, public=False, timeout_seconds=WAIT))
    sink = RecordingSink()
    try:
        await fleet.start(url)
        await channel.start(sink)
        results = await fan_out(channel, list(fleet.speakers), future_alert())
        assert {r.outcome for r in results} == {Outcome.SENT}
        await fleet.wait_until(lambda f: f.played_count() == 10, WAIT)
        await sink.wait_until(lambda: len(sink.states("delivered")) == 10, WAIT)
        assert len(sink.online) == 10
    finally:
        await channel.close()
        await fleet.stop()
        await stop()


async def test_embedded_mosquitto_speaks_mqtt_5():
    require_mosquitto()
    url, protocol, stop = await start_embedded_broker(0)
    try:
        assert protocol == 5
        assert await round_trip(url, 5) == "你好".encode()
    finally:
        await stop()


async def test_channel_without_url_starts_the_embedded_broker():
    require_mosquitto()
    port = free_port()
    channel = SpeakerChannel(MqttConfig(url=None, embedded_port=port),
                             SpeakerConfig(enabled=True, public=False, timeout_seconds=WAIT))
    sink = RecordingSink()
    fleet = SpeakerFleet(3)
    try:
        await channel.start(sink)
        await fleet.start(f"mqtt://127.0.0.1:{port}")
        results = await fan_out(channel, list(fleet.speakers), future_alert())
        assert {r.outcome for r in results} == {Outcome.SENT}
        await sink.wait_until(lambda: len(sink.states("delivered")) == 3, WAIT)
    finally:
        await fleet.stop()
        await channel.close()
    with pytest.raises(OSError):  # the broker went away with the channel
        await asyncio.open_connection("127.0.0.1", port)


async def test_restart_keeps_persistent_sessions(tmp_path):
    """A QoS 1 message queued for an absent subscriber survives a broker restart."""
    async with running_mosquitto(tmp_path, persistent=True) as broker:
        got: list[bytes] = []
        arrived = asyncio.Event()

        def on_message(message) -> None:  # noqa: ANN001
            got.append(message.payload)
            arrived.set()

        def make_sub() -> MqttLink:
            return MqttLink(broker.url, client_id="persistent-sub", on_message=on_message,
                            on_connect=lambda link, present: link.subscribe([("q/x", 1)]))

        sub = make_sub()
        await sub.start()
        await sub.publish("q/sync", b"", timeout=WAIT)  # subscribed (same connection, in order)
        await sub.close()  # gone, session kept
        pub = MqttLink(broker.url, client_id="pub")
        await pub.start()
        assert await pub.publish("q/x", b"kept", timeout=WAIT) == 0  # 0: a subscriber (session) exists
        await pub.close()
        port = broker.port
        await broker.restart()
        assert broker.port == port and broker.restarts == 1
        sub = make_sub()
        await sub.start()
        await asyncio.wait_for(arrived.wait(), WAIT)
        assert got == [b"kept"]
        await sub.close()


async def test_inflight_window_bounds_unacknowledged_publishes(tmp_path):
    async with running_mosquitto(tmp_path) as broker:
        link = MqttLink(broker.url, client_id="window", inflight=3)
        await link.start()
        held, publish = [], link.client.publish

        def spy(*args, **kwargs):  # how many paho holds un-acknowledged at each publish
            held.append(len(link.client._out_messages))
            return publish(*args, **kwargs)

        link.client.publish = spy
        codes = await asyncio.gather(*(link.publish(f"w/{i}", b"x", timeout=WAIT) for i in range(200)))
        await link.close()
    assert len(held) == 200 and max(held) <= 2 and set(codes) == {0x10}  # no subscribers


async def test_no_puback_keeps_the_slot_and_is_retry_timeout():
    """A broker that accepts the connection but never acknowledges a publish."""
    async def mute_broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)  # CONNECT
        writer.write(b"\x20\x03\x00\x00\x00")  # CONNACK (MQTT 5): success, no properties
        await writer.drain()
        while await reader.read(65536):  # PUBLISH … never answered
            pass
        writer.close()

    server = await asyncio.start_server(mute_broker, "127.0.0.1", 0)
    url = f"mqtt://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    channel = SpeakerChannel(MqttConfig(url=url, inflight=1),
                             SpeakerConfig(enabled=True, public=False, timeout_seconds=0.3))
    try:
        first = await fan_out(channel, ["s1"], future_alert())
        second = await fan_out(channel, ["s2"], future_alert(), first_id=2)  # the one slot is still taken
        assert [(r.outcome, r.code) for r in first + second] == [(Outcome.RETRY, "mqtt.timeout")] * 2
        assert channel._link._window.free == 0 and list(channel._link._pending.values()) == [None]
    finally:
        await channel.close()
        server.close()
        await server.wait_closed()


class Member:
    """A manual-ack member of the shared group `$share/g/t/+/ack`; records (payload, dup)."""

    def __init__(self, url: str, client_id: str, *, ack: bool) -> None:
        self.got: list[tuple[bytes, bool]] = []
        self.unacked: dict[bytes, object] = {}  # payload → its acker, when not acking
        self.ack = ack
        self.link = MqttLink(url, client_id=client_id, manual_ack=True, on_message=self._on_message,
                             on_connect=lambda link, present: link.subscribe([("$share/g/t/+/ack", 1)]))

    def _on_message(self, message) -> None:  # noqa: ANN001
        self.got.append((message.payload, bool(message.dup)))
        acker = self.link.acker(message)
        if self.ack:
            acker()
        else:
            self.unacked[message.payload] = acker

    def payloads(self) -> set[bytes]:
        return {p for p, _ in self.got}

    async def start(self) -> None:
        await self.link.start()
        await self.link.publish("sync", b"", timeout=WAIT)  # after our SUBSCRIBE: subscribed


async def until_true(predicate, what: str) -> None:  # noqa: ANN001
    deadline = asyncio.get_running_loop().time() + WAIT
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"not reached in {WAIT}s: {what}"
        await asyncio.sleep(0.01)


async def test_unacknowledged_shared_messages_come_back_to_the_same_client_id(tmp_path):
    """What warnd's acks-after-commit relies on, with the real Mosquitto: a QoS 1 message of a
    persistent session's shared subscription stays at the broker until its PUBACK. A member
    that dies without acknowledging (no DISCONNECT, as kill -9) gets it again, DUP, when it
    connects under the same client id — it is not handed to the other member — and one it
    did acknowledge does not come back. While it is away, its turn of new messages waits for
    it too (Mosquitto 2.0 keeps dealing to a persistent member's session)."""
    async with running_mosquitto(tmp_path) as broker:
        a, b = Member(broker.url, "node-a", ack=False), Member(broker.url, "node-b", ack=True)
        await a.start()
        await b.start()
        pub = MqttLink(broker.url, client_id="speakers")
        await pub.start()
        first = [f"m{i}".encode() for i in range(6)]
        for payload in first:
            await pub.publish(f"t/{payload.decode()}/ack", payload, timeout=WAIT)
        await until_true(lambda: a.payloads() | b.payloads() == set(first), "all six read")
        assert len(a.unacked) >= 2, a.got  # the broker deals them in turn
        acked, *held = sorted(a.unacked)
        assert a.unacked.pop(acked)() is True
        await a.link.publish("sync", b"", timeout=WAIT)  # its PUBACK went first: the broker has it
        await a.link.drop()  # gone without DISCONNECT; the session stays

        later = [f"n{i}".encode() for i in range(6)]
        for payload in later:
            await pub.publish(f"t/{payload.decode()}/ack", payload, timeout=WAIT)
        back = Member(broker.url, "node-a", ack=True)  # the same client id, as a restarted node
        await back.start()
        await until_true(lambda: set(later) <= back.payloads() | b.payloads(), "the later six read")
        assert back.link.connects == 1 and len(back.got) == len(back.payloads())
        assert {p for p, dup in back.got if dup} == set(held)  # re-sent, marked DUP
        assert acked not in back.payloads()  # acknowledged: gone for good
        assert not set(held) & {p for p, _ in b.got[len(first):]}  # not handed to the other member
        assert back.payloads() & set(later)  # its turn waited for it
        assert sorted(p for p, _ in back.got + b.got if p in later) == sorted(later)  # each once
        await asyncio.gather(back.link.close(), b.link.close(), pub.close())
