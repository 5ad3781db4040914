"""SMS fan-out: N messages through warnd's dispatcher and the real twilio SDK to the Twilio
simulator in another process, beside a bare SDK loop and a raw aiohttp loop.

    python -m bench.sms_fanout [--count 20000] [--concurrency 64] [--db URL] [--json out.json]

Processes: the simulator (`python -m warnd.sim.twilio`) on loopback, and this driver, which
runs a real warnd `Node` in-process (SQLite file, WAL, synchronous=FULL, or --db) with its
HTTP app served on loopback for the status callbacks, and the baselines. One red warning
to N grid responsible persons (one per grid) is planned with the dispatcher stopped; the
clock starts when the dispatcher starts (its first claim).

(a) send path: the simulator's status callbacks are pushed an hour out, so only the
    create calls are measured: first claim → the last row reads `sent` (its sent_at).
(b) with callbacks: a second red warning to the same N people, the simulator posting
    signed `sent` (after 0.05 s) and `delivered` (after 0.2 s) to warnd's
    /twilio/sms/status, which verifies the signature and writes each receipt: first
    claim → the last row reads `delivered` (its done_at).

Baselines, same process and concurrency, same simulator, callbacks pushed out as in (a):
the bare SDK (`Client` + `AsyncTwilioHttpClient` on an aiohttp session limited to the
concurrency, `messages.create_async` with the same To/From/Body/StatusCallback, no
timeout wrapper) before and after warnd, and a raw aiohttp loop posting the same
url-encoded forms with basic auth. warnd uses sms.concurrency = twilio.connection_limit =
the same concurrency and a rate limit high enough not to bind. Exactly-once: after each
run the simulator must have received exactly N messages.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import time
from datetime import datetime
from urllib.parse import urlencode

import aiohttp
import sqlalchemy as sa

from bench.common import (
    run_async,
    LOOPBACK,
    BenchError,
    Process,
    Result,
    add_cli,
    cap_alert,
    cpu_seconds,
    finish,
    free_port,
    http_json,
    peak_rss_mib,
    processes,
    scratch_database,
    serve_app,
    wait_async,
    workdir,
)

NAME = "sms_fanout"
DEFAULT_COUNT = 20_000
SMOKE = {"count": 300}  # bench.run_all --smoke: every path once, correctness only
CONCURRENCY = 64
TARGET_RATIO = 0.8  # issue 16: send path ÷ the bare SDK loop
TARGET_CALLBACKS = 0.5  # with both signed status callbacks verified and written
SID, TOKEN, FROM = "AC" + "b" * 32, "bench-auth-token", "+15005550006"
VILLAGE = "421126100201"
XML = "application/cap+xml"
PHASE_SECONDS = 240.0  # bound on each run
QUIET = {"sent_after": 3600, "deliver_after": 3600}  # no callback during the run
LIVE = {"sent_after": 0.05, "deliver_after": 0.2}


def phone(i: int) -> str:
    return f"+86138{i:08d}"


def grid(i: int) -> str:
    return f"{VILLAGE}{i:05d}"


def directory(n: int):  # noqa: ANN201
    from warnd.domain.directory import Person, Region
    from warnd.ingest.directory import DirectoryData

    regions = [Region("421126", "蕲阳县", "county"), Region("421126100", "青石镇", "township", "421126"),
               Region(VILLAGE, "柳塘村", "village", "421126100")]
    regions += [Region(grid(i), f"{i}组", "grid", VILLAGE) for i in range(n)]
    people = [Person(f"p{i}", f"网格员{i}", grid(i), ("grid_responsible",), phone(i)) for i in range(n)]
    return DirectoryData(regions=tuple(regions), people=tuple(people))


# -- simulator control --

def control(sim_url: str, data: dict) -> None:
    status, body = http_json("POST", f"{sim_url}/_control", data)
    if status != 200:
        raise BenchError(f"simulator /_control answered {status}: {body}")


def sim_stats(sim_url: str) -> dict:
    status, body = http_json("GET", f"{sim_url}/_stats")
    if status != 200 or not isinstance(body, dict):
        raise BenchError(f"simulator /_stats answered {status}: {body}")
    return body


# -- baselines --

async def _workers(count: int, concurrency: int, one) -> int:  # noqa: ANN001
    """Run `one(i)` for i < count with `concurrency` workers; the number that raised or returned False."""
    todo = iter(range(count))
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for i in todo:
            try:
                if await one(i) is False:
                    failures += 1
            except Exception:  # noqa: BLE001 - counted
                failures += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures


def _session(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency),
                                 cookie_jar=aiohttp.DummyCookieJar())


async def bare_sdk(sim_url: str, body: str, callbacks: list[str], concurrency: int) -> int:
    from twilio.http.async_http_client import AsyncTwilioHttpClient
    from twilio.rest import Client

    http = AsyncTwilioHttpClient(pool_connections=False)  # as shipped, on a session with a limit
    http.session = _session(concurrency)
    client = Client(SID, TOKEN, http_client=http)
    client.edge = client.region = None
    client.api.base_url = sim_url
    try:
        async def one(i: int) -> bool:
            msg = await client.messages.create_async(to=phone(i), from_=FROM, body=body,
                                                     status_callback=callbacks[i])
            return bool(msg.sid)
        return await _workers(len(callbacks), concurrency, one)
    finally:
        await http.session.close()


async def raw_aiohttp(sim_url: str, body: str, callbacks: list[str], concurrency: int) -> int:
    url = f"{sim_url}/2010-04-01/Accounts/{SID}/Messages.json"
    headers = {"Authorization": "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode(),
               "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    forms = [urlencode({"To": phone(i), "From": FROM, "Body": body, "StatusCallback": cb}).encode()
             for i, cb in enumerate(callbacks)]
    async with _session(concurrency) as session:
        async def one(i: int) -> bool:
            async with session.post(url, data=forms[i], headers=headers) as resp:
                await resp.read()
                return resp.status == 201
        return await _workers(len(forms), concurrency, one)


async def baseline(result: Result, label: str, fn, sim: Process, sim_url: str, body: str,  # noqa: ANN001
                   callbacks: list[str], concurrency: int) -> float | None:
    control(sim_url, {"forget": True, "default": QUIET})
    cpu0, sim0, t0 = time.process_time(), cpu_seconds(sim.pid), time.time()
    failures = await asyncio.wait_for(fn(sim_url, body, callbacks, concurrency), PHASE_SECONDS)
    wall = time.time() - t0
    cpu1, sim1 = time.process_time(), cpu_seconds(sim.pid)
    n = len(callbacks)
    received = sim_stats(sim_url)["messages"]
    rate = n / wall if not failures else None
    result.add(f"{label} messages/s", rate, "/s", f"{concurrency} at a time")
    result.add(f"{label} client CPU per message", (cpu1 - cpu0) / n * 1e6, "µs")
    if sim0 is not None and sim1 is not None:
        result.add(f"{label} simulator CPU", (sim1 - sim0) / wall * 100, "% core")
    if failures or received != n:
        result.ok = False
        result.notes.append(f"{label}: {failures} failed calls, simulator received {received} of {n}")
    return rate


# -- warnd --

async def _count(node, wid: int, states: tuple[str, ...]) -> int:  # noqa: ANN001
    from warnd.store.schema import deliveries as d

    async with node.db.read() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(d).where(
            d.c.warning_id == wid, d.c.state.in_(states)))).scalar()


async def _last(node, wid: int, column: str) -> datetime | None:  # noqa: ANN001
    from warnd.store.schema import deliveries as d

    async with node.db.read() as conn:
        return (await conn.execute(sa.select(sa.func.max(d.c[column])).where(d.c.warning_id == wid))).scalar()


async def submit(node, n: int, identifier: str) -> tuple[int, float]:  # noqa: ANN001
    from warnd.domain.authority import admin_scope

    t = time.monotonic()
    submitted, _ = await node.intake.submit(cap_alert(identifier, [VILLAGE]), XML, admin_scope())
    took = time.monotonic() - t
    planned = await _count(node, submitted.warning_id, ("pending",))
    if planned != n:
        raise BenchError(f"warning {identifier} planned {planned} SMS, not {n}")
    return submitted.warning_id, took


async def warnd_run(result: Result, label: str, node, wid: int, sim: Process, sim_url: str, n: int,  # noqa: ANN001
                    final: tuple[str, ...], column: str, what: str) -> float | None:
    """Start the dispatcher (first claim), wait until every row is in `final`; rate from `column`."""
    cpu0, sim0 = time.process_time(), cpu_seconds(sim.pid)
    timers = Timers(node)
    t0 = time.time()
    await node.dispatcher.start()
    try:
        await wait_async(lambda: _ge(_count(node, wid, final), n), PHASE_SECONDS, 0.05,
                         f"{label}: {n} rows {'/'.join(final)}")
        t_seen = time.time()
    finally:
        cpu1, sim1 = time.process_time(), cpu_seconds(sim.pid)
    last = await _last(node, wid, column)
    wall = t_seen - t0
    rate = n / (last.timestamp() - t0) if last else None
    result.add(f"{label} deliveries/s", rate, "/s", what)
    result.add(f"{label} all visible", wall, "s", "first claim → the driver's poll sees all of them")
    result.add(f"{label} CPU", (cpu1 - cpu0) / wall * 100, "% core", "driver process: warnd (all threads)")
    result.add(f"{label} CPU per delivery", (cpu1 - cpu0) / n * 1e6, "µs")
    if sim0 is not None and sim1 is not None:
        result.add(f"{label} simulator CPU", (sim1 - sim0) / wall * 100, "% core")
    timers.report(result, label, wall)
    return rate


class Timers:
    """Where the dispatcher's time went: wraps this node's claim, apply, receipts and channel send
    (measurement only, on the instances) and reads the send histogram's sum."""

    def __init__(self, node) -> None:  # noqa: ANN001
        self.node = node
        self.spent: dict[str, list[float]] = {}
        for owner, name in ((node.deliveries, "claim"), (node.deliveries, "apply"), (node.deliveries, "receipts")):
            self._wrap(owner, name)
        # Receipts are written in groups by a writer that took the store's bound method when the
        # node was built: point it at the wrapped one for the run (put back in report()).
        self.grouped = node.receipts._write
        self.grouped._write = node.deliveries.receipts
        self.send0 = self._send_sum()

    def _wrap(self, owner, name: str) -> None:  # noqa: ANN001
        original = getattr(type(owner), name)
        box = self.spent.setdefault(name, [0.0, 0])

        async def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            t = time.perf_counter()
            try:
                return await original(owner, *args, **kwargs)
            finally:
                box[0] += time.perf_counter() - t
                box[1] += 1
        setattr(owner, name, timed)

    def _send_sum(self) -> float:
        return self.node.metrics.registry.get_sample_value("warnd_send_seconds_sum", {"channel": "sms"}) or 0.0

    def report(self, result: Result, label: str, wall: float) -> None:
        send = self._send_sum() - self.send0
        concurrency = self.node.config.sms.concurrency
        result.add(f"{label} busy send slots", send / wall, f"of {concurrency}",
                   "mean sends in flight (time in channel.send ÷ wall)")
        for name, (spent, calls) in self.spent.items():
            if calls:
                result.add(f"{label} store.{name}", spent / calls * 1000, "ms/call",
                           f"{calls} calls, {spent:.2f} s in all")
            delattr(self.node.deliveries, name)
        self.grouped._write = self.node.deliveries.receipts


async def _ge(coro, n: int) -> bool:  # noqa: ANN001
    return (await coro) >= n


def run_benchmark(db: str | None = None, count: int = DEFAULT_COUNT, concurrency: int = CONCURRENCY) -> Result:
    result = Result(NAME)
    result.add("messages", count, "", "per run; one person per grid")
    try:
        with workdir("warnd-bench-sms-") as wd, scratch_database(db, wd) as db_url, processes() as procs:
            result.add("database", db_url.split(":", 1)[0], "", "fresh for this run")
            sim_port = free_port()
            sim = Process("twilio-sim", [sys.executable, "-m", "warnd.sim.twilio", "--host", LOOPBACK,
                                         "--port", str(sim_port), "--account-sid", SID, "--auth-token", TOKEN,
                                         "--callback-limit", str(concurrency)], wd)
            procs.append(sim)
            sim_url = f"http://{LOOPBACK}:{sim_port}"
            sim.wait_http(f"{sim_url}/_stats", 30)
            run_async(_run(result, db_url, sim, sim_url, count, concurrency))
            result.add("simulator peak RSS", peak_rss_mib(sim.pid), "MiB")
    except BenchError as exc:
        result.ok = False
        result.error = str(exc)
    return result


async def _run(result: Result, db_url: str, sim: Process, sim_url: str, n: int, concurrency: int) -> None:
    from warnd.config import load_config
    from warnd.domain.confirmation import short_code
    from warnd.domain.model import Level
    from warnd.engine.node import Node
    from warnd.http.app import build_app
    from warnd.store.migrate import upgrade
    from warnd_channels.base import Message, Recipient

    await asyncio.to_thread(upgrade, db_url)
    port = free_port()
    base = f"http://{LOOPBACK}:{port}"
    config = load_config(
        None, database_url=db_url, host=LOOPBACK, port=port, public_base_url=base, node_id="bench-sms",
        log_level="WARNING",
        twilio={"account_sid": SID, "auth_token": TOKEN, "api_base_url": sim_url, "from_number": FROM,
                "connection_limit": concurrency},
        sms={"enabled": True, "rate_per_second": 1_000_000, "concurrency": concurrency},
        voice={"enabled": False}, webhook={"enabled": False},
        ladders={},  # no escalation rungs: the run is about the send path
        routing=[{"levels": ["red"], "channels": ["sms"], "roles": ["grid_responsible"]}],
        approval={"green_channel": ["admin"]})
    node = Node(config)
    runner = None
    try:
        t = time.monotonic()
        await node.directory.import_data(directory(n))
        result.add("directory import", time.monotonic() - t, "s", "setup, not timed below")
        runner = await serve_app(build_app(node), port)
        await node.start(dispatch=False)
        control(sim_url, {"default": QUIET})
        wid_a, plan_a = await submit(node, n, "bench-sms-a")
        result.add("planning", plan_a, "s", f"intake.submit of the red warning: {n} SMS rows written")

        # What warnd will send (person 0's text, with its signed confirmation link), for the baselines.
        cached = await node.alerts.get(wid_a)
        message = Message(0, wid_a, cached.alert, cached.cap_xml, Level.RED,
                          Recipient("person", "p0", phone(0), "zh-CN"), 1, node.clock.now(), True,
                          short_code(wid_a), "warning", node.link_url("confirm", f"{wid_a}/p0"))
        rendered = node.channels["sms"].render(message)
        body = rendered.text
        callbacks = [node.callback_url("sms-status", 10_000_000 + i) for i in range(n)]
        result.add("SMS body", len(body), "chars", rendered.content_type.split(";", 2)[-1].strip())

        sdk_before = await baseline(result, "bare SDK before", bare_sdk, sim, sim_url, body, callbacks, concurrency)
        raw = await baseline(result, "raw aiohttp", raw_aiohttp, sim, sim_url, body, callbacks, concurrency)

        control(sim_url, {"forget": True, "default": QUIET})
        rate_a = await warnd_run(result, "warnd (a) send path", node, wid_a, sim, sim_url, n, ("sent",), "sent_at",
                                 "first claim → last `sent` (callbacks held back)")
        stats = sim_stats(sim_url)
        if stats["messages"] != n:
            result.ok = False
            result.notes.append(f"(a): the simulator received {stats['messages']} messages for {n} rows")
        await node.dispatcher.stop()

        control(sim_url, {"forget": True, "default": LIVE})
        wid_b, _ = await submit(node, n, "bench-sms-b")
        rate_b = await warnd_run(result, "warnd (b) with callbacks", node, wid_b, sim, sim_url, n, ("delivered",),
                                 "done_at", "first claim → last `delivered` written by /twilio/sms/status")
        stats = sim_stats(sim_url)
        if stats["messages"] != n or stats["callbacks_failed"]:
            result.ok = False
            result.notes.append(f"(b): simulator stats {stats}")
        result.add("warnd (b) callbacks", stats["callbacks"], "", "signed POSTs warnd verified and applied")
        await node.dispatcher.stop()

        sdk_after = await baseline(result, "bare SDK after", bare_sdk, sim, sim_url, body, callbacks, concurrency)
        sdk = (sdk_before + sdk_after) / 2 if sdk_before and sdk_after else None
        result.add("bare SDK messages/s (mean)", sdk, "/s", "before and after warnd")
        ratio_a = rate_a / sdk if rate_a and sdk else None
        result.add("ratio warnd (a) send path / bare SDK", ratio_a, "", f"target ≥ {TARGET_RATIO}")
        result.target("ratio warnd (a) send path / bare SDK", None if ratio_a is None else ratio_a >= TARGET_RATIO)
        ratio_b = rate_b / sdk if rate_b and sdk else None
        result.add("ratio warnd (b) with callbacks / bare SDK", ratio_b, "", f"target ≥ {TARGET_CALLBACKS}")
        result.target("ratio warnd (b) with callbacks / bare SDK", None if ratio_b is None else ratio_b >= TARGET_CALLBACKS)
        result.compare("ratio bare SDK / raw aiohttp", sdk / raw if sdk and raw else None, "", "the SDK's own cost")
        if sdk_before and sdk_after and abs(sdk_before - sdk_after) > 0.25 * max(sdk_before, sdk_after):
            result.notes.append(f"the two bare SDK runs differ by more than 25% ({sdk_before:,.0f} vs "
                                f"{sdk_after:,.0f}/s): the machine was busy; compare CPU per message")
        result.add("driver peak RSS", peak_rss_mib_self(), "MiB", "warnd in-process, baselines included")
    finally:
        await node.stop()
        if runner is not None:
            await runner.cleanup()


def peak_rss_mib_self() -> float | None:
    import os

    return peak_rss_mib(os.getpid())


def run(db: str | None = None) -> Result:
    """The entry point bench.run_all calls: the default size."""
    return run_benchmark(db)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sms_fanout", description=__doc__.split("\n\n")[0])
    add_cli(parser, DEFAULT_COUNT)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY,
                        help="sends at a time, for warnd and both baselines (64)")
    args = parser.parse_args(argv)
    if args.count < 1 or args.concurrency < 1:
        parser.error("--count and --concurrency must be positive")
    return finish(run_benchmark(args.db, args.count, args.concurrency), args.json)


if __name__ == "__main__":
    sys.exit(main())
