"""The speaker simulator against a real Mosquitto, driven by a bare MQTT client."""
from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from mosquitto import running_mosquitto

from warnd.sim.speakers import Behaviour, SpeakerFleet, load_behaviours, main
from warnd_channels.mqtt_link import MqttLink

WAIT = 30.0
PREFIX = "warnd/speakers"


class Controller:
    """A bare MQTT client standing in for warnd: publishes commands, records acks and statuses."""

    def __init__(self, url: str) -> None:
        self.acks: list[tuple[str, dict]] = []
        self.status: dict[str, bool] = {}
        self._event = asyncio.Event()
        self.link = MqttLink(url, client_id="controller", on_connect=self._subscribe, on_message=self._message)

    def _subscribe(self, link: MqttLink, session_present: bool) -> None:
        link.subscribe([(f"{PREFIX}/+/ack", 1), (f"{PREFIX}/+/status", 1)])

    def _message(self, message) -> None:  # noqa: ANN001
        sid, _, kind = message.topic[len(PREFIX) + 1:].rpartition("/")
        data = json.loads(message.payload)
        if kind == "ack":
            self.acks.append((sid, data))
        else:
            self.status[sid] = data["online"]
        self._event.set()

    async def start(self) -> "Controller":
        await self.link.start()
        assert await self.link.wait_connected(WAIT)
        return self

    async def play(self, sid: str, message_id: str, identifier: str = "W1", **extra) -> None:
        command = {"type": "play", "message_id": message_id, "identifier": identifier, "references": [],
                   "tts_text": "测试", "expires": (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()}
        await self.link.publish(f"{PREFIX}/{sid}/cmd", json.dumps(command | extra).encode(), timeout=WAIT)

    async def stop_warnings(self, sid: str, message_id: str, references: list[str]) -> None:
        command = {"type": "stop", "message_id": message_id, "references": references, "identifier": "C1"}
        await self.link.publish(f"{PREFIX}/{sid}/cmd", json.dumps(command).encode(), timeout=WAIT)

    def states(self, sid: str, message_id: str) -> list[str]:
        return [a["state"] for s, a in self.acks if s == sid and a["message_id"] == message_id]

    async def wait_until(self, predicate, timeout: float = WAIT) -> None:
        async def until() -> None:
            while not predicate():
                self._event.clear()
                await self._event.wait()
        await asyncio.wait_for(until(), timeout)


@pytest.fixture
async def broker(tmp_path):
    async with running_mosquitto(tmp_path) as b:
        yield b


@pytest.fixture
async def controller(broker):
    c = await Controller(broker.url).start()
    yield c
    await c.link.close()


@pytest.fixture
async def fleet_factory(broker):
    fleets: list[SpeakerFleet] = []

    async def make(*args, **kwargs) -> SpeakerFleet:
        fleet = SpeakerFleet(*args, **kwargs)
        fleets.append(fleet)
        await fleet.start(broker.url)
        return fleet

    yield make
    for fleet in fleets:
        await fleet.stop()


async def test_plays_acks_in_order_and_drops_duplicates(controller, fleet_factory):
    fleet = await fleet_factory(["a"])
    await controller.play("a", "m1")
    await controller.play("a", "m1")  # QoS 1 redelivery or a retry: the same message id
    await controller.play("a", "m2", identifier="W2")
    await controller.wait_until(lambda: controller.states("a", "m2") == ["received", "playing", "played"])
    await controller.wait_until(lambda: controller.states("a", "m1") == ["received", "playing", "played"])
    assert [p.message_id for p in fleet.played["a"]] == ["m1", "m2"]
    assert fleet.duplicates == 1 and fleet.commands == 3


async def test_late_and_lost_acks(controller, fleet_factory):
    fleet = await fleet_factory(["slow", "mute"], speed=100.0, behaviours={
        "slow": Behaviour(ack_after=50, late_ack=50),  # 0.5 s + 0.5 s at speed 100
        "mute": Behaviour(lost_acks=True)})
    await controller.play("mute", "m1")
    await controller.play("slow", "m2")
    await controller.wait_until(lambda: controller.states("slow", "m2") == ["received", "playing"])
    assert len(fleet.played["slow"]) == 1  # playing now, the played-ack comes later
    await controller.wait_until(lambda: controller.states("slow", "m2")[-1:] == ["played"])
    await fleet.wait_until(lambda f: len(f.played["mute"]) == 1, WAIT)
    assert controller.states("mute", "m1") == []


async def test_fail_play(controller, fleet_factory):
    fleet = await fleet_factory(["x"], default=Behaviour(fail_play=True))
    await controller.play("x", "m1")
    await controller.wait_until(lambda: controller.states("x", "m1") == ["received", "failed"])
    assert fleet.played["x"] == []


async def test_expired_command_is_refused(controller, fleet_factory):
    fleet = await fleet_factory(["x"])
    await controller.play("x", "m1", expires=(datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat())
    await controller.wait_until(lambda: controller.states("x", "m1") == ["failed"])
    assert fleet.played["x"] == [] and fleet.expired["x"] == ["m1"]


async def test_stop_and_replace(controller, fleet_factory):
    fleet = await fleet_factory(["x"], default=Behaviour(ack_after=600))
    await controller.play("x", "m1", identifier="A")
    await fleet.wait_until(lambda f: len(f.played["x"]) == 1, WAIT)
    await controller.play("x", "m2", identifier="B", references=["A"])  # an update replaces A
    await fleet.wait_until(lambda f: f.stopped["x"] == ["A"] and len(f.played["x"]) == 2, WAIT)
    await controller.stop_warnings("x", "m3", ["B"])
    await controller.wait_until(lambda: controller.states("x", "m3") == ["played"])
    assert fleet.stopped["x"] == ["A", "B"]
    await controller.play("x", "m4", identifier="B")  # forgotten: never again
    await controller.wait_until(lambda: "failed" in controller.states("x", "m4"))
    assert [p.identifier for p in fleet.played["x"]] == ["A", "B"]


async def test_presence_offline_and_last_will(controller, fleet_factory):
    fleet = await fleet_factory(["up", "down", "leaver"], behaviours={
        "down": Behaviour(offline=True), "leaver": Behaviour(drop_out_after=0.0, ack_after=600)})
    await controller.wait_until(lambda: controller.status == {"up": True, "down": False, "leaver": True})
    await controller.play("leaver", "m1")
    await controller.wait_until(lambda: controller.status["leaver"] is False)  # its Last Will
    assert fleet.speakers["leaver"].dropped and fleet.speakers["down"].link is None


async def test_multiplexed_mode(controller, fleet_factory):
    fleet = await fleet_factory(50, multiplexed=True, behaviours={"spk-00049": Behaviour(drop_out_after=0.0)})
    await controller.wait_until(lambda: len(controller.status) == 50 and all(controller.status.values()))
    for i in range(50):
        await controller.play(f"spk-{i:05d}", f"m{i}")
    await fleet.wait_until(lambda f: f.played_count() == 50, WAIT)
    await controller.wait_until(lambda: controller.status["spk-00049"] is False)
    assert set(fleet.play_counts().values()) == {1} and fleet._control is not None


async def test_protocol_4(controller, fleet_factory):
    fleet = await fleet_factory(["old"], protocol=4)
    await controller.play("old", "m1")
    await controller.wait_until(lambda: controller.states("old", "m1")[-1:] == ["played"])
    assert len(fleet.played["old"]) == 1


def test_behaviours_file(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"*": {"ack_after": 2}, "spk-00001": {"offline": True}}))
    default, per = load_behaviours(str(path))
    assert default == Behaviour(ack_after=2) and per == {"spk-00001": Behaviour(offline=True)}
    path.write_text(json.dumps({"*": {"explode": True}}))
    with pytest.raises(ValueError, match="explode"):
        load_behaviours(str(path))
    with pytest.raises(SystemExit):
        main(["--count", "1"])  # --broker is required


async def test_process_entry(broker, controller, tmp_path):
    behaviours = tmp_path / "b.json"
    behaviours.write_text(json.dumps({"spk-00002": {"offline": True}}))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "warnd.sim.speakers", "--broker", broker.url, "--count", "3",
        "--behaviours", str(behaviours), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), WAIT)
        assert line.decode().strip() == "ready 3"
        await controller.play("spk-00000", "m1")
        await controller.wait_until(lambda: controller.states("spk-00000", "m1")[-1:] == ["played"])
        assert controller.status.get("spk-00002") is False
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert json.loads(out.decode().strip().splitlines()[-1])["played"] == 1
