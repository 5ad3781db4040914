"""Scale-out: one webhook fan-out delivered by 1, 2 and 3 `warnd serve` nodes on one PostgreSQL.

    python -m bench.scale_out [--count 40000] [--nodes 1 2 3] [--db postgresql://postgres@127.0.0.1:5432/test]
                              [--pin] [--rate 1000000] [--profile DIR] [--json out.json]

Issue 16: 2 and 3 nodes deliver a 40,000-webhook fan-out at ≥ 1.6× and ≥ 2.2×
one node, with no duplicates beyond the sends in flight. For each node count,
on a fresh PostgreSQL database (always PostgreSQL: SQLite is one writer, so
there is nothing to scale out; a non-PostgreSQL `--db` is ignored):

1. the webhook sink process (`python -m warnd.sim.webhook_sink`) and N
   subscribers, an admin token, as in `bench.webhook_fanout`;
2. n `warnd serve` processes on that database, each with its own port and
   node_id (`bench-<port>`), the same configuration otherwise; the driver waits
   until every node answers /healthz and has gone quiet (start-up work done);
3. one POST of the red warning to node 1; every node's dispatcher claims rows
   (FOR UPDATE SKIP LOCKED, compare-and-set on the claim, see
   warnd/store/deliveries.py), the others find them by their poll;
4. the driver waits for N unique receipts at the sink, then for all N rows
   `delivered` in the database, and reads from `delivery_attempts.node` which
   node sent each one, and from `deliveries.attempts` how many were sent again.

How to read the speed-up on a 2-core machine. Three nodes, the sink and
PostgreSQL share two cores, so the wall time cannot fall by 2.2× however well
the work is split: it is bounded by the cores (and, with more nodes, the sink
and PostgreSQL get less of them). Two speed-ups are therefore reported:

(a) wall: POST → last receipt of 1 node ÷ that of n nodes. Honest, bounded by
    the cores; printed, not judged.
(b) CPU: the time the fan-out would take if every node had a core of its own
    is its busiest node's CPU seconds (utime + stime from /proc/<pid>/stat,
    from just before the POST until every row is durable). Speed-up = the one
    node's CPU seconds ÷ the busiest node's CPU seconds of the n-node run. The
    targets are judged on (b).

What else is printed, to tell why a speed-up falls short: each node's CPU
split into its event loop (main thread) and its other threads (the database
thread, executors), and its involuntary context switches (how contended the
cores were); total CPU of all nodes ÷ one node's (the overhead of more nodes,
plus, on busy cores, the cost of contention: per-delivery CPU rises when
other processes share the cores, so compare runs at similar load); the CPU
per delivery; the PostgreSQL commits of the run (each node's claims and
result batches are its own transactions); each node's idle CPU before the
POST (heartbeats, sweeps, polls: a cost per node and per second, which more
nodes do not shorten on shared cores).

The busiest node is usually node 1: it also validates, plans and stores the N
deliveries (`node 1 CPU during the POST`), work that one POST cannot share,
and it claims first (its own commit wakes its dispatcher; the others find the
rows at their next poll, `dispatcher.poll_seconds`). `--pin` pins node i to
CPU i when there are at least as many CPUs as nodes (`taskset -c`);
otherwise the kernel schedules the nodes. `--profile DIR` samples every node
with py-spy while it holds the GIL (on contended cores that includes time the
thread was preempted holding it: a wall profile more than a CPU one).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bench.common import run as command
from bench.common import (
    LOOPBACK,
    BenchError,
    Process,
    Result,
    cpu_seconds,
    fmt,
    free_port,
    http,
    peak_rss_mib,
    print_table,
    processes,
    scratch_database,
    table,
    tool,
    wait_until,
    workdir,
    write_json,
)
from bench.webhook_fanout import (
    CAP,
    DEFAULT_RATE,
    cap_xml,
    config_yaml,
    directory_yaml,
    new_secret,
    receipts,
    sink_stats,
)

NAME = "scale_out"
DEFAULT_COUNT = 40_000
DEFAULT_NODES = (1, 2, 3)
SMOKE = {"count": 300}  # bench.run_all --smoke: every node count once, correctness only
TARGETS = {2: 1.6, 3: 2.2}  # issue 16: speed-up over one node, judged on CPU (see the docstring)
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
FANOUT_SECONDS = 600.0  # bound on waiting for the last receipt
DURABLE_SECONDS = 120.0  # bound on waiting for every row to read `delivered` after the last receipt
IDLE_WINDOW = 2.0  # seconds over which the nodes' idle CPU is measured before the POST
QUIET_CPU = 0.05  # CPU seconds per 0.5 s below which a started node counts as idle


@dataclass
class Run:
    """What one node count measured."""

    nodes: int
    wall: float | None = None  # POST → last receipt at the sink
    durable: float | None = None  # POST → every row `delivered` in the database
    post_ms: float = 0.0
    intake_cpu: float | None = None  # node 1's CPU while the POST was answered
    cpu: list[float] = field(default_factory=list)  # per node, POST → durable
    sent: list[int] = field(default_factory=list)  # deliveries per node, from delivery_attempts
    windows: list[tuple[float, float]] = field(default_factory=list)  # first start, last finish after the POST
    duplicates: int = 0
    resent: int = 0  # sends beyond the first (deliveries.attempts − 1): the sends in flight taken over
    sink_cpu: float | None = None
    rss: list[float] = field(default_factory=list)  # VmHWM per node, MiB
    # per node: event-loop CPU, other threads' CPU, involuntary context switches
    threads: list[tuple[float, float, int]] = field(default_factory=list)
    idle: float | None = None  # CPU s per s of an idle node (nothing due), the mean over the nodes
    load: float | None = None  # the machine's 1-minute load average just before the POST
    commits: int | None = None  # PostgreSQL transactions committed, POST → nodes stopped (all nodes)

    @property
    def busiest(self) -> float | None:
        return max(self.cpu) if self.cpu else None


def threads_cpu(pid: int) -> dict[int, tuple[float, int]]:
    """Per thread of a process: (utime + stime in seconds, involuntary context switches)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (task / "stat").read_text()
            parts = stat[stat.rindex(")") + 2:].split()
            switches = next((int(line.split()[1]) for line in (task / "status").read_text().splitlines()
                             if line.startswith("nonvoluntary_ctxt_switches")), 0)
            out[int(task.name)] = ((int(parts[11]) + int(parts[12])) / tick, switches)
    return out


def split_cpu(pid: int, before: dict[int, tuple[float, int]]) -> tuple[float, float, int]:
    """CPU seconds of the main thread (the event loop) and of the others (the database
    thread, executors) since `before`, and the involuntary context switches of all."""
    now = threads_cpu(pid)
    main = rest = 0.0
    switches = 0
    for tid, (cpu, sw) in now.items():
        cpu0, sw0 = before.get(tid, (0.0, 0))
        if tid == pid:
            main += cpu - cpu0
        else:
            rest += cpu - cpu0
        switches += sw - sw0
    return main, rest, switches


def pg_url(db: str | None) -> str:
    """The PostgreSQL server to use: `db` when it is one, else this machine's."""
    return db if db and db.startswith("postgres") else DEFAULT_PG


def check_reachable(url: str) -> None:
    import sqlalchemy as sa

    from warnd.store.database import sync_url

    engine = sa.create_engine(sync_url(url), connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure here means: no server to scale out on
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise BenchError(f"PostgreSQL unreachable at {url}: {reason}") from None
    finally:
        engine.dispose()


def pinned(argv: list[str], index: int, nodes: int, pin: bool) -> list[str]:
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or nodes > len(cpus):
        return argv
    return ["taskset", "-c", str(cpus[index]), *argv]


def wait_quiet(servers: list[Process], timeout: float = 30.0) -> None:
    """Until no node uses more than QUIET_CPU per half second: start-up work (migrations
    check, catch-up, the collector's freeze) must not count as fan-out."""
    last = [cpu_seconds(s.pid) or 0.0 for s in servers]

    def quiet() -> bool:
        nonlocal last
        time.sleep(0.5)
        now = [cpu_seconds(s.pid) or 0.0 for s in servers]
        calm = all(b - a < QUIET_CPU for a, b in zip(last, now))
        last = now
        return calm
    wait_until(quiet, timeout, 0.0, "every node idle after start-up")


def idle_rate(servers: list[Process], window: float = IDLE_WINDOW) -> float | None:
    """CPU seconds per second the nodes spend with nothing to send (heartbeats, sweeps, polls):
    a cost per node and per second, so on shared cores, where n nodes do not shorten the
    fan-out, it grows with n."""
    before = [cpu_seconds(s.pid) for s in servers]
    time.sleep(window)  # a measuring window, not a wait for a condition
    after = [cpu_seconds(s.pid) for s in servers]
    spent = [b - a for a, b in zip(before, after) if a is not None and b is not None]
    return sum(spent) / len(spent) / window if spent else None


def db_facts(engine, node_ids: list[str],  # noqa: ANN001 - a SQLAlchemy Engine
             t0: float) -> tuple[list[int], list[tuple[float, float]], int]:
    """Deliveries each node delivered (its successful attempts), each node's active window
    (seconds after the POST) and the sends beyond each row's first."""
    import sqlalchemy as sa

    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT split_part(node, '/', 1) AS node_id, count(*) FILTER (WHERE outcome = 'delivered'), "
            "min(started_at), max(finished_at) FROM delivery_attempts GROUP BY 1")).all()
        resent = conn.execute(sa.text(
            "SELECT coalesce(sum(attempts - 1), 0) FROM deliveries WHERE channel = 'webhook' AND attempts > 1"
        )).scalar_one()
    by_node = {r[0]: r for r in rows}

    def since(ts: datetime) -> float:
        return (ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)).timestamp() - t0

    sent = [int(by_node[n][1]) if n in by_node else 0 for n in node_ids]
    windows = [(since(by_node[n][2]), since(by_node[n][3])) if n in by_node else (0.0, 0.0) for n in node_ids]
    return sent, windows, int(resent)


def commits(engine) -> int:  # noqa: ANN001
    import sqlalchemy as sa

    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT xact_commit FROM pg_stat_database "
                                        "WHERE datname = current_database()")).scalar_one())


def one_run(result: Result, server_url: str, nodes: int, count: int, rate: float, pin: bool,
            profile: Path | None) -> Run:
    """A fresh database, the sink, `nodes` serve processes, one fan-out."""
    import sqlalchemy as sa

    from warnd.store.database import sync_url

    warnd = tool("warnd")
    out = Run(nodes)
    with workdir() as wd, scratch_database(server_url, wd) as db_url, processes() as procs:
        engine = sa.create_engine(sync_url(db_url))
        try:
            secret, record = new_secret(), wd / "received.jsonl"
            sink_port = free_port()
            sink_url = f"http://{LOOPBACK}:{sink_port}"
            sink = Process("sink", [sys.executable, "-m", "warnd.sim.webhook_sink", "--host", LOOPBACK,
                                    "--port", str(sink_port), "--secret", secret, "--record", str(record)], wd)
            procs.append(sink)
            ports = [free_port() for _ in range(nodes)]
            configs = []
            for port in ports:  # node_id is bench-<port>: distinct per node
                configs.append(wd / f"warnd-{port}.yaml")
                configs[-1].write_text(config_yaml(db_url, port, rate), encoding="utf-8")
            directory = wd / "directory.yaml"
            directory.write_text(directory_yaml(count, sink_url, secret), encoding="utf-8")
            command([warnd, "db", "upgrade", "--config", str(configs[0])], timeout=120)
            command([warnd, "directory", "import", "--config", str(configs[0]), str(directory)], timeout=900)
            token = command([warnd, "token", "create", "--config", str(configs[0]), "--department", "bench",
                             "--admin"], timeout=60).strip().splitlines()[-1].strip()
            sink.wait_http(f"{sink_url}/_stats", 30)
            servers = []
            for i, cfg in enumerate(configs):
                servers.append(Process(f"warnd-{i + 1}", pinned([warnd, "serve", "--config", str(cfg),
                                                                 "--no-migrate"], i, nodes, pin), wd))
                procs.append(servers[-1])
            for server, port in zip(servers, ports):
                server.wait_http(f"http://{LOOPBACK}:{port}/healthz", 90)
            wait_quiet(servers)
            out.idle = idle_rate(servers)
            commits0 = commits(engine)
            out = fan_out(result, out, engine, servers, ports, sink, sink_url, record, token, count, profile)
            for i, server in enumerate(servers):
                code = server.stop()
                if code not in (0, None):
                    result.notes.append(f"{nodes} nodes: node {i + 1} exited with {code}: {server.log_tail(5)}")
            out.commits = commits(engine) - commits0  # a backend's counts are flushed at its exit at the latest
        finally:
            engine.dispose()
    return out


def fan_out(result: Result, out: Run, engine, servers: list[Process], ports: list[int], sink: Process,  # noqa: ANN001
            sink_url: str, record: Path, token: str, count: int, profile: Path | None) -> Run:
    import sqlalchemy as sa

    n = out.nodes
    label = f"{n} node{'s' if n > 1 else ''}"
    spies = []
    if profile is not None:  # every node sampled while it holds the GIL (its Python CPU), not paused
        profile.mkdir(parents=True, exist_ok=True)
        for i, server in enumerate(servers):
            spies.append(Process(f"py-spy-{i + 1}", [tool("py-spy"), "record", "--pid", str(server.pid),
                                                     "--format", "raw", "--rate", "100", "--threads", "--gil",
                                                     "--nonblocking",
                                                     "--output", str(profile / f"{n}nodes-node{i + 1}.txt")],
                                 profile))
        time.sleep(1.0)  # py-spy attaches; nothing to poll for
    body = cap_xml(f"bench-{uuid.uuid4().hex[:12]}", datetime.now(timezone.utc))
    out.load = os.getloadavg()[0]
    cpu0 = [cpu_seconds(s.pid) for s in servers]
    tasks0 = [threads_cpu(s.pid) for s in servers]
    sink0 = cpu_seconds(sink.pid)
    t0 = time.time()
    status, _, raw = http("POST", f"http://{LOOPBACK}:{ports[0]}/api/v1/warnings", body,
                          {"Authorization": f"Bearer {token}", "Content-Type": CAP}, timeout=300)
    t_ack = time.time()
    intake = cpu_seconds(servers[0].pid)
    if status != 201:
        raise BenchError(f"{label}: POST /api/v1/warnings answered {status}: {raw[:500]!r}")
    out.post_ms = (t_ack - t0) * 1000
    if intake is not None and cpu0[0] is not None:
        out.intake_cpu = intake - cpu0[0]
    try:
        wait_until(lambda: sink_stats(sink_url)["unique"] >= count, FANOUT_SECONDS, 0.02,
                   f"{label}: {count} unique receipts")
    except BenchError as exc:
        result.ok = False
        result.notes.append(str(exc))

    def delivered() -> bool:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM deliveries WHERE channel = 'webhook' "
                                        "AND state = 'delivered'")).scalar_one() >= count
    try:
        wait_until(delivered, DURABLE_SECONDS if result.ok else 1, 0.05, f"{label}: all {count} rows delivered")
        out.durable = time.time() - t0
    except BenchError as exc:
        result.ok = False
        result.notes.append(str(exc))
    cpu1 = [cpu_seconds(s.pid) for s in servers]
    out.threads = [split_cpu(s.pid, t) for s, t in zip(servers, tasks0)]
    sink1 = cpu_seconds(sink.pid)
    for spy in spies:
        spy.stop(30, signal.SIGINT)
    if spies:
        result.notes.append(f"{label}: py-spy profiles (collapsed stacks) in {profile}/{n}nodes-node*.txt")
    out.cpu = [b - a for a, b in zip(cpu0, cpu1) if a is not None and b is not None]
    if len(out.cpu) != n:
        raise BenchError(f"{label}: a node's CPU time could not be read (did it exit?)")
    received = receipts(record, "/s")
    if len(received) >= count:
        out.wall = max(at for at, _ in received) - t0
    if sink0 is not None and sink1 is not None and out.durable:
        out.sink_cpu = (sink1 - sink0) / out.durable * 100
    stats = sink_stats(sink_url)
    out.duplicates = stats["duplicates"]
    out.sent, out.windows, out.resent = db_facts(engine, [f"bench-{p}" for p in ports], t0)
    if stats["unique"] != count or stats["rejected"] or stats["failed"]:
        result.ok = False
        result.notes.append(f"{label}: sink stats {stats} (expected {count} unique, none rejected)")
    if out.duplicates > out.resent:
        result.ok = False
        result.notes.append(f"{label}: {out.duplicates} duplicates at the sink but only {out.resent} sends "
                            "beyond a row's first: duplicates beyond the sends in flight")
    if sum(out.sent) != count:
        result.ok = False
        result.notes.append(f"{label}: delivery_attempts credit {sum(out.sent)} deliveries to the nodes, "
                            f"not {count}")
    out.rss = [r for r in (peak_rss_mib(s.pid) for s in servers) if r is not None]
    return out


def add_figures(result: Result, run: Run, one: Run | None, pin: bool) -> None:
    n = run.nodes
    label = f"{n} node{'s' if n > 1 else ''}"
    result.add(f"{label}: wall s", run.wall, "s", "POST → last receipt at the sink")
    result.add(f"{label}: all durable s", run.durable, "s", "POST → every row `delivered` in the database")
    result.add(f"{label}: POST answered", run.post_ms, "ms", "node 1 validated, planned and stored N rows")
    result.add(f"{label}: node 1 CPU during the POST", run.intake_cpu, "s", "intake: not shared")
    result.add(f"{label}: CPU s per node", " / ".join(f"{c:.2f}" for c in run.cpu), "s",
               "POST → all durable, utime + stime")
    if run.threads:
        result.add(f"{label}: event loop / other threads CPU s", " / ".join(f"{m:.2f}+{r:.2f}" for m, r, _ in
                                                                          run.threads), "s",
                   "per node: the main thread; the database thread and executors")
        result.add(f"{label}: preemptions per node", " / ".join(f"{sw:,}" for _, _, sw in run.threads), "",
                   "involuntary context switches, all threads: how contended the cores were")
    result.add(f"{label}: busiest node CPU s", run.busiest, "s", "the fan-out's time with a core per node")
    result.add(f"{label}: total CPU s", sum(run.cpu), "s",
               "all nodes" + (f"; {sum(run.cpu) / one.busiest:.2f}× one node's" if one and one.busiest else ""))
    if run.intake_cpu is not None and run.cpu:
        result.add(f"{label}: CPU per delivery", (sum(run.cpu) - run.intake_cpu) / sum(run.sent or [1]) * 1e6,
                   "µs", "all nodes, the POST's intake left out")
    if run.commits is not None:
        result.add(f"{label}: PostgreSQL commits", run.commits, "",
                   "all nodes, POST → nodes stopped (claims, results, rate reservations, sweeps)")
    result.add(f"{label}: deliveries per node", " / ".join(f"{s:,}" for s in run.sent), "",
               "from delivery_attempts.node")
    result.add(f"{label}: node active s", " / ".join(f"{a:.2f}–{b:.2f}" for a, b in run.windows), "s",
               "first attempt started – last finished, after the POST")
    result.add(f"{label}: duplicates", run.duplicates, "", f"at the sink; sends in flight re-sent: {run.resent}")
    if run.idle is not None:
        result.add(f"{label}: idle CPU per node", run.idle * 100, "% core",
                   f"before the POST; × wall = {run.idle * (run.durable or 0):.2f} CPU s per node during the run")
    result.add(f"{label}: load average", run.load, "", "1 minute, just before the POST")
    result.add(f"{label}: sink CPU", run.sink_cpu, "% core", "near 100: the sink set the pace")
    result.add(f"{label}: peak RSS per node", " / ".join(f"{r:.0f}" for r in run.rss), "MiB")
    if n == 1 or one is None:
        return
    if one.cpu and sum(one.cpu) >= 1.0 and sum(run.cpu) > 1.15 * sum(one.cpu):  # (CPU ticks are 10 ms)
        result.notes.append(f"{label}: all nodes used {sum(run.cpu) / sum(one.cpu):.2f}× one node's CPU for the "
                            "same deliveries: per-node costs, or cores contended by other processes (see "
                            "`preemptions per node`, `idle CPU per node`); the CPU speed-up is then low")
    name = f"{label}: speed-up (CPU)"
    cpu_up = one.busiest / run.busiest if one.busiest and run.busiest else None
    wall_up = one.wall / run.wall if one.wall and run.wall else None
    result.add(name, cpu_up, "×", f"1 node CPU s ÷ busiest node CPU s; target ≥ {TARGETS.get(n, 0):g}"
               if n in TARGETS else "1 node CPU s ÷ busiest node CPU s")
    result.add(f"{label}: speed-up (wall)", wall_up, "×",
               "1 node wall ÷ this wall; bounded by the cores" + ("" if not pin else ", nodes pinned"))
    if n in TARGETS:
        result.target(name, None if cpu_up is None else cpu_up >= TARGETS[n])


def run_benchmark(db: str | None = None, count: int = DEFAULT_COUNT, nodes: tuple[int, ...] = DEFAULT_NODES,
                  rate: float = DEFAULT_RATE, pin: bool = False, profile: Path | None = None) -> Result:
    result = Result(NAME)
    result.add("deliveries", count, "", "webhook subscribers, one red warning, per node count")
    server = pg_url(db)
    if db and not db.startswith("postgres"):
        result.notes.append(f"--db {db} ignored: scale-out needs PostgreSQL ({server})")
    cpus = len(os.sched_getaffinity(0))
    result.add("CPUs", cpus, "", "nodes + sink + PostgreSQL share them")
    result.add("pinning", "node i → CPU i" if pin else "none", "",
               "taskset -c, where there are as many CPUs as nodes" if pin else "the kernel schedules")
    try:
        check_reachable(server)
        result.add("database", "postgresql", "", "a fresh database per node count")
        one: Run | None = None
        for n in sorted(set(nodes)):
            started = time.monotonic()
            run = one_run(result, server, n, count, rate, pin, profile)
            if n == 1:
                one = run
            add_figures(result, run, one, pin)
            result.add(f"{run.nodes} node{'s' if n > 1 else ''}: run wall time", time.monotonic() - started, "s",
                       "setup included")
        if one is None and len(nodes) and min(nodes) > 1:
            result.notes.append("no 1-node run: speed-ups not computed")
    except BenchError as exc:
        result.ok = False
        result.error = str(exc)
    return result


def run(db: str | None = None) -> Result:
    """The entry point bench.run_all calls: the default size."""
    return run_benchmark(db)


def summary(result: Result) -> str:
    """The 1/2/3-node table, one row per node count."""
    def get(n: int, what: str) -> str:
        return fmt(result.value(f"{n} node{'s' if n > 1 else ''}: {what}"))

    counts = sorted({int(f.name.split()[0]) for f in result.figures if f.name[:1].isdigit() and " node" in f.name})
    if not counts:
        return ""
    cols = ["wall s", "all durable s", "busiest node CPU s", "total CPU s", "speed-up (CPU)", "speed-up (wall)",
            "deliveries per node", "duplicates"]
    return table(["nodes", *cols], [[str(n), *(get(n, c) for c in cols)] for n in counts],
                 right=tuple(range(1, len(cols) + 1)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_out", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help=f"subscribers ({DEFAULT_COUNT})")
    parser.add_argument("--nodes", type=int, nargs="+", default=list(DEFAULT_NODES), help="node counts (1 2 3)")
    parser.add_argument("--db", help=f"a PostgreSQL server on loopback (default {DEFAULT_PG}); a fresh "
                        "database per node count, dropped afterwards")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="webhook.rate_per_second")
    parser.add_argument("--pin", action="store_true", help="pin node i to CPU i (taskset) when CPUs ≥ nodes")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--profile", type=Path, help="py-spy every node during the fan-out; collapsed stacks "
                        "written to this directory")
    args = parser.parse_args(argv)
    if args.count < 1 or min(args.nodes) < 1:
        parser.error("--count and --nodes must be positive")
    result = run_benchmark(args.db, args.count, tuple(args.nodes), args.rate, args.pin,
                           args.profile.resolve() if args.profile else None)
    print_table([result])
    if summary(result):
        print("\n" + summary(result))
    if args.json:
        write_json([result], args.json)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
