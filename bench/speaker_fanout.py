"""Speaker fan-out: one red warning to N loudspeakers over MQTT 5, beside a bare paho QoS 1 loop.

    python -m bench.speaker_fanout [--count 5000] [--db URL] [--json out.json]

Processes: a mosquitto this benchmark starts on a free loopback port (warnd.sim.broker's
config: `max_queued_messages 0`, 1,000 in flight per client, no persistence), two
speaker simulators (`python -m warnd.sim.speakers --multiplexed`: one MQTT client answering
for N speaker ids, received → playing → played acks at once), one for warnd's topic prefix
and one for the baseline's, and this driver, which runs a real warnd `Node` in-process
(SQLite file, WAL, synchronous=FULL, or --db; speaker.rate_per_second raised so the
engine, not the policy, is measured; concurrency 500 and 1,000 in flight as configured
by default).

warnd: N speakers in N/10 grids (one grid responsible each, so the red warning opens
confirmation requirements as in production). The node starts with its dispatcher stopped
and waits until it has recorded every speaker's retained presence; the warning is then
planned, and the clock starts when the dispatcher starts (its first claim).
  - publish rate: N ÷ (last PUBACK − first claim), PUBACK times from the attempts table;
  - all played: first claim → the last delivery turned `delivered` by its played-ack
    (done_at), and the driver's poll seeing all N `delivered`.
Exactly-once: the simulator's summary (on SIGTERM) must say N played, 0 duplicates.

Baseline (before and after warnd, the node stopped): one paho 2.x client (MQTT 5, its
network loop in a thread) publishes N play commands (the same JSON warnd renders, one
per speaker, message expiry set) with QoS 1 to the baseline fleet's cmd topics, with the
same in-flight window (a semaphore of 1,000 released on PUBACK), and counts the played
acks it receives on `{prefix}/+/ack`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from bench.common import (
    run_async,
    BenchError,
    Process,
    Result,
    add_cli,
    cap_alert,
    cpu_seconds,
    finish,
    peak_rss_mib,
    processes,
    scratch_database,
    wait_async,
    wait_until,
    workdir,
)

NAME = "speaker_fanout"
DEFAULT_COUNT = 5_000
SMOKE = {"count": 300}  # bench.run_all --smoke: every path once, correctness only
TARGET_PUBLISH = 0.5  # issue 16: publishes/s ÷ bare paho's
TARGET_PLAYED = 0.9  # time until every played-ack, bare ÷ warnd
PER_GRID = 10
INFLIGHT = 1000  # mqtt.inflight (warnd's default) and the baseline's window
VILLAGE = "421126100201"
XML = "application/cap+xml"
PREFIX, BASE_PREFIX = "warnd/speakers", "benchbase/speakers"
RUN_SECONDS = 240.0  # bound on each fan-out


def speaker(i: int) -> str:
    return f"spk-{i:05d}"


def grid(g: int) -> str:
    return f"{VILLAGE}{g:04d}"


def directory(n: int):  # noqa: ANN201
    from warnd.domain.directory import Person, Region, Speaker
    from warnd.ingest.directory import DirectoryData

    grids = (n + PER_GRID - 1) // PER_GRID
    regions = [Region("421126", "蕲阳县", "county"), Region("421126100", "青石镇", "township", "421126"),
               Region(VILLAGE, "柳塘村", "village", "421126100")]
    regions += [Region(grid(g), f"{g}组", "grid", VILLAGE) for g in range(grids)]
    people = [Person(f"p{g}", f"网格员{g}", grid(g), ("grid_responsible",), f"+86138{g:08d}") for g in range(grids)]
    speakers = [Speaker(speaker(i), grid(i // PER_GRID)) for i in range(n)]
    return DirectoryData(regions=tuple(regions), people=tuple(people), speakers=tuple(speakers))


def fleet_process(wd: Path, name: str, broker_url: str, prefix: str, n: int) -> Process:
    return Process(name, [sys.executable, "-m", "warnd.sim.speakers", "--broker", broker_url, "--count", str(n),
                          "--prefix", prefix, "--multiplexed", "--protocol", "5"], wd)


def wait_ready(proc: Process, n: int, timeout: float = 180.0) -> None:
    def ready() -> bool:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited:\n{proc.log_tail()}")
        return f"ready {n}" in proc.log_path.read_text(errors="replace")
    wait_until(ready, timeout, 0.1, f"{proc.name} subscribed")


def fleet_summary(proc: Process) -> dict:
    """The JSON line a speaker simulator prints when it stops."""
    proc.stop(60)
    for line in reversed(proc.log_path.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise BenchError(f"{proc.name} printed no summary:\n{proc.log_tail()}")


# -- the baseline: bare paho --

def bare_paho(broker_port: int, payloads: list[bytes], timeout: float = RUN_SECONDS) -> dict:
    """Publish every payload (QoS 1) to its speaker's cmd topic; count the played acks."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    n = len(payloads)
    window = threading.Semaphore(INFLIGHT)
    lock = threading.Lock()
    state = {"pubacks": 0, "played": 0, "last_puback": 0.0, "last_played": 0.0, "bad": 0}
    pubacked, played, subscribed = threading.Event(), threading.Event(), threading.Event()

    def on_publish(client, userdata, mid, reason_code, properties) -> None:  # noqa: ANN001
        window.release()
        with lock:
            state["pubacks"] += 1
            state["bad"] += reason_code.is_failure
            if state["pubacks"] == n:
                state["last_puback"] = time.time()
                pubacked.set()

    def on_message(client, userdata, message) -> None:  # noqa: ANN001
        if json.loads(message.payload).get("state") == "played":
            with lock:
                state["played"] += 1
                if state["played"] == n:
                    state["last_played"] = time.time()
                    played.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-bare-{os.getpid()}",
                         protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(0)  # the semaphore is the window, as in warnd
    client.max_queued_messages_set(0)
    client.on_publish, client.on_message = on_publish, on_message
    client.on_subscribe = lambda *a: subscribed.set()
    host, port = "127.0.0.1", broker_port
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        client.subscribe(f"{BASE_PREFIX}/+/ack", qos=1)
        if not subscribed.wait(30):
            raise BenchError("bare paho: no SUBACK")
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = 3600
        cpu0, t0 = time.process_time(), time.time()
        for i, payload in enumerate(payloads):
            if not window.acquire(timeout=timeout):
                raise BenchError("bare paho: no PUBACK for a full window")
            info = client.publish(f"{BASE_PREFIX}/{speaker(i)}/cmd", payload, qos=1, properties=props)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise BenchError(f"bare paho: publish returned {info.rc}")
        pubacked.wait(timeout)
        cpu1 = time.process_time()
        played.wait(timeout)
        return {**state, "t0": t0, "cpu": cpu1 - cpu0}
    finally:
        client.loop_stop()
        client.disconnect()


def baseline(result: Result, label: str, broker_port: int, payloads: list[bytes], fleet: Process) -> float | None:
    n = len(payloads)
    fleet0 = cpu_seconds(fleet.pid)
    got = bare_paho(broker_port, payloads)
    fleet1 = cpu_seconds(fleet.pid)
    t0 = got["t0"]
    rate = n / (got["last_puback"] - t0) if got["pubacks"] == n else None
    result.add(f"{label} publishes/s", rate, "/s", f"bare paho QoS 1, {INFLIGHT} in flight")
    result.add(f"{label} all played", got["last_played"] - t0 if got["played"] == n else None, "s",
               "start → last played-ack received")
    result.add(f"{label} CPU per publish", got["cpu"] / n * 1e6, "µs", "the publishing process")
    if fleet0 is not None and fleet1 is not None and got["last_played"]:
        result.add(f"{label} speaker sim CPU", (fleet1 - fleet0) / (got["last_played"] - t0) * 100, "% core")
    if got["pubacks"] != n or got["played"] != n or got["bad"]:
        result.ok = False
        result.notes.append(f"{label}: {got['pubacks']} PUBACKs ({got['bad']} refused), {got['played']} played "
                            f"of {n}")
    return rate


# -- warnd --

async def _count(node, table, *where) -> int:  # noqa: ANN001
    async with node.db.read() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(table).where(*where))).scalar()


async def _max(node, column, *where):  # noqa: ANN001, ANN201
    async with node.db.read() as conn:
        return (await conn.execute(sa.select(sa.func.max(column)).where(*where))).scalar()


async def _ge(coro, n: int) -> bool:  # noqa: ANN001
    return (await coro) >= n


async def render_payloads(node, wid: int, n: int, first_id: int) -> list[bytes]:  # noqa: ANN001
    """What warnd's speaker channel renders for this warning, one per speaker, with fresh message ids."""
    from warnd.domain.model import Level
    from warnd_channels.base import Message, Recipient

    cached = await node.alerts.get(wid)
    channel = node.channels["speaker"]
    return [channel.render(Message(first_id + i, wid, cached.alert, cached.cap_xml, Level.RED,
                                   Recipient("speaker", speaker(i), speaker(i), "zh-CN"), 1,
                                   node.clock.now())).body for i in range(n)]


async def plan(result: Result, node, n: int) -> int:  # noqa: ANN001
    """Wait until warnd knows every speaker is online, then plan the red warning (dispatcher stopped)."""
    from warnd.domain.authority import admin_scope
    from warnd.store.schema import deliveries, speaker_presence

    d = deliveries.c
    await wait_async(lambda: _ge(_count(node, speaker_presence, speaker_presence.c.online.is_(True)), n), 120, 0.2,
                     f"warnd recording {n} speakers online")
    t = time.monotonic()
    submitted, _ = await node.intake.submit(cap_alert("bench-speakers", [VILLAGE]), XML, admin_scope())
    wid = submitted.warning_id
    result.add("planning", time.monotonic() - t, "s", f"intake.submit: {n} speaker rows written")
    planned = await _count(node, deliveries, d.warning_id == wid, d.channel == "speaker")
    if planned != n:
        raise BenchError(f"the warning planned {planned} speaker deliveries, not {n}")
    return wid


async def warnd_fanout(result: Result, node, wid: int, n: int, fleet: Process) -> float | None:  # noqa: ANN001
    from warnd.store.schema import attempts, deliveries

    d = deliveries.c
    cpu0, fleet0 = time.process_time(), cpu_seconds(fleet.pid)
    t0 = time.time()
    await node.dispatcher.start()
    await wait_async(lambda: _ge(_count(node, deliveries, d.warning_id == wid, d.state == "delivered"), n),
                     RUN_SECONDS, 0.05, f"{n} deliveries delivered")
    t_seen = time.time()
    cpu1, fleet1 = time.process_time(), cpu_seconds(fleet.pid)
    ours = attempts.c.delivery_id.in_(sa.select(d.id).where(d.warning_id == wid))
    last_puback = await _max(node, attempts.c.finished_at, ours)
    last_played = await _max(node, d.done_at, d.warning_id == wid)
    rate = n / (last_puback.timestamp() - t0) if last_puback else None
    result.add("warnd publishes/s", rate, "/s", "first claim → last PUBACK (attempts.finished_at)")
    result.add("warnd all played", last_played.timestamp() - t0 if last_played else None, "s",
               "first claim → last delivery `delivered` by its played-ack")
    result.add("warnd all visible", t_seen - t0, "s", "first claim → the driver's poll sees all N delivered")
    result.add("warnd CPU", (cpu1 - cpu0) / (t_seen - t0) * 100, "% core", "driver process: warnd, all threads")
    result.add("warnd CPU per delivery", (cpu1 - cpu0) / n * 1e6, "µs", "publish + 3 acks + receipt write")
    if fleet0 is not None and fleet1 is not None:
        result.add("warnd speaker sim CPU", (fleet1 - fleet0) / (t_seen - t0) * 100, "% core")
    attempts_n = await _count(node, attempts, ours)
    if attempts_n != n:
        result.notes.append(f"warnd made {attempts_n} publish attempts for {n} deliveries (retries)")
    await node.dispatcher.stop()
    return rate


def run_benchmark(db: str | None = None, count: int = DEFAULT_COUNT) -> Result:
    result = Result(NAME)
    result.add("speakers", count, "", f"{PER_GRID} per grid, one warning")
    try:
        with workdir("warnd-bench-spk-") as wd, scratch_database(db, wd) as db_url, processes() as procs:
            result.add("database", db_url.split(":", 1)[0], "", "fresh for this run")
            run_async(_run(result, wd, db_url, count, procs))
    except BenchError as exc:
        result.ok = False
        result.error = str(exc)
    return result


async def _run(result: Result, wd: Path, db_url: str, n: int, procs: list[Process]) -> None:
    from warnd.config import load_config
    from warnd.engine.node import Node
    from warnd.sim.broker import Mosquitto, mosquitto_path
    from warnd.store.migrate import upgrade

    if mosquitto_path() is None:
        raise BenchError("mosquitto is not installed (apt-get install mosquitto)")
    broker = Mosquitto(wd / "mosquitto")
    await broker.start()
    node = None
    try:
        fleet = fleet_process(wd, "speakers-warnd", broker.url, PREFIX, n)
        base_fleet = fleet_process(wd, "speakers-baseline", broker.url, BASE_PREFIX, n)
        procs += [fleet, base_fleet]
        await asyncio.to_thread(wait_ready, fleet, n)
        await asyncio.to_thread(wait_ready, base_fleet, n)

        await asyncio.to_thread(upgrade, db_url)
        config = load_config(
            None, database_url=db_url, node_id="bench-speakers", log_level="WARNING",
            mqtt={"url": broker.url, "protocol": 5, "topic_prefix": PREFIX, "inflight": INFLIGHT},
            speaker={"enabled": True, "rate_per_second": 1_000_000},
            webhook={"enabled": False}, routing=[{"levels": ["red"], "channels": ["speaker"]}],
        approval={"green_channel": ["admin"]})
        node = Node(config)
        t = time.monotonic()
        await node.directory.import_data(directory(n))
        result.add("directory import", time.monotonic() - t, "s", "setup, not timed")
        await node.start(dispatch=False)
        wid = await plan(result, node, n)
        before = await asyncio.to_thread(baseline, result, "bare paho before", broker.port,
                                         await render_payloads(node, wid, n, 10_000_000), base_fleet)
        rate = await warnd_fanout(result, node, wid, n, fleet)
        after = await asyncio.to_thread(baseline, result, "bare paho after", broker.port,
                                        await render_payloads(node, wid, n, 20_000_000), base_fleet)
        await node.stop()
        node = None
        summary = fleet_summary(fleet)
        result.add("warnd speakers played", summary["played"], "", f"duplicates {summary['duplicates']}, "
                   f"acks lost {summary['acks_lost']}")
        if summary["played"] != n or summary["duplicates"] or summary["acks_lost"]:
            result.ok = False
            result.notes.append(f"warnd's speaker simulator: {summary}")
        base = (before + after) / 2 if before and after else None
        result.add("bare paho publishes/s (mean)", base, "/s", "before and after warnd")
        publishes = rate / base if rate and base else None
        result.add("ratio warnd / bare paho publishes", publishes, "", f"target ≥ {TARGET_PUBLISH}")
        result.target("ratio warnd / bare paho publishes", None if publishes is None else publishes >= TARGET_PUBLISH)
        played = result.value("warnd all played")
        bare_played = [v for v in (result.value("bare paho before all played"),
                                   result.value("bare paho after all played")) if isinstance(v, float)]
        if isinstance(played, float) and bare_played:
            result.add("ratio bare paho / warnd all played", sum(bare_played) / len(bare_played) / played, "",
                       f"time until every played-ack, bare ÷ warnd; target ≥ {TARGET_PLAYED}")
            result.target("ratio bare paho / warnd all played",
                          result.value("ratio bare paho / warnd all played") >= TARGET_PLAYED)
        result.add("driver peak RSS", peak_rss_mib(os.getpid()), "MiB", "warnd in-process, baseline included")
        if before and after and abs(before - after) > 0.25 * max(before, after):
            result.notes.append(f"the two baselines differ by more than 25% ({before:,.0f} vs {after:,.0f}/s): "
                                "the machine was busy")
    finally:
        if node is not None:
            await node.stop()
        await broker.stop()


def run(db: str | None = None) -> Result:
    """The entry point bench.run_all calls: the default size."""
    return run_benchmark(db)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.speaker_fanout", description=__doc__.split("\n\n")[0])
    add_cli(parser, DEFAULT_COUNT)
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be positive")
    return finish(run_benchmark(args.db, args.count), args.json)


if __name__ == "__main__":
    sys.exit(main())
