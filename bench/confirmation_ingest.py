"""Confirmation ingestion: signed inbound SMS replies ("1") posted to warnd's
/twilio/sms/inbound for N people with open requirements, beside a raw aiohttp loop.

    python -m bench.confirmation_ingest [--count 5000] [--concurrency 32] [--db URL] [--json out.json]

One process (this driver): a real warnd `Node` (SQLite file, WAL, synchronous=FULL, or
--db) with its HTTP app on loopback, and the client. N grids with one grid responsible
each; one red warning (SMS routed, dispatcher not started: the N sends stay queued, as if
replies came in while the fan-out is still going, and each confirmation cancels its
grid's queued send in the same transaction) opens N requirements. Then N replies, one per
person, are POSTed as the Twilio simulator would post them (the same form fields, a valid
X-Twilio-Signature over warnd's public URL; bodies and signatures computed before the
clock starts), `--concurrency` at a time.

  - confirmations/s: N ÷ (last answer − first request); every answer must be 200 with
    TwiML, and afterwards the database must hold N confirmed requirements and N inbound
    rows `confirmed`. 50 replies are then posted again (the same MessageSids): they must
    be answered 200 and change nothing, not even add an inbound row.
  - latency p50 / p99 per request, and CPU per confirmation (this process: client,
    server and SQLite's thread).

Baseline, same process, same client and concurrency, before and after warnd: the same
bodies and headers POSTed to a trivial aiohttp endpoint that reads the form and answers
a fixed TwiML `<Response/>`.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from urllib.parse import urlencode

import aiohttp
import sqlalchemy as sa
from aiohttp import web

from bench.common import (
    run_async,
    LOOPBACK,
    BenchError,
    Result,
    add_cli,
    cap_alert,
    finish,
    free_port,
    peak_rss_mib,
    percentile,
    scratch_database,
    serve_app,
    workdir,
)

NAME = "confirmation_ingest"
DEFAULT_COUNT = 5_000
SMOKE = {"count": 300}  # bench.run_all --smoke: every path once, correctness only (at least AGAIN)
TARGET_RATE, TARGET_P99_MS = 2_000, 100  # issue 16: replies/s at 32 in flight, every answer durable first
CONCURRENCY = 32
SID, TOKEN, FROM = "AC" + "c" * 32, "bench-auth-token", "+15005550006"
VILLAGE = "421126100201"
XML = "application/cap+xml"
RUN_SECONDS = 300.0
AGAIN = 50  # replies posted a second time: idempotency


def phone(i: int) -> str:
    return f"+86138{i:08d}"


def directory(n: int):  # noqa: ANN201
    from warnd.domain.directory import Person, Region
    from warnd.ingest.directory import DirectoryData

    regions = [Region("421126", "蕲阳县", "county"), Region("421126100", "青石镇", "township", "421126"),
               Region(VILLAGE, "柳塘村", "village", "421126100")]
    regions += [Region(f"{VILLAGE}{i:05d}", f"{i}组", "grid", VILLAGE) for i in range(n)]
    people = [Person(f"p{i}", f"网格员{i}", f"{VILLAGE}{i:05d}", ("grid_responsible",), phone(i)) for i in range(n)]
    return DirectoryData(regions=tuple(regions), people=tuple(people))


def replies(url: str, n: int) -> list[tuple[bytes, dict[str, str]]]:
    """What the simulator posts for a reply "1" from each person: form body and headers."""
    from warnd.sim.twilio_api import new_sid, signature

    out = []
    for i in range(n):
        sid = new_sid("SM")
        params = {"AccountSid": SID, "ApiVersion": "2010-04-01", "Body": "1", "From": phone(i), "MessageSid": sid,
                  "NumMedia": "0", "NumSegments": "1", "SmsMessageSid": sid, "SmsSid": sid, "SmsStatus": "received",
                  "To": FROM}
        out.append((urlencode(params).encode(), {
            "X-Twilio-Signature": signature(TOKEN, url, params), "User-Agent": "TwilioProxy/1.1",
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}))
    return out


async def post_all(url: str, requests: list[tuple[bytes, dict[str, str]]], concurrency: int,
                   expect: str) -> tuple[float, float, list[float], int]:
    """(start, last answer, latencies, failures) posting every request, `concurrency` at a time."""
    todo = iter(requests)
    latencies: list[float] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        async def worker() -> None:
            nonlocal failures
            for body, headers in todo:
                t = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        text = await resp.text()
                        failures += resp.status != 200 or expect not in text
                except (aiohttp.ClientError, TimeoutError):
                    failures += 1
                latencies.append(time.perf_counter() - t)

        t0 = time.time()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), RUN_SECONDS)
        return t0, time.time(), latencies, failures


def figures(result: Result, label: str, n: int, run: tuple[float, float, list[float], int], cpu: float,
            unit: str) -> float:
    t0, t1, latencies, failures = run
    latencies.sort()
    rate = n / (t1 - t0)
    result.add(f"{label} {unit}/s", rate, "/s")
    result.add(f"{label} p50 latency", percentile(latencies, 50) * 1000, "ms")
    result.add(f"{label} p99 latency", percentile(latencies, 99) * 1000, "ms")
    result.add(f"{label} CPU per request", cpu / n * 1e6, "µs", "this process: client + server (+ SQLite)")
    if failures:
        result.ok = False
        result.notes.append(f"{label}: {failures} of {n} requests failed or answered unexpectedly")
    return rate


async def baseline(result: Result, label: str, requests: list[tuple[bytes, dict[str, str]]],
                   concurrency: int) -> float:
    async def trivial(request: web.Request) -> web.Response:
        await request.post()
        return web.Response(text='<?xml version="1.0" encoding="UTF-8"?><Response />',
                            content_type="application/xml")

    app = web.Application()
    app.router.add_post("/twilio/sms/inbound", trivial)
    port = free_port()
    runner = await serve_app(app, port)
    try:
        cpu0 = time.process_time()
        run = await post_all(f"http://{LOOPBACK}:{port}/twilio/sms/inbound", requests, concurrency, "<Response")
        return figures(result, label, len(requests), run, time.process_time() - cpu0, "requests")
    finally:
        await runner.cleanup()


async def _count(node, table, *where) -> int:  # noqa: ANN001
    async with node.db.read() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(table).where(*where))).scalar()


async def _run(result: Result, db_url: str, n: int, concurrency: int) -> None:
    from warnd.config import load_config
    from warnd.domain.authority import admin_scope
    from warnd.engine.node import Node
    from warnd.http.app import build_app
    from warnd.store.migrate import upgrade
    from warnd.store.schema import confirmations, deliveries, inbound

    await asyncio.to_thread(upgrade, db_url)
    port = free_port()
    base = f"http://{LOOPBACK}:{port}"
    config = load_config(
        None, database_url=db_url, host=LOOPBACK, port=port, public_base_url=base, node_id="bench-ingest",
        log_level="WARNING",
        twilio={"account_sid": SID, "auth_token": TOKEN, "api_base_url": f"http://{LOOPBACK}:9",
                "from_number": FROM},
        sms={"enabled": True}, voice={"enabled": False}, webhook={"enabled": False},
        routing=[{"levels": ["red"], "channels": ["sms"], "roles": ["grid_responsible"]}],
        approval={"green_channel": ["admin"]})
    node = Node(config)
    runner = None
    try:
        await node.directory.import_data(directory(n))
        runner = await serve_app(build_app(node), port)
        await node.start(dispatch=False)
        t = time.monotonic()
        submitted, _ = await node.intake.submit(cap_alert("bench-ingest", [VILLAGE]), XML, admin_scope())
        result.add("planning", time.monotonic() - t, "s", f"intake.submit: {n} requirements and SMS rows")
        wid = submitted.warning_id
        c = confirmations.c
        opened = await _count(node, confirmations, c.warning_id == wid, c.state == "open")
        if opened != n:
            raise BenchError(f"the warning opened {opened} requirements, not {n}")
        url = f"{base}/twilio/sms/inbound"
        requests = replies(url, n)

        before = await baseline(result, "raw aiohttp before", requests, concurrency)
        cpu0, times0 = time.process_time(), os.times()
        run = await post_all(url, requests, concurrency, "<Message>")
        rate = figures(result, "warnd", n, run, time.process_time() - cpu0, "confirmations")
        times1 = os.times()
        result.add("warnd system CPU per request", (times1.system - times0.system) / n * 1e6, "µs",
                   "kernel share of the above (fsync of synchronous=FULL commits, sockets)")
        confirmed = await _count(node, confirmations, c.warning_id == wid, c.state == "confirmed")
        recorded = await _count(node, inbound, inbound.c.outcome == "confirmed")
        cancelled = await _count(node, deliveries, deliveries.c.warning_id == wid, deliveries.c.state == "cancelled")
        result.add("warnd confirmed", confirmed, "", f"{recorded} inbound rows confirmed, {cancelled} queued SMS "
                   "cancelled")
        if confirmed != n or recorded != n:
            result.ok = False
            result.notes.append(f"warnd: {confirmed} confirmed and {recorded} inbound rows for {n} replies")
        # The same requests again (the same MessageSids): applied once, so nothing is stored again.
        again = await post_all(url, requests[:AGAIN], min(concurrency, AGAIN), "<Response")
        stored = await _count(node, inbound)
        if again[3] or stored != n or await _count(node, confirmations, c.state == "confirmed") != n \
                or await _count(node, inbound, inbound.c.outcome == "confirmed") != n:
            result.ok = False
            result.notes.append(f"posting {AGAIN} replies again: {again[3]} failed, {stored - n} inbound rows "
                                "stored again")
        after = await baseline(result, "raw aiohttp after", requests, concurrency)
        mean = (before + after) / 2
        result.add("raw aiohttp requests/s (mean)", mean, "/s", "before and after warnd")
        result.compare("ratio warnd / raw aiohttp", rate / mean, "")
        result.target("warnd confirmations/s", rate >= TARGET_RATE)
        result.target("warnd p99 latency", result.value("warnd p99 latency") <= TARGET_P99_MS)
        if abs(before - after) > 0.25 * max(before, after):
            result.notes.append(f"the two baselines differ by more than 25% ({before:,.0f} vs {after:,.0f}/s): "
                                "the machine was busy")
        result.add("driver peak RSS", peak_rss_mib(os.getpid()), "MiB")
    finally:
        await node.stop()
        if runner is not None:
            await runner.cleanup()


def run_benchmark(db: str | None = None, count: int = DEFAULT_COUNT, concurrency: int = CONCURRENCY) -> Result:
    result = Result(NAME)
    result.add("replies", count, "", f"one per person, {concurrency} at a time")
    try:
        with workdir("warnd-bench-ingest-") as wd, scratch_database(db, wd) as db_url:
            result.add("database", db_url.split(":", 1)[0], "", "fresh for this run")
            run_async(_run(result, db_url, count, concurrency))
    except BenchError as exc:
        result.ok = False
        result.error = str(exc)
    return result


def run(db: str | None = None) -> Result:
    """The entry point bench.run_all calls: the default size."""
    return run_benchmark(db)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.confirmation_ingest",
                                     description=__doc__.split("\n\n")[0])
    add_cli(parser, DEFAULT_COUNT)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="requests at a time (32)")
    args = parser.parse_args(argv)
    if args.count < AGAIN or args.concurrency < 1:
        parser.error(f"--count must be at least {AGAIN}, --concurrency positive")
    return finish(run_benchmark(args.db, args.count, args.concurrency), args.json)


if __name__ == "__main__":
    sys.exit(main())
