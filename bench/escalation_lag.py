"""Escalation lag: N open confirmation requirements whose ladder rungs fall due over a minute;
how late a real node's sweep fires them, what the sweep costs, beside a bare SQL sweep.

    python -m bench.escalation_lag [--count 100000] [--spread 60] [--db URL] [--json out.json]

The directory and the requirements are written directly with SQLAlchemy Core bulk inserts
(schema in warnd/store/schema.py): 100 townships (each with a township duty officer) ×
10 villages × N/1000 grids, a grid responsible and a backup per grid; one active red
warning; N open requirements (one per grid); one rung per requirement, the red ladder's
first rung as configured (notify backup + superior by SMS and voice, not-woken list, ask
them to the door: `snapshot()` of `config.ladder("red")[0]`), due_at spread evenly over
`--spread` seconds starting a few seconds after the node starts.

warnd: a real `Node` in-process (SystemClock, SQLite file with WAL + synchronous=FULL, or
--db; dispatcher not started, so the sends the rungs create stay queued), its scheduler
calling `escalate()` every sweeps.escalate_seconds (0.5 s) as in production. The
benchmark wraps the node's `EscalationStore.fire_due` (measurement only) to see when each
batch committed.
  - lag: fired_at − due_at as recorded (fired_at is the sweep's clock reading when the batch
    started), and commit − due_at (when the rung's effects were durable): p50 / p99 / max;
  - cost: CPU seconds of this process per second of sweeping (from the first due rung to
    the last fired), the share of that time spent inside fire_due, rungs per fire_due
    call and per sweep.

Baselines, same database and table, after warnd: (1) a bare poll, `SELECT id FROM rungs
WHERE state = 'pending' AND due_at <= now`, timed with nothing due and with every row
due; (2) a bare sweep: the same rows reset to pending with the same due spread, then
every 0.5 s `SELECT … LIMIT 200` + `UPDATE … SET state = 'fired'` in one write
transaction until nothing is due: its lag and CPU — the floor for marking rows fired.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from bench.common import (
    run_async,
    BenchError,
    Result,
    add_cli,
    cap_alert,
    finish,
    peak_rss_mib,
    percentile,
    scratch_database,
    workdir,
)

NAME = "escalation_lag"
DEFAULT_COUNT = 100_000
DEFAULT_SPREAD = 60.0
SMOKE = {"count": 2_000, "spread": 5.0}  # bench.run_all --smoke: every path once, correctness only
LEAD = 8.0  # seconds from the node's start to the first due rung
DRAIN_SECONDS = 180.0  # after the last due time, how long the sweep may take to catch up
TARGET_P99 = 1.0
TOWNSHIPS, VILLAGES = 100, 10
COUNTY = "421126"
CHUNK = 5000


def layout(n: int) -> tuple[list[str], list[str], list[str]]:
    """Township, village and grid codes: TOWNSHIPS × VILLAGES villages, n grids spread over them."""
    townships = [f"{COUNTY}{t:03d}" for t in range(100, 100 + TOWNSHIPS)]
    villages = [f"{t}{v:03d}" for t in townships for v in range(1, VILLAGES + 1)]
    per_village = -(-n // len(villages))
    grids = [f"{villages[i // per_village]}{i % per_village:04d}" for i in range(n)]
    return townships, villages, grids


def _insert(conn: sa.Connection, table: sa.Table, rows: list[dict]) -> None:
    for i in range(0, len(rows), CHUNK):
        conn.execute(sa.insert(table), rows[i:i + CHUNK])


def build(sync_url: str, n: int, params: dict) -> tuple[int, list[int]]:
    """Directory, one red warning, n open requirements; returns (warning id, confirmation ids)."""
    from warnd.store.schema import confirmations, people, regions, warnings

    townships, villages, grids = layout(n)
    now = datetime.now(timezone.utc)
    engine = sa.create_engine(sync_url)
    try:
        with engine.begin() as conn:
            _insert(conn, regions, [dict(code=COUNTY, name="蕲阳县", kind="county", parent=None, updated_at=now)]
                    + [dict(code=t, name=f"{t[-3:]}镇", kind="township", parent=COUNTY, updated_at=now)
                       for t in townships]
                    + [dict(code=v, name=f"{v[-3:]}村", kind="village", parent=v[:9], updated_at=now)
                       for v in villages]
                    + [dict(code=g, name=f"{g[-4:]}组", kind="grid", parent=g[:12], updated_at=now) for g in grids])
            _insert(conn, people,
                    [dict(id=f"duty{t}", name=f"镇值班{t[-3:]}", phone=f"+86137{t[-5:]}000", language="zh-CN",
                          region=t, roles=["township_duty"], backup=None, updated_at=now) for t in townships]
                    + [dict(id=f"r{i}", name=f"网格员{i}", phone=f"+86138{i:08d}", language="zh-CN", region=g,
                            roles=["grid_responsible"], backup=f"b{i}", updated_at=now) for i, g in enumerate(grids)]
                    + [dict(id=f"b{i}", name=f"联络员{i}", phone=f"+86139{i:08d}", language="zh-CN", region=g,
                            roles=["liaison"], backup=None, updated_at=now) for i, g in enumerate(grids)])
            cap = cap_alert("bench-escalation", [COUNTY]).decode("utf-8")
            wid = conn.execute(sa.insert(warnings).values(
                sender="bench@example.cn", identifier="bench-escalation", sent=now, status="Actual",
                msg_type="Alert", level=4, event="暴雨", headline="暴雨红色预警", expires=now + timedelta(hours=6),
                state="active", root_id=None, previous_id=None, department="bench", cap_xml=cap, notes=[],
                regions=[COUNTY], created_at=now, version=1).returning(warnings.c.id)).scalar_one()
            _insert(conn, confirmations, [dict(warning_id=wid, grid=g, person_id=f"r{i}", backup_id=f"b{i}",
                                               deadline=now + timedelta(hours=1), state="open", created_at=now,
                                               late=False, version=1) for i, g in enumerate(grids)])
            ids = list(conn.execute(sa.select(confirmations.c.id).where(confirmations.c.warning_id == wid)
                                    .order_by(confirmations.c.id)).scalars())
    finally:
        engine.dispose()
    return wid, ids


def write_rungs(sync_url: str, wid: int, confirmation_ids: list[int], grids: list[str], params: dict,
                first_due: datetime, spread: float) -> None:
    from warnd.store.schema import rungs

    n = len(confirmation_ids)
    engine = sa.create_engine(sync_url)
    try:
        with engine.begin() as conn:
            _insert(conn, rungs, [dict(confirmation_id=cid, warning_id=wid, grid=grids[i], ladder="red", step=0,
                                       action="notify", params=params, state="pending", version=1,
                                       due_at=first_due + timedelta(seconds=spread * i / n))
                                  for i, cid in enumerate(confirmation_ids)])
    finally:
        engine.dispose()


def lags(result: Result, label: str, values: list[float], note: str = "") -> float | None:
    values = sorted(values)
    if not values:
        result.add(f"{label} p99", None, "s")
        return None
    result.add(f"{label} p50", percentile(values, 50), "s", note)
    result.add(f"{label} p99", percentile(values, 99), "s")
    result.add(f"{label} max", values[-1], "s")
    return percentile(values, 99)


class FireLog:
    """Wraps node.escalation.fire_due (measurement only): commit time and size of every call."""

    def __init__(self, node) -> None:  # noqa: ANN001
        self.node = node
        self.calls: list[tuple[float, float, float, list[int]]] = []  # (start, end, cpu, rung ids)
        original = node.escalation.fire_due

        async def fire_due(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            t, cpu = time.time(), time.thread_time()
            fired = await original(*args, **kwargs)
            self.calls.append((t, time.time(), time.thread_time() - cpu, [rung_id for rung_id, _ in fired]))
            return fired
        node.escalation.fire_due = fire_due

    def committed(self) -> dict[int, float]:
        return {rid: end for _, end, _, ids in self.calls for rid in ids}

    def sweeps(self) -> list[int]:
        """Rungs fired per escalate() run (a run ends with an empty fire_due)."""
        out, current = [], 0
        for _, _, _, ids in self.calls:
            if ids:
                current += len(ids)
            else:
                out.append(current)
                current = 0
        return out


async def warnd_sweep(result: Result, node, n: int, first_due: datetime, spread: float) -> float | None:  # noqa: ANN001
    from warnd.store.schema import rungs

    r = rungs.c
    log = FireLog(node)
    await node.start(dispatch=False)
    last_due = first_due + timedelta(seconds=spread)
    deadline = last_due.timestamp() + DRAIN_SECONDS
    await asyncio.sleep(max(first_due.timestamp() - time.time(), 0))
    cpu0, t0 = time.process_time(), time.time()
    pending = n
    while time.time() < deadline:
        await asyncio.sleep(0.5)
        async with node.db.read() as conn:
            pending = (await conn.execute(sa.select(sa.func.count()).select_from(rungs)
                                          .where(r.state == "pending"))).scalar()
        if not pending and time.time() >= last_due.timestamp():
            break
    cpu1, t1 = time.process_time(), time.time()
    await node.stop()
    if pending:
        result.ok = False
        result.notes.append(f"warnd: {pending} of {n} rungs still pending {DRAIN_SECONDS:g} s after the last was due")
    engine = sa.create_engine(_sync(node.config.database_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(r.id, r.due_at, r.fired_at).where(r.state == "fired")).all()
    finally:
        engine.dispose()
    committed = log.committed()
    recorded = [(row.fired_at - _aware(row.due_at)).total_seconds() for row in rows]
    durable = [committed[row.id] - _aware(row.due_at).timestamp() for row in rows if row.id in committed]
    result.add("warnd rungs fired", len(rows), "", f"of {n}")
    lags(result, "warnd lag (fired_at)", recorded, "fired_at − due_at, as stored")
    p99 = lags(result, "warnd lag (committed)", durable, "commit of the rung's batch − due_at")
    wall = t1 - t0
    calls = [c for c in log.calls if c[1] >= t0]
    inside = sum(end - start for start, end, _, _ in calls)
    batches = [len(ids) for _, _, _, ids in log.calls if ids]
    sweeps = [s for s in log.sweeps() if s]
    result.add("warnd sweep CPU", (cpu1 - cpu0) / wall, "CPU s/s", "this process, all threads, while sweeping")
    result.add("warnd CPU per rung", (cpu1 - cpu0) / max(len(rows), 1) * 1e3, "ms", "effects included")
    result.add("warnd time in fire_due", inside / wall * 100, "% of wall")
    result.add("warnd rungs per fire_due", sum(batches) / len(batches) if batches else None, "",
               f"limit 200; {len(batches)} calls that fired")
    result.add("warnd rungs per sweep", sum(sweeps) / len(sweeps) if sweeps else None, "",
               f"{len(sweeps)} escalate() runs that fired, max {max(sweeps) if sweeps else 0}")
    result.add("warnd sweeping wall", wall, "s", f"first due → all fired (spread {spread:g} s)")
    return p99


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _sync(url: str) -> str:
    from warnd.store.database import sync_url

    return sync_url(url)


# -- baselines --

def bare_poll(result: Result, sync_url: str, label: str, now: datetime) -> None:
    from warnd.store.schema import rungs

    r = rungs.c
    engine = sa.create_engine(sync_url)
    try:
        with engine.connect() as conn:
            q = sa.select(r.id).where(r.state == "pending", r.due_at <= now)
            conn.execute(q).all()  # warm
            times, rows = [], 0
            for _ in range(5):
                t = time.perf_counter()
                rows = len(conn.execute(q).all())
                times.append(time.perf_counter() - t)
    finally:
        engine.dispose()
    result.add(f"bare poll ({label})", min(times) * 1000, "ms/poll", f"{rows:,} rows returned")


async def bare_sweep(result: Result, node_db_url: str, n: int, spread: float, interval: float) -> float | None:
    """Reset every rung to pending with the same spread, then sweep with bare SQL as warnd's loop does."""
    from warnd.store.database import Database
    from warnd.store.schema import rungs

    r = rungs.c
    db = Database(node_db_url)
    try:
        first_due = datetime.now(timezone.utc) + timedelta(seconds=LEAD)
        async with db.write() as conn:
            ids = list((await conn.execute(sa.select(r.id).order_by(r.id))).scalars())
            stmt = (sa.update(rungs).where(r.id == sa.bindparam("b_id"))
                    .values(state="pending", fired_at=None, fired_by=None, due_at=sa.bindparam("b_due")))
            for i in range(0, len(ids), CHUNK):
                await conn.execute(stmt, [dict(b_id=rid, b_due=first_due + timedelta(seconds=spread * (i + j) / n))
                                          for j, rid in enumerate(ids[i:i + CHUNK])])
        committed: dict[int, float] = {}
        await asyncio.sleep(max(first_due.timestamp() - time.time(), 0))
        cpu0, t0 = time.process_time(), time.time()
        deadline = first_due.timestamp() + spread + DRAIN_SECONDS
        due_of: dict[int, datetime] = {}
        while time.time() < deadline:
            tick = time.monotonic()
            while True:  # like Node.escalate: until nothing is due
                now = datetime.now(timezone.utc)
                async with db.write() as conn:
                    rows = (await conn.execute(sa.select(r.id, r.due_at).where(r.state == "pending", r.due_at <= now)
                                               .order_by(r.due_at, r.id).limit(200))).all()
                    if rows:
                        await conn.execute(sa.update(rungs).where(r.id.in_([x.id for x in rows]),
                                                                  r.state == "pending")
                                           .values(state="fired", fired_at=now, fired_by="bare",
                                                   version=r.version + 1))
                end = time.time()
                for x in rows:
                    committed[x.id] = end
                    due_of[x.id] = x.due_at
                if not rows:
                    break
            if len(committed) >= n:
                break
            await asyncio.sleep(max(interval - (time.monotonic() - tick), 0))
        cpu1, t1 = time.process_time(), time.time()
    finally:
        await db.close()
    p99 = lags(result, "bare sweep lag (committed)", [committed[i] - _aware(due_of[i]).timestamp() for i in committed],
               "bare SELECT … LIMIT 200 + UPDATE, same interval")
    result.add("bare sweep CPU", (cpu1 - cpu0) / (t1 - t0), "CPU s/s", f"{len(committed):,} rows marked fired")
    if len(committed) < n:
        result.notes.append(f"bare sweep: {n - len(committed)} rows not fired in time")
    return p99


def run_benchmark(db: str | None = None, count: int = DEFAULT_COUNT, spread: float = DEFAULT_SPREAD) -> Result:
    result = Result(NAME)
    result.add("open requirements", count, "", f"one rung each, due over {spread:g} s")
    try:
        with workdir("warnd-bench-esc-") as wd, scratch_database(db, wd) as db_url:
            result.add("database", db_url.split(":", 1)[0], "", "fresh for this run")
            run_async(_run(result, db_url, count, spread))
    except BenchError as exc:
        result.ok = False
        result.error = str(exc)
    return result


async def _run(result: Result, db_url: str, n: int, spread: float) -> None:
    from warnd.config import load_config
    from warnd.domain.escalation import snapshot
    from warnd.engine.node import Node
    from warnd.store.migrate import upgrade

    sync = _sync(db_url)
    await asyncio.to_thread(upgrade, db_url)
    config = load_config(None, database_url=db_url, node_id="bench-escalation", log_level="WARNING",
                         webhook={"enabled": False})
    (rung,) = snapshot("red", config.ladder("red")[:1], datetime.now(timezone.utc))
    t = time.monotonic()
    wid, confirmation_ids = await asyncio.to_thread(build, sync, n, rung.params)
    _, _, grids = layout(n)
    first_due = datetime.now(timezone.utc) + timedelta(seconds=LEAD + n / 50_000)
    await asyncio.to_thread(write_rungs, sync, wid, confirmation_ids, grids, rung.params, first_due, spread)
    result.add("build", time.monotonic() - t, "s", f"{len(grids):,} grids, {2 * n + TOWNSHIPS:,} people, "
               f"{n:,} requirements and rungs (bulk inserts)")
    if datetime.now(timezone.utc) > first_due - timedelta(seconds=2):
        raise BenchError("building took longer than the lead before the first rung is due")
    await asyncio.to_thread(bare_poll, result, sync, "nothing due", datetime.now(timezone.utc))
    node = Node(config)
    p99 = await warnd_sweep(result, node, n, first_due, spread)
    await asyncio.to_thread(bare_poll, result, sync, "every row due", datetime.now(timezone.utc) + timedelta(days=1))
    from warnd.store.schema import rungs
    engine = sa.create_engine(sync)
    try:
        with engine.begin() as conn:  # the poll over the same table with every row pending and due
            conn.execute(sa.update(rungs).values(state="pending"))
        await asyncio.to_thread(bare_poll, result, sync, "all pending and due",
                                datetime.now(timezone.utc) + timedelta(days=1))
    finally:
        engine.dispose()
    await bare_sweep(result, db_url, n, spread, config.sweeps.escalate_seconds)
    result.add("driver peak RSS", peak_rss_mib(os.getpid()), "MiB")
    result.target("warnd lag (committed) p99", None if p99 is None else p99 <= TARGET_P99)
    result.add("target", f"p99 < {TARGET_P99:g} s", "", "warnd lag (committed) p99")


def run(db: str | None = None) -> Result:
    """The entry point bench.run_all calls: the default size."""
    return run_benchmark(db)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.escalation_lag", description=__doc__.split("\n\n")[0])
    add_cli(parser, DEFAULT_COUNT)
    parser.add_argument("--spread", type=float, default=DEFAULT_SPREAD, help="seconds over which rungs fall due (60)")
    args = parser.parse_args(argv)
    if args.count < TOWNSHIPS * VILLAGES or args.spread <= 0:
        parser.error(f"--count must be at least {TOWNSHIPS * VILLAGES} and --spread positive")
    return finish(run_benchmark(args.db, args.count, args.spread), args.json)


if __name__ == "__main__":
    sys.exit(main())
