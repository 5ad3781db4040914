"""Played-acks are acknowledged to the broker only once their receipt is committed (issue 10).

Real parts throughout: Mosquitto, SQLite files, simulated speakers, warnd's `Node` in this
process or `warnd serve` as a subprocess killed with SIGKILL. The database write is blocked
by holding SQLite's write lock from another connection (BEGIN IMMEDIATE), so a played-ack
is read while its receipt cannot be committed. The simulated speakers play but never ack
(`lost_acks`): the test publishes their played-acks itself, at the moment it chooses. In each
test one more speaker, in a grid of its own, is never acked at all: once its grid is declared
silent, every grid whose speakers were still silent has been, so the others were not.
"""
from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from factories import COUNTY, NO_APPROVAL, TOWNSHIP, VILLAGE, alert
from mosquitto import running_mosquitto
from procs import Proc, Procs, free_port, http, http_ok, run, warnd_command

from warnd.config import load_config
from warnd.domain.authority import admin_scope
from warnd.domain.directory import Person, Region, Speaker
from warnd.engine.node import Node
from warnd.ingest.capxml import alert_to_xml
from warnd.ingest.directory import DirectoryData
from warnd.sim.speakers import Behaviour, SpeakerFleet
from warnd.store.migrate import upgrade
from warnd_channels.mqtt_link import MqttLink

WAIT = 60.0  # every wait is bounded by this
XML = "application/cap+xml"
CONTROL = "spk-control"  # never acked: its grid is declared silent, and shows the sweep ran


def grid(i: int) -> str:
    return f"{VILLAGE}{i:03d}"


def live(identifier: str) -> bytes:
    """A red warning on the village, sent now (the speakers play on real time)."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    return alert_to_xml(alert(identifier, sent=now, expires=now + timedelta(hours=6))).encode()


def played(delivery_id: int) -> bytes:
    return json.dumps({"message_id": f"msg_warnd_{delivery_id}", "state": "played"}).encode()


async def eventually(predicate, what: str, timeout: float = WAIT, alive: tuple[Proc, ...] = ()):  # noqa: ANN001, ANN201
    """Poll `predicate()` (sync, or returning an awaitable) until truthy; fail on timeout or a dead process."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        for proc in alive:
            assert proc.poll() is None, f"{proc.name} exited with {proc.returncode}\n{proc.tail()}"
        assert loop.time() < deadline, f"not reached in {timeout}s: {what}"
        await asyncio.sleep(0.02)


class WriteLock:
    """SQLite's write lock, held from a connection of the test's own (as a long writer would)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, timeout=WAIT, isolation_level=None)
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


def rows(path: Path) -> dict[str, sqlite3.Row]:
    """Speaker deliveries by speaker id, read with a connection of the test's own (WAL: never blocked)."""
    conn = sqlite3.connect(path, timeout=WAIT)
    conn.row_factory = sqlite3.Row
    try:
        return {r["recipient_id"]: r for r in conn.execute(
            "SELECT * FROM deliveries WHERE channel = 'speaker' AND purpose = 'warning'")}
    finally:
        conn.close()


def uncovered(path: Path) -> set[str]:
    conn = sqlite3.connect(path, timeout=WAIT)
    try:
        return {g for (g,) in conn.execute("SELECT grid FROM confirmations WHERE uncovered_at IS NOT NULL")}
    finally:
        conn.close()


def states(path: Path) -> dict[str, str]:
    return {sid: r["state"] for sid, r in rows(path).items()}


async def speaker_acks(url: str) -> MqttLink:
    """The test's own client, publishing played-acks as the speakers would."""
    link = MqttLink(url, client_id="test-speakers")
    await link.start()
    assert await link.wait_connected(WAIT)
    return link


# --- in process: the ack read while the write is blocked, its connection lost, the copy applied

@pytest.fixture
async def node_and_fleet(tmp_path):
    async with running_mosquitto(tmp_path) as broker:
        fleet = SpeakerFleet(["spk-1", CONTROL], default=Behaviour(lost_acks=True))
        await fleet.start(broker.url)
        db_path = tmp_path / "acks.db"
        config = load_config(None, database_url=f"sqlite:///{db_path}", webhook={"enabled": False},
                             mqtt={"url": broker.url}, speaker={"enabled": True, "ack_timeout_seconds": 1.0},
                             sweeps={"speaker_seconds": 3600}, dispatcher={"poll_seconds": 0.05},
                             routing=[{"levels": ["red"], "channels": ["speaker"]}], approval=NO_APPROVAL)
        await asyncio.to_thread(upgrade, config.database_url)
        node = Node(config)  # the silence sweep runs only when the test says
        await node.directory.import_data(DirectoryData(
            regions=(Region(COUNTY, "示例县", "county"), Region(TOWNSHIP, "城关镇", "township", COUNTY),
                     Region(VILLAGE, "河口村", "village", TOWNSHIP), Region(grid(1), "一组", "grid", VILLAGE),
                     Region(grid(2), "二组", "grid", VILLAGE)),
            people=tuple(Person(f"p{g}", f"网格员{g}", grid(g), ("grid_responsible",), f"+86138000000{g:02d}")
                         for g in (1, 2)),
            speakers=(Speaker("spk-1", grid(1)), Speaker(CONTROL, grid(2)))))
        await node.start()
        link = await speaker_acks(broker.url)
        try:
            yield node, fleet, link, db_path
        finally:
            await link.close()
            await node.stop()
            await fleet.stop()


async def test_an_ack_read_while_the_write_is_blocked_is_not_acknowledged_and_its_copy_changes_nothing(
        node_and_fleet):
    node, fleet, link, db_path = node_and_fleet
    channel = node.channels["speaker"]
    await node.intake.submit(live("W-HELD"), XML, admin_scope())
    await fleet.wait_until(lambda f: f.played_count() == 2, WAIT)
    await eventually(lambda: set(states(db_path).values()) == {"sent"}, "both sends recorded")
    await eventually(lambda: channel.held == 0, "the speakers' presence committed and acknowledged")
    before = rows(db_path)["spk-1"]
    counts = channel.inbound.copy()

    lock = WriteLock(db_path)
    try:
        await link.publish("warnd/speakers/spk-1/ack", played(before["id"]), timeout=WAIT)
        await eventually(lambda: channel.inbound["received"] > counts["received"], "the ack read")
        assert channel.held == 1 and channel.inbound["acked"] == counts["acked"]  # its receipt waits
        # A round trip on warnd's connection: a PUBACK sent before it would have reached the broker.
        await channel._link.publish("test/sync", b"", timeout=WAIT)
        # The connection breaks (no DISCONNECT) while the receipt is not committed …
        channel._link.client.socket().shutdown(socket.SHUT_RDWR)
        # … and after the reconnect the broker re-sends it: no PUBACK had left.
        await eventually(lambda: channel.inbound["redelivered"] > counts["redelivered"], "the ack re-sent")
        assert channel._link.connects == 2
        assert rows(db_path)["spk-1"]["state"] == "sent"
    finally:
        lock.release()

    await eventually(lambda: states(db_path)["spk-1"] == "delivered" and channel.held == 0, "the ack applied")
    after = rows(db_path)["spk-1"]
    assert channel.inbound["not_acked"] - counts["not_acked"] == 1  # the first copy: its connection was gone
    assert after["version"] == before["version"] + 1  # one change; the second copy changed nothing
    assert (after["last_code"], after["done_at"] is not None) == ("mqtt.played", True)

    # Nothing is left to re-send: after another break, a marker published later arrives
    # with no copy before it (the broker re-sends un-acknowledged messages first).
    redelivered = channel.inbound["redelivered"]
    channel._link.client.socket().shutdown(socket.SHUT_RDWR)
    await eventually(lambda: channel._link.connects == 3 and channel._link.connected.is_set(), "reconnected")
    malformed = channel.inbound["malformed_ack"]
    await link.publish("warnd/speakers/spk-1/ack", b"marker", timeout=WAIT)
    await eventually(lambda: channel.inbound["malformed_ack"] > malformed, "the marker read")
    assert channel.inbound["redelivered"] == redelivered
    assert rows(db_path)["spk-1"]["version"] == after["version"]

    # The silence sweep, past the ack timeout: only the control speaker's grid is silent.
    async def swept() -> bool:
        await node.watch_speakers()
        return grid(2) in uncovered(db_path)
    await eventually(swept, "the control grid declared silent")
    assert uncovered(db_path) == {grid(2)}


# --- real processes: `warnd serve` killed with SIGKILL while its played-acks wait for the database

GRIDS_N, PER_GRID = 4, 5
STALLED = "speaker messages wait for the database; not acknowledged to the broker yet"


@pytest.fixture
def procs(request, tmp_path):
    """The test's processes; all stopped afterwards, their output shown if the test failed."""
    failed_before = request.session.testsfailed
    group = Procs(tmp_path)
    yield group
    group.close()
    if request.session.testsfailed > failed_before:
        print("\n" + group.tails(), file=sys.stderr)


def speaker_ids() -> list[str]:
    return [f"spk-{i:05d}" for i in range(GRIDS_N * PER_GRID)]


def directory_file() -> dict:
    grids = range(GRIDS_N + 1)  # the last one is the control speaker's
    return {
        "regions": [{"code": COUNTY, "name": "示例县"}, {"code": TOWNSHIP, "name": "城关镇", "parent": COUNTY},
                    {"code": VILLAGE, "name": "河口村", "parent": TOWNSHIP}]
                   + [{"code": grid(g), "name": f"{g}组", "parent": VILLAGE} for g in grids],
        "people": [{"id": f"p{g}", "name": f"网格员{g}", "region": grid(g), "roles": ["grid_responsible"],
                    "phone": f"+86138000000{g:02d}"} for g in grids],
        "speakers": [{"id": sid, "grid": grid(i // PER_GRID)} for i, sid in enumerate(speaker_ids())]
                    + [{"id": CONTROL, "grid": grid(GRIDS_N)}],
    }


class Warnd:
    """A config, a database, a directory and a token for `warnd serve` processes of one node id."""

    def __init__(self, procs: Procs, tmp_path: Path, broker_url: str) -> None:
        self.procs = procs
        self.db_path = tmp_path / "warnd.db"
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        config_path = tmp_path / "warnd.yaml"
        config_path.write_text(yaml.safe_dump({
            "database_url": f"sqlite:///{self.db_path}", "port": port, "public_base_url": self.base,
            "node_id": "acks-node",  # the same MQTT client id (warnd-acks-node), so the same session
            "log_level": "WARNING", "approval": NO_APPROVAL, "webhook": {"enabled": False},
            "mqtt": {"url": broker_url}, "speaker": {"enabled": True, "ack_timeout_seconds": 20},
            "sweeps": {"speaker_seconds": 0.5}, "dispatcher": {"poll_seconds": 0.05},
            "routing": [{"levels": ["red"], "channels": ["speaker"]}]}), encoding="utf-8")
        directory_path = tmp_path / "directory.yaml"
        directory_path.write_text(yaml.safe_dump(directory_file(), allow_unicode=True), encoding="utf-8")
        self.cfg = ["--config", str(config_path)]
        run([*warnd_command(), "db", "upgrade", *self.cfg])
        run([*warnd_command(), "directory", "import", *self.cfg, str(directory_path)])
        self.token = run([*warnd_command(), "token", "create", *self.cfg, "--department", "县气象局",
                          "--admin"]).strip().splitlines()[-1]
        self.lives = 0

    async def serve(self) -> Proc:
        self.lives += 1
        proc = self.procs.start(f"warnd-{self.lives}", [*warnd_command(), "serve", *self.cfg])
        await eventually(lambda: asyncio.to_thread(http_ok, self.base + "/readyz"), "warnd serve ready",
                         alive=(proc,))
        return proc

    async def post(self, body: bytes) -> None:
        response = await asyncio.to_thread(http, "POST", self.base + "/api/v1/warnings", body,
                                           {"Authorization": f"Bearer {self.token}", "Content-Type": XML})
        assert response.status == 201, (response.status, response.body[:2000])


def stalled_warnings(proc: Proc) -> list[int]:
    """The `held` counts of the node's "waiting for the database" warnings so far."""
    held = []
    for line in proc.stderr_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("msg") == STALLED:
            held.append(entry["held"])
    return held


@pytest.mark.slow
async def test_kill_9_while_played_acks_wait_for_the_database_loses_none(procs, tmp_path):
    t0 = time.monotonic()
    async with running_mosquitto(tmp_path) as broker:
        warnd = await asyncio.to_thread(Warnd, procs, tmp_path, broker.url)
        sids = speaker_ids()
        fleet = SpeakerFleet([*sids, CONTROL], default=Behaviour(lost_acks=True))
        await fleet.start(broker.url)
        acks = await speaker_acks(broker.url)
        try:
            first = await warnd.serve()
            await warnd.post(live("W-KILL"))
            await fleet.wait_until(lambda f: f.played_count() == len(sids) + 1, WAIT)
            await eventually(lambda: set(states(warnd.db_path).values()) == {"sent"} and
                             len(states(warnd.db_path)) == len(sids) + 1, "every send recorded", alive=(first,))
            ids = {sid: row["id"] for sid, row in rows(warnd.db_path).items()}

            lock = WriteLock(warnd.db_path)
            try:
                for sid in sids:  # the control speaker stays silent
                    await acks.publish(f"warnd/speakers/{sid}/ack", played(ids[sid]), timeout=WAIT)
                # warnd has read all of them, and commits none: it says so while the lock is held
                await eventually(lambda: any(n >= len(sids) for n in stalled_warnings(first)),
                                 f"warnd holding {len(sids)} acks", alive=(first,))
                first.kill9()
            finally:
                lock.release()
            assert set(states(warnd.db_path).values()) == {"sent"}  # nothing of them was committed

            second = await warnd.serve()  # the same node id: the broker re-sends the session's acks
            await eventually(lambda: sorted(s for s, st in states(warnd.db_path).items() if st == "delivered")
                             == sids, "every acked speaker delivered", alive=(second,))
            # Past the ack timeout the silence sweep declares the control grid silent — and no other.
            await eventually(lambda: grid(GRIDS_N) in uncovered(warnd.db_path), "the control grid silent",
                             alive=(second,))
            assert uncovered(warnd.db_path) == {grid(GRIDS_N)}
            assert states(warnd.db_path) == {**{sid: "delivered" for sid in sids}, CONTROL: "sent"}
        finally:
            await acks.close()
            await fleet.stop()
            procs.close()  # before the broker goes
    print(f"\n[acks] kill -9 with {len(sids)} acks held: none lost, {time.monotonic() - t0:.1f}s")
