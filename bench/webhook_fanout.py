"""Webhook fan-out: one red warning to N subscribers, against raw aiohttp and against Apprise.

    python -m bench.webhook_fanout [--count 20000] [--db postgresql://postgres@127.0.0.1:5432/test]
                                   [--rate 1000000] [--json out.json]

Three processes on loopback: the sink simulator (verifies every signature,
de-duplicates by webhook-id, appends one line per unique message to a record
file), a real `warnd serve`, and this driver. The driver

1. imports N subscribers (`{sink}/s{i}`, one shared secret) into a fresh
   database and creates an admin token, with the `warnd` CLI;
2. baseline: posts N copies of the warning's CAP bytes, each signed like warnd
   signs (standardwebhooks), 64 at a time, with a plain aiohttp client to
   `{sink}/b1/s{i}`;
3. starts `warnd serve`, POSTs the red CAP warning, waits until the sink has N
   unique messages, then until the API reports all N deliveries `delivered`
   (durable state), and stops warnd;
4. runs the baseline again (`/b2/`), and compares warnd with the mean of both;
5. second baseline (issue 16), if Apprise is installed: the same N as JSON
   notifications (`json://` URLs, title the headline, message the CAP text),
   signed the same way, one `Apprise.async_notify` over all N URLs with
   Apprise's own worker pool (see `bench.apprise_baseline`), to
   `{sink}/b3/s{i}`; compares warnd with it.
   Without Apprise the run says "apprise not installed: baseline skipped".

Throughput on every side is N / (last receipt at the sink − start), receipt
times coming from the sink's record file. The sink's counts are forgotten
between runs. Bounded throughout: each wait has a deadline.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import signal
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
from standardwebhooks import Webhook

from bench import apprise_baseline
from bench.common import run as command
from bench.common import (
    LOOPBACK,
    BenchError,
    Process,
    Result,
    cpu_seconds,
    free_port,
    http,
    http_json,
    peak_rss_mib,
    percentile,
    print_table,
    processes,
    scratch_database,
    tool,
    wait_until,
    workdir,
    write_json,
)

NAME = "webhook_fanout"
DEFAULT_COUNT = 20_000
SMOKE = {"count": 300}  # bench.run_all --smoke: every path once, correctness only
CONCURRENCY = 64  # the baseline's; warnd uses its configured webhook.concurrency (default 64)
DEFAULT_RATE = 1_000_000.0  # webhook.rate_per_second for the run: the engine is measured, not the policy
TARGET_RATIO = {"sqlite": 0.7, "postgresql": 0.6}  # issue 16: of raw aiohttp, by database
TARGET_APPRISE = 5.0  # issue 16: warnd deliveries/s ≥ 5 × Apprise's messages/s on the same job
HEADLINE = "暴雨红色预警"  # the CAP's <headline>, Apprise's title
FANOUT_SECONDS = 300.0  # bound on waiting for the last receipt (each side)
DURABLE_SECONDS = 60.0  # bound on waiting for every row to read `delivered` after the last receipt
CAP = "application/cap+xml"
COUNTY = "421126"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def cap_xml(identifier: str, now: datetime) -> bytes:
    """A red (Extreme) CAP 1.2 warning for the whole county, expiring in an hour."""
    def ts(moment: datetime) -> str:
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")

    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>bench@example.cn</sender>
  <sent>{ts(now - timedelta(seconds=1))}</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>zh-CN</language>
    <category>Met</category>
    <event>暴雨</event>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Likely</certainty>
    <expires>{ts(now + timedelta(hours=1))}</expires>
    <senderName>县气象局</senderName>
    <headline>{HEADLINE}</headline>
    <description>预计未来3小时有特大暴雨，累计雨量可达150毫米以上。</description>
    <instruction>立即转移到安全地带，远离河道和山体。</instruction>
    <area>
      <areaDesc>蕲阳县</areaDesc>
      <geocode>
        <valueName>GB2260</valueName>
        <value>{COUNTY}</value>
      </geocode>
    </area>
  </info>
</alert>
""".encode()


def directory_yaml(count: int, sink_url: str, secret: str) -> str:
    lines = ["regions:",
             f'  - {{code: "{COUNTY}", name: 蕲阳县}}',
             f'  - {{code: "{COUNTY}100", name: 青石镇, parent: "{COUNTY}"}}',
             f'  - {{code: "{COUNTY}100201", name: 柳塘村, parent: "{COUNTY}100"}}',
             f'  - {{code: "{COUNTY}100201001", name: 柳塘村第一网格, parent: "{COUNTY}100201"}}',
             "subscribers:"]
    lines += [f'  - {{id: s{i}, url: "{sink_url}/s{i}", secret: "{secret}"}}' for i in range(count)]
    return "\n".join(lines) + "\n"


def config_yaml(database_url: str, port: int, rate: float) -> str:
    return json.dumps({  # JSON is YAML
        "database_url": database_url, "host": LOOPBACK, "port": port, "node_id": f"bench-{port}",
        "public_base_url": f"http://{LOOPBACK}:{port}", "log_level": "WARNING",
        "webhook": {"allow_private_urls": True, "rate_per_second": rate},
        "approval": {"green_channel": ["bench"]},  # the fan-out is measured, not the 签发 step
    }, indent=2) + "\n"


def receipts(record_file: Path, prefix: str) -> list[tuple[float, int]]:
    """(received_at, body length) of every unique message the sink recorded under a path prefix."""
    out = []
    with open(record_file, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if rec["path"].startswith(prefix):
                out.append((rec["received_at"], rec["length"]))
    return out


def sink_stats(sink_url: str) -> dict:
    status, data = http_json("GET", f"{sink_url}/_stats", timeout=10)
    if status != 200 or not isinstance(data, dict):
        raise BenchError(f"sink /_stats answered {status}: {data}")
    return data


def _latencies(result: Result, label: str, t0: float, received: list[tuple[float, int]]) -> float | None:
    """Adds first/p50/p99 receipt latency figures; returns the last receipt time."""
    if not received:
        return None
    lat = sorted(at - t0 for at, _ in received)
    result.add(f"{label} first receipt", lat[0] * 1000, "ms", "after the start")
    result.add(f"{label} p50 receipt", percentile(lat, 50) * 1000, "ms")
    result.add(f"{label} p99 receipt", percentile(lat, 99) * 1000, "ms")
    return t0 + lat[-1]


# -- the warnd side --

def fan_out(result: Result, api: str, token: str, body: bytes, sink_url: str, record: Path, server: Process,
            sink: Process, count: int, profile: Path | None = None) -> bytes | None:
    """POST one warning, wait for every receipt and every durable `delivered`; return the sent body."""
    auth = {"Authorization": f"Bearer {token}"}
    forget(sink_url)
    spy = None
    if profile is not None:  # sample warnd (all threads, idle included) from the POST to the end
        spy = Process("py-spy", [tool("py-spy"), "record", "--pid", str(server.pid), "--format", "raw",
                                 "--rate", "100", "--threads", "--idle", "--output", str(profile)],
                      profile.parent)
        time.sleep(1.0)
    cpu_w0, cpu_s0 = cpu_seconds(server.pid), cpu_seconds(sink.pid)
    t0 = time.time()
    status, _, raw = http("POST", f"{api}/api/v1/warnings", body, {**auth, "Content-Type": CAP}, timeout=120)
    t_ack = time.time()
    if status != 201:
        raise BenchError(f"POST /api/v1/warnings answered {status}: {raw[:500]!r}")
    warning = json.loads(raw)["warning"]
    wid = warning["id"]
    result.add("warnd POST answered", (t_ack - t0) * 1000, "ms", f"warning {wid} planned and stored")
    if str(warning.get("level")).lower() not in ("red", "4"):
        result.notes.append(f"the warning's level is {warning.get('level')!r}, not red")

    try:
        wait_until(lambda: sink_stats(sink_url)["unique"] >= count, FANOUT_SECONDS, 0.02,
                   f"{count} unique receipts from warnd")
    except BenchError as exc:
        result.ok = False
        result.notes.append(str(exc))
    t_seen = time.time()
    cpu_w1, cpu_s1 = cpu_seconds(server.pid), cpu_seconds(sink.pid)

    def states() -> dict[str, int]:
        st, data = http_json("GET", f"{api}/api/v1/warnings/{wid}?deliveries=0", headers=auth)
        if st != 200:
            raise BenchError(f"GET warning answered {st}: {data}")
        return data.get("deliveries_by_channel", {}).get("webhook", {})

    t_durable = None
    try:
        wait_until(lambda: states() == {"delivered": count}, DURABLE_SECONDS if result.ok else 1, 0.05,
                   f"all {count} deliveries `delivered`")
        t_durable = time.time()
    except BenchError as exc:
        result.ok = False
        result.notes.append(f"{exc}; states: {states()}")
    if spy is not None:
        spy.stop(30, signal.SIGINT)
        result.notes.append(f"py-spy profile of warnd (collapsed stacks): {profile}")
    stats = sink_stats(sink_url)
    received = receipts(record, "/s")
    last = _latencies(result, "warnd", t0, received)
    rate = count / (last - t0) if last and len(received) >= count else None
    result.add("warnd deliveries/s", rate, "/s", "POST → last receipt at the sink")
    if t_durable:
        result.add("warnd all durable", (t_durable - t0), "s", "POST → API shows every row delivered")
    result.add("warnd duplicates", stats["duplicates"], "", "receipts with a webhook-id already seen")
    result.add("warnd rejected", stats["rejected"] + stats["failed"], "", "bad signature / failed at the sink")
    if stats["duplicates"] or stats["rejected"] or stats["unique"] != count:
        result.ok = False
        result.notes.append(f"sink stats after warnd: {stats}")
    wall = t_seen - t0
    if cpu_w0 is not None and cpu_w1 is not None and wall > 0:
        result.add("warnd CPU", (cpu_w1 - cpu_w0) / wall * 100, "% core", "during the fan-out")
        result.add("warnd CPU per delivery", (cpu_w1 - cpu_w0) / count * 1e6, "µs", "all threads, intake included")
    if cpu_s0 is not None and cpu_s1 is not None and wall > 0:
        result.add("sink CPU (warnd run)", (cpu_s1 - cpu_s0) / wall * 100, "% core")
    result.add("warnd peak RSS", peak_rss_mib(server.pid), "MiB", "VmHWM of the serve process")
    status, _, sent = http("GET", f"{api}/api/v1/warnings/{wid}", headers={**auth, "Accept": CAP})
    if status != 200:
        raise BenchError(f"GET warning as CAP answered {status}")
    lengths = {n for _, n in received}
    if lengths and lengths != {len(sent)}:
        result.notes.append(f"stored CAP is {len(sent)} bytes but the sink saw lengths {sorted(lengths)[:5]}")
    result.add("body size", len(sent), "bytes", "CAP XML, the same bytes for both sides")
    return sent


# -- the baseline --

async def _post_all(sink_url: str, prefix: str, body: bytes, secret: str, count: int, concurrency: int) -> int:
    """Post `count` signed bodies with `concurrency` workers; returns the number of non-200 answers."""
    signer = Webhook(secret)
    text = body.decode("utf-8")
    failures = 0
    todo = iter(range(count))
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30),
                                     cookie_jar=aiohttp.DummyCookieJar()) as session:
        async def worker() -> None:
            nonlocal failures
            for i in todo:
                msg_id = f"msg_base_{i}"
                stamp = datetime.fromtimestamp(int(time.time()), tz=timezone.utc)
                headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(stamp.timestamp())),
                           "webhook-signature": signer.sign(msg_id, stamp, text),
                           "content-type": "application/cap+xml; charset=utf-8", "user-agent": "bench/0.1"}
                try:
                    async with session.post(f"{sink_url}{prefix}s{i}", data=body, headers=headers,
                                            allow_redirects=False) as resp:
                        await resp.read()
                        failures += resp.status != 200
                except (aiohttp.ClientError, OSError):
                    failures += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures


def forget(sink_url: str) -> None:
    """The sink starts counting afresh (its record file keeps every line; paths tell the runs apart)."""
    status, data = http_json("POST", f"{sink_url}/_control", {"forget": True})
    if status != 200:
        raise BenchError(f"sink /_control forget answered {status}: {data}")


def baseline(result: Result, label: str, prefix: str, sink_url: str, record: Path, sink: Process, body: bytes,
             secret: str, count: int) -> float | None:
    """Post `count` signed copies of `body` to `{sink}{prefix}s{i}`; add the figures under `label`."""
    forget(sink_url)
    cpu_s0, cpu_d0 = cpu_seconds(sink.pid), time.process_time()
    t0 = time.time()
    failures = asyncio.run(asyncio.wait_for(_post_all(sink_url, prefix, body, secret, count, CONCURRENCY),
                                            FANOUT_SECONDS))
    wall = time.time() - t0
    cpu_s1, cpu_d1 = cpu_seconds(sink.pid), time.process_time()
    stats = sink_stats(sink_url)
    received = receipts(record, prefix)
    last = _latencies(result, label, t0, received)
    rate = count / (last - t0) if last and len(received) >= count else None
    result.add(f"{label} messages/s", rate, "/s", f"raw aiohttp, {CONCURRENCY} connections")
    if failures or stats["unique"] != count or stats["duplicates"]:
        result.ok = False
        result.notes.append(f"{label}: {failures} failed posts; sink stats {stats}")
    result.add(f"{label} client CPU per message", (cpu_d1 - cpu_d0) / count * 1e6, "µs")
    if cpu_s0 is not None and cpu_s1 is not None:
        result.add(f"sink CPU ({label})", (cpu_s1 - cpu_s0) / wall * 100, "% core")
    return rate


def apprise_run(result: Result, prefix: str, sink_url: str, record: Path, sink: Process, body: bytes,
                secret: str, count: int) -> float | None:
    """Second baseline: the same N webhooks sent with Apprise; figures under `apprise`."""
    forget(sink_url)
    message = apprise_baseline.message_text(body)
    cpu_s0, cpu_d0 = cpu_seconds(sink.pid), time.process_time()
    t0 = time.time()
    failures, building = apprise_baseline.post_all(sink_url, prefix, HEADLINE, message, secret, count,
                                                   FANOUT_SECONDS)
    wall = time.time() - t0
    cpu_s1, cpu_d1 = cpu_seconds(sink.pid), time.process_time()
    stats = sink_stats(sink_url)
    received = receipts(record, prefix)
    last = _latencies(result, "apprise", t0, received)
    rate = count / (last - t0) if last and len(received) >= count else None
    result.add("apprise messages/s", rate, "/s",
               f"Apprise {apprise_baseline.VERSION} json://, one async_notify, its own pool")
    if failures or stats["unique"] != count or stats["duplicates"] or stats["rejected"]:
        result.ok = False
        result.notes.append(f"apprise: {failures} failed notifications; sink stats {stats}"
                            + (" (rejected: the signed body is not the one Apprise sent)"
                               if stats["rejected"] else ""))
    result.add("apprise client CPU per message", (cpu_d1 - cpu_d0) / count * 1e6, "µs", "all threads")
    result.add("… of it signing + add(url)", building / count * 1e6, "µs",
               "before the first send: each signed URL parsed; the rest is sending")
    if cpu_s0 is not None and cpu_s1 is not None and wall > 0:
        result.add("sink CPU (apprise)", (cpu_s1 - cpu_s0) / wall * 100, "% core")
    sizes = {n for _, n in received}
    if sizes:
        result.add("apprise body size", max(sizes), "bytes", "JSON envelope, CAP text as `message`")
    return rate


# -- the whole run --

def run_benchmark(db: str | None = None, count: int = DEFAULT_COUNT, rate: float = DEFAULT_RATE,
                  profile: Path | None = None) -> Result:
    result = Result(NAME)
    result.add("deliveries", count, "", "subscribers, one webhook each")
    try:
        _run(result, db, count, rate, profile)
    except BenchError as exc:
        result.ok = False
        result.error = str(exc)
    return result


def _run(result: Result, db: str | None, count: int, rate: float, profile: Path | None) -> None:
    warnd = tool("warnd")
    with workdir() as wd, scratch_database(db, wd) as db_url, processes() as procs:
        result.add("database", db_url.split(":", 1)[0], "", "fresh for this run")
        secret = new_secret()
        record = wd / "received.jsonl"
        sink_port, api_port = free_port(), free_port()
        sink_url, api = f"http://{LOOPBACK}:{sink_port}", f"http://{LOOPBACK}:{api_port}"
        sink = Process("sink", [sys.executable, "-m", "warnd.sim.webhook_sink", "--host", LOOPBACK,
                                "--port", str(sink_port), "--secret", secret, "--record", str(record)], wd)
        procs.append(sink)
        cfg = wd / "warnd.yaml"
        cfg.write_text(config_yaml(db_url, api_port, rate), encoding="utf-8")
        directory = wd / "directory.yaml"
        directory.write_text(directory_yaml(count, sink_url, secret), encoding="utf-8")
        command([warnd, "db", "upgrade", "--config", str(cfg)], timeout=120)
        t = time.monotonic()
        command([warnd, "directory", "import", "--config", str(cfg), str(directory)], timeout=600)
        result.add("directory import", time.monotonic() - t, "s", "setup, not timed below")
        token = command([warnd, "token", "create", "--config", str(cfg), "--department", "bench", "--admin"],
                    timeout=60).strip().splitlines()[-1].strip()
        sink.wait_http(f"{sink_url}/_stats", 30)
        body = cap_xml(f"bench-{uuid.uuid4().hex[:12]}", datetime.now(timezone.utc))
        before = baseline(result, "baseline before", "/b1/", sink_url, record, sink, body, secret, count)
        server = Process("warnd", [warnd, "serve", "--config", str(cfg), "--no-migrate"], wd)
        procs.append(server)
        server.wait_http(f"{api}/healthz", 60)
        sent = fan_out(result, api, token, body, sink_url, record, server, sink, count, profile)
        server.stop()
        if server.popen.returncode not in (0, None):
            result.notes.append(f"warnd exited with {server.popen.returncode}: {server.log_tail(5)}")
        after = baseline(result, "baseline after", "/b2/", sink_url, record, sink, sent or body, secret, count)
        base = (before + after) / 2 if before and after else None
        result.add("baseline messages/s (mean)", base, "/s", "before and after warnd")
        mine = result.value("warnd deliveries/s")
        ratio = mine / base if isinstance(mine, float) and base else None
        target = TARGET_RATIO["sqlite" if result.value("database") == "sqlite" else "postgresql"]
        result.add("ratio warnd/baseline", ratio, "", f"target ≥ {target}")
        if before and after and abs(before - after) > 0.25 * max(before, after):
            result.notes.append(f"the two baselines differ by more than 25% ({before:,.0f} vs {after:,.0f}/s): "
                                "the machine was busy, the ratio is unreliable; compare CPU per message")
        cpu_w = result.value("warnd CPU per delivery")
        cpu_b = [v for v in (result.value("baseline before client CPU per message"),
                             result.value("baseline after client CPU per message")) if isinstance(v, float)]
        if isinstance(cpu_w, float) and cpu_b and cpu_w > 0:
            result.compare("CPU ratio baseline/warnd", sum(cpu_b) / len(cpu_b) / cpu_w, "",
                           "client CPU per message ÷ warnd CPU per delivery; load-independent")
        result.target("ratio warnd/baseline", None if ratio is None else ratio >= target)
        if not apprise_baseline.AVAILABLE:
            result.add("apprise messages/s", None, "/s", apprise_baseline.SKIPPED)
            result.notes.append(apprise_baseline.SKIPPED)
        else:
            theirs = apprise_run(result, "/b3/", sink_url, record, sink, sent or body, secret, count)
            vs = mine / theirs if isinstance(mine, float) and theirs else None
            result.add("ratio warnd/apprise", vs, "", f"target ≥ {TARGET_APPRISE:g}")
            result.compare("ratio apprise/baseline", theirs / base if theirs and base else None, "",
                           "Apprise messages/s ÷ raw aiohttp (mean)")
            cpu_a = result.value("apprise client CPU per message")
            if isinstance(cpu_w, float) and isinstance(cpu_a, float) and cpu_w > 0:
                result.compare("CPU ratio apprise/warnd", cpu_a / cpu_w, "",
                               "Apprise client CPU per message ÷ warnd CPU per delivery; load-independent")
            result.target("ratio warnd/apprise", None if vs is None else vs >= TARGET_APPRISE)
        if rate != DEFAULT_RATE:
            result.notes.append(f"webhook.rate_per_second = {rate:g}")


def run(db: str | None = None) -> Result:
    """The entry point bench.run_all calls: the default size."""
    return run_benchmark(db)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook_fanout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="subscribers / deliveries (20000)")
    parser.add_argument("--db", help="database: default a SQLite file in a temp dir; a postgresql:// URL on "
                        "loopback gets a fresh database, dropped afterwards")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE,
                        help="webhook.rate_per_second for warnd (default: high enough not to limit)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--profile", type=Path, help="sample warnd with py-spy during the fan-out and write "
                        "collapsed stacks here (pip install py-spy)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be positive")
    result = run_benchmark(args.db, args.count, args.rate,
                           args.profile.resolve() if args.profile else None)
    print_table([result])
    if args.json:
        write_json([result], args.json)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
