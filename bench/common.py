"""Shared helpers for the benchmarks: processes, free ports, scratch databases, figures, tables.

Everything here is bounded (every wait has a deadline) and loopback-only. A
benchmark returns a `Result` — a list of `Figure`s, its correctness verdict (`ok`)
and the performance targets it missed (`missed`) — and `print_table` prints any
number of results as one table.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
T = TypeVar("T")


class BenchError(RuntimeError):
    """A benchmark could not run (setup failed, a process died, a deadline passed)."""


# -- figures and tables --

@dataclass
class Figure:
    name: str
    value: float | int | str | None
    unit: str = ""
    note: str = ""
    kind: str = ""  # "target": judged against a performance target; "comparison": warnd against a baseline


@dataclass
class Result:
    """What a benchmark found. Two kinds of verdict are kept apart:

    - `ok` False: a correctness check failed — messages lost, duplicated or refused, counts
      wrong, a comparison that could not be computed. Always a failure.
    - `missed`: figures that missed their performance target (`target()`). A failure of a
      full run; in a smoke run (`smoke`, small counts) printed but not judged.
    """

    benchmark: str
    figures: list[Figure] = field(default_factory=list)
    ok: bool = True  # False: a correctness check failed (lost, duplicate or failed messages, wrong counts…)
    missed: list[str] = field(default_factory=list)  # names of the figures that missed their target
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # the benchmark did not finish
    smoke: bool = False  # small counts (bench.run_all --smoke): targets are not judged

    def add(self, name: str, value: float | int | str | None, unit: str = "", note: str = "") -> None:
        self.figures.append(Figure(name, value, unit, note))

    def compare(self, name: str, value: float | None, unit: str = "", note: str = "") -> None:
        """A figure comparing warnd with its baseline. It must be computable: None (a side
        measured nothing) fails the correctness check, in a smoke run as in a full one."""
        self.figures.append(Figure(name, value, unit, note, "comparison"))
        if value is None:
            self.ok = False
            self.notes.append(f"{name}: could not be computed")

    def target(self, name: str, met: bool | None) -> None:
        """Judge the figure `name` (added already with `add`) against its performance target:
        a miss goes to `missed`, not to `ok`. `met` None — the figure could not be computed —
        is a correctness failure, as for `compare`."""
        figure = next((f for f in self.figures if f.name == name), None)
        if figure is None:
            raise BenchError(f"{self.benchmark}: no figure {name!r} to judge")
        figure.kind = "target"
        if met is None:
            self.ok = False
            self.notes.append(f"{name}: could not be computed")
        elif not met:
            self.missed.append(name)

    @property
    def passed(self) -> bool:
        """Finished, every correctness check held and, unless a smoke run, every target met."""
        return self.ok and not self.error and (self.smoke or not self.missed)

    def value(self, name: str) -> float | int | str | None:
        return next((f.value for f in self.figures if f.name == name), None)

    def as_dict(self) -> dict:
        return asdict(self)


def fmt(value: float | int | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, right: Sequence[int] = ()) -> str:
    """A plain-text table; columns whose index is in `right` are right-aligned."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


SMOKE_MARK = {"target": "[smoke: not judged] ", "comparison": "[smoke] "}


def verdict(result: Result) -> tuple[str, str]:
    """The verdict row's value and note."""
    if result.error or not result.ok:
        return "FAILED", ("did not finish" if result.error else "a correctness check failed (see the notes)")
    if result.smoke:
        missed = f" ({len(result.missed)} missed at smoke size)" if result.missed else ""
        return "ok", f"smoke: correctness only; targets not judged{missed}"
    if result.missed:
        return "FAILED", "target missed: " + ", ".join(result.missed)
    return "ok", ""


def print_table(results: Sequence[Result], file=None) -> None:  # noqa: ANN001
    """One table for any number of benchmark results. In a smoke run the target and comparison
    figures are marked: at smoke size they say nothing about performance."""
    rows = []
    for result in results:
        if result.error:
            rows.append([result.benchmark, "ERROR", "", "", result.error[:100]])
        for f in result.figures:
            mark = SMOKE_MARK.get(f.kind, "") if result.smoke else ""
            rows.append([result.benchmark, f.name, fmt(f.value), f.unit, mark + f.note])
        value, note = verdict(result)
        rows.append([result.benchmark, "verdict", value, "", note])
    out = file or sys.stdout
    if any(r.smoke for r in results):
        print("smoke run: small counts, correctness only. Rates, latencies and ratios here are not "
              "performance figures; targets are printed, not judged.", file=out)
    print(table(["benchmark", "figure", "value", "unit", "note"], rows, right=(2,)), file=out)
    for result in results:
        for note in result.notes:
            print(f"* {result.benchmark}: {note}", file=out)
    out.flush()


def write_json(results: Sequence[Result], path: str | Path) -> None:
    Path(path).write_text(json.dumps([r.as_dict() for r in results], ensure_ascii=False, indent=2) + "\n",
                          encoding="utf-8")


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of an already sorted sequence."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


# -- waiting --

def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.05, what: str = "condition") -> T:
    """Call `predicate` until it returns something truthy; BenchError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"{what} not reached in {timeout:g}s")
        time.sleep(interval)


# -- network --

def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def require_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK_HOSTS:
        raise BenchError(f"benchmarks only talk to loopback addresses, not {host!r} ({url})")


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """One blocking HTTP request to loopback; returns (status, headers, body) for any status."""
    require_loopback(url)
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def http_json(method: str, url: str, data: object = None, headers: dict[str, str] | None = None,
              timeout: float = 30.0) -> tuple[int, object]:
    h = {"Accept": "application/json", **(headers or {})}
    body = None
    if data is not None:
        body = json.dumps(data).encode()
        h["Content-Type"] = "application/json"
    status, _, raw = http(method, url, body, h, timeout)
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode("utf-8", "replace")


# -- processes --

def _proc_status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM (the peak resident set) of a live process, in MiB."""
    value = _proc_status(pid).get("VmHWM")
    return int(value.split()[0]) / 1024 if value else None


def rss_mib(pid: int) -> float | None:
    value = _proc_status(pid).get("VmRSS")
    return int(value.split()[0]) / 1024 if value else None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a live process has used so far."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    parts = stat[stat.rindex(")") + 2:].split()  # fields after the command name
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


class Process:
    """A child process with its output in a log file, stopped by SIGTERM (then SIGKILL)."""

    def __init__(self, name: str, argv: Sequence[str], workdir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env={**os.environ, **(env or {})}, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_http(self, url: str, timeout: float = 30.0) -> None:
        """Until GET `url` answers 200; BenchError if the process dies or the deadline passes."""
        def ready() -> bool:
            if not self.alive():
                raise BenchError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")
            try:
                return http("GET", url, timeout=2)[0] == 200
            except OSError:
                return False
        wait_until(ready, timeout, 0.05, f"{self.name} answering {url}")

    def stop(self, timeout: float = 20.0, sig: int = signal.SIGTERM) -> int | None:
        """`sig` (SIGTERM), wait up to `timeout`, then SIGKILL. Returns the exit code."""
        if self.alive():
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()
        return self.popen.returncode


@contextlib.contextmanager
def processes() -> Iterator[list[Process]]:
    """A list to put started processes in; every one is stopped on the way out, newest first."""
    started: list[Process] = []
    try:
        yield started
    finally:
        for proc in reversed(started):
            with contextlib.suppress(Exception):
                proc.stop()


def tool(name: str) -> str:
    """A console script of this virtualenv (e.g. `warnd`), falling back to PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise BenchError(f"{name} is not installed")
    return found


def run(argv: Sequence[str], timeout: float = 300.0, env: dict[str, str] | None = None) -> str:
    """Run a command to completion; its stdout, or BenchError with its output."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{' '.join(argv[:3])}… did not finish in {timeout:g}s") from None
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}{done.stdout[-500:]}")
    return done.stdout


# -- scratch space --

@contextlib.contextmanager
def workdir(prefix: str = "warnd-bench-") -> Iterator[Path]:
    """A temporary directory, removed afterwards unless WARND_BENCH_KEEP is set."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if os.environ.get("WARND_BENCH_KEEP"):
            print(f"(kept {path})", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def scratch_database(db: str | None, directory: Path) -> Iterator[str]:
    """A fresh, empty database for one run.

    None: a SQLite file in `directory`. A PostgreSQL URL (loopback only): a new
    database is created on that server and dropped afterwards.
    """
    if not db or db.startswith("sqlite"):
        yield db if db and db not in ("sqlite", "sqlite://") else f"sqlite:///{directory / 'warnd.db'}"
        return
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    url = make_url(db)
    if not url.drivername.startswith("postgres"):
        raise BenchError(f"unsupported database {url.drivername}: use sqlite or postgresql")
    require_loopback(f"http://{url.host or 'localhost'}/")
    admin_url = url.set(drivername="postgresql+psycopg")
    name = f"warnd_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


# -- in-process warnd (sms_fanout, speaker_fanout, escalation_lag, confirmation_ingest) --

def cap_alert(identifier: str, codes: Sequence[str], *, severity: str = "Extreme", hours: float = 6.0,
              event: str = "暴雨") -> bytes:
    """A CAP 1.2 warning in force now (sent a second ago) for the given region codes."""
    from datetime import datetime, timedelta, timezone

    from warnd.domain.model import Alert, Area, Info, MsgType, Status
    from warnd.ingest.capxml import alert_to_xml

    now = datetime.now(timezone.utc).replace(microsecond=0)
    area = Area("基准测试区域", geocodes=tuple(("GB2260", c) for c in codes))
    info = Info("zh-CN", ("Met",), event, "Immediate", severity, "Likely", expires=now + timedelta(hours=hours),
                headline=f"{event}预警", description="预计未来3小时有强降雨，累计雨量可达150毫米以上。",
                instruction="立即转移到安全地带，远离河道和山体。", sender_name="县气象局", areas=(area,))
    alert = Alert(identifier, "bench@example.cn", now - timedelta(seconds=1), Status.ACTUAL, MsgType.ALERT,
                  "Public", infos=(info,))
    return alert_to_xml(alert).encode("utf-8")


async def serve_app(app, port: int):  # noqa: ANN001, ANN201 - aiohttp Application → AppRunner
    """Serve an aiohttp application on 127.0.0.1:`port` in this event loop; `await runner.cleanup()`."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, port).start()
    return runner


async def wait_async(predicate: Callable, timeout: float, interval: float = 0.05, what: str = "condition"):  # noqa: ANN201
    """Await `predicate()` (a coroutine function) until truthy; BenchError after `timeout` seconds."""
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"{what} not reached in {timeout:g}s")
        await asyncio.sleep(interval)


def add_cli(parser, default_count: int) -> None:  # noqa: ANN001 - argparse.ArgumentParser
    """The options every benchmark takes: --count, --db, --json."""
    parser.add_argument("--count", type=int, default=default_count, help=f"size of the run ({default_count})")
    parser.add_argument("--db", help="database: default a SQLite file in a temp dir; a postgresql:// URL on "
                        "loopback gets a fresh database, dropped afterwards")
    parser.add_argument("--json", help="also write the figures to this file")


def finish(result: Result, json_path: str | None) -> int:
    """Print a benchmark's table, write its JSON if asked; the exit status."""
    print_table([result])
    if json_path:
        write_json([result], json_path)
    return 0 if result.passed else 1


def run_async(coro, cleanup_seconds: float = 15.0):  # noqa: ANN001, ANN201
    """`asyncio.run` with a bounded cleanup: tasks left behind get `cleanup_seconds` to finish
    after being cancelled (asyncio.run would wait for them forever), then are abandoned."""
    import asyncio
    import traceback

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    except BaseException:
        traceback.print_exc()
        raise
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            done, stuck = loop.run_until_complete(asyncio.wait(pending, timeout=cleanup_seconds))
            if stuck:
                print(f"(bench: {len(stuck)} task(s) did not finish after cancellation, abandoned: "
                      f"{sorted({t.get_coro().__qualname__ for t in stuck})[:5]})", file=sys.stderr)
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
