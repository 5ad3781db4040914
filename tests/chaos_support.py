"""The parts of the chaos test (tests/test_chaos.py): each real service it breaks, as a small
object that can be started, broken and mended, and the readers of what each one recorded.

Every service runs as its own process on a port fixed for the whole test, so a restart comes
back where the others expect it: a private PostgreSQL cluster (never the machine's shared
server), a private Mosquitto with persistence, the Twilio simulator, the webhook sink, the
speaker simulator and three `warnd serve` nodes on one database. Every wait is a bounded poll.
"""
from __future__ import annotations

import glob
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from procs import Proc, Procs, free_port, http, http_ok, run, until, warnd_command
from sqlalchemy.pool import NullPool

from warnd.simulate.visitors import ITEM, LINK

SID, TOKEN, FROM = "AC" + "c" * 32, "chaos-auth-token", "+15005550006"
SECRET = "whsec_" + "Y2hhb3MtdGVzdC1zaWduaW5nLXNlY3JldA=="  # base64 of 24+ bytes, as Standard Webhooks wants
DEPARTMENT = "县气象局"


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def read_jsonl(path: Path) -> list[dict]:
    """The lines of a record file; a torn last line (a process killed mid-write) is skipped."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else ():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def must_have(what: str, reason: str) -> None:
    """A missing service skips locally, and fails under CI (which installs it)."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI: {reason}")
    pytest.skip(f"{what} not available: {reason}")


# -- PostgreSQL: a private cluster this test may restart --

class PrivatePostgres:
    """initdb + pg_ctl on a temporary directory and a free port. As root the server runs as the
    `postgres` system user (initdb refuses root), so the directory is outside pytest's tmp_path
    (mode 0700, owned by root) and owned by that user."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                       key=lambda p: int(re.search(r"/(\d+)/bin", p).group(1)))
        if not found:
            must_have("PostgreSQL server binaries (initdb, pg_ctl)", "none under /usr/lib/postgresql/*/bin")
        self.bin = Path(found[-1]).parent
        self.as_user: list[str] = []
        self.root = Path(tempfile.mkdtemp(prefix="warnd-chaos-pg-"))
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.root, ignore_errors=True)
                must_have("a `postgres` system user", "initdb refuses to run as root")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.port = free_port()
        self.data = self.root / "data"
        self.restarts = 0

    def _pg(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited with {done.returncode}\n{done.stdout}\n{done.stderr}\n"
                                 f"{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return (self.root / "server.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def init(self) -> None:
        self._pg(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                 "--no-sync", "--no-instructions")
        # loopback only, the socket in our directory, fsync off: a crash of the server process
        # is what we test, not of the machine (the OS keeps what was written). Commits stay
        # synchronous: an immediate stop must lose nothing a client was told is committed.
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.root}'\n"
                       "fsync = off\nfull_page_writes = off\nmax_connections = 200\n")
        self.start()
        admin = sa.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with admin.connect() as conn:
            conn.execute(sa.text('CREATE DATABASE "warnd"'))
        admin.dispose()

    def url(self, database: str = "warnd") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self._pg(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                 "-t", "60", "start")

    def stop_immediate(self) -> None:
        """The fault: every backend killed at once, no checkpoint (the next start replays the WAL)."""
        self._pg(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self._pg(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
            except AssertionError as exc:
                print(f"stopping the private PostgreSQL failed: {exc}", file=sys.stderr)
        shutil.rmtree(self.root, ignore_errors=True)


# -- Mosquitto --

class Broker:
    """A private Mosquitto with persistence: a restart (SIGTERM saves the sessions) keeps every
    speaker's queued commands and warnd's shared subscription."""

    def __init__(self, procs: Procs, tmp_path: Path) -> None:
        from mosquitto import require_mosquitto

        from warnd.sim.broker import mosquitto_config
        self.procs, self.binary = procs, require_mosquitto()
        self.port = free_port()
        (tmp_path / "mqtt-data").mkdir()
        self.conf = tmp_path / "mosquitto.conf"
        self.conf.write_text(mosquitto_config(self.port, tmp_path / "mqtt-data"))
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.lives = 0
        self.proc: Proc | None = None

    def start(self) -> None:
        self.lives += 1
        self.proc = self.procs.start(f"mosquitto-{self.lives}", [self.binary, "-c", str(self.conf)])
        until(lambda: listening(self.port), 15, "mosquitto to listen", alive=[self.proc])

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.stop()


# -- the Twilio simulator --

class Twilio:
    def __init__(self, procs: Procs, tmp_path: Path, inbound_url: str, behaviours: dict, seed: int) -> None:
        self.record = tmp_path / "twilio.jsonl"
        (tmp_path / "twilio-behaviours.json").write_text(json.dumps(behaviours))
        self.proc = procs.start("twilio", [sys.executable, "-m", "warnd.sim.twilio", "--port", "0", "--account-sid",
                                           SID, "--auth-token", TOKEN, "--record", str(self.record),
                                           "--inbound-sms-url", inbound_url, "--seed", str(seed),
                                           "--behaviours", str(tmp_path / "twilio-behaviours.json")])
        self.url = self.proc.first_line()
        until(lambda: http_ok(self.url + "/_stats"), 20, "the Twilio simulator to answer", alive=[self.proc])

    def stats(self) -> dict:
        return http("GET", self.url + "/_stats", timeout=10).json()

    def storm(self, on: bool) -> None:
        """A 429 storm: every REST request refused (Retry-After 1 s) until it is called off."""
        faults = {"rate_429": 1.0, "retry_after": 1} if on else {"rate_429": 0.0}
        response = http("POST", self.url + "/_control", json.dumps({"faults": faults}).encode(),
                        {"Content-Type": "application/json"})
        assert response.status == 200, response.body

    def reply_now(self, number: str, text: str = "1") -> None:
        response = http("POST", self.url + "/_control", json.dumps({"reply_now": {number: text}}).encode(),
                        {"Content-Type": "application/json"})
        assert response.status == 200, response.body

    def lines(self, kind: str) -> list[dict]:
        return [x for x in read_jsonl(self.record) if x["kind"] == kind]


# -- the webhook sink --

class Sink:
    """The sink on a fixed port; an outage is a kill -9, the restart appends to the same record.
    Its in-memory de-duplication ends with each life, so duplicates are counted from the record
    (one line per webhook-id and life) plus what each life said it dropped."""

    def __init__(self, procs: Procs, tmp_path: Path) -> None:
        self.procs = procs
        self.record = tmp_path / "sink.jsonl"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lives = 0
        self.dropped_before = 0  # duplicates dropped by lives already ended
        self.proc: Proc | None = None

    def start(self) -> None:
        self.lives += 1
        # answering takes a moment, so a kill of a node catches webhooks in flight
        self.proc = self.procs.start(f"sink-{self.lives}", [sys.executable, "-m", "warnd.sim.webhook_sink", "--port",
                                                            str(self.port), "--secret", SECRET, "--record",
                                                            str(self.record), "--latency", "0.3"])
        until(lambda: http_ok(self.url + "/_stats"), 20, "the sink to answer", alive=[self.proc])

    def stats(self) -> dict:
        return http("GET", self.url + "/_stats", timeout=10).json()

    def kill(self) -> None:
        assert self.proc is not None
        self.dropped_before += self.stats()["duplicates"]
        self.proc.kill9()

    def records(self) -> list[dict]:
        return read_jsonl(self.record)


# -- warnd: three nodes on one database --

@dataclass
class Node:
    index: int
    port: int
    config: Path
    proc: Proc | None = None
    lives: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def name(self) -> str:
        return f"chaos-{self.index}"


@dataclass
class Cluster:
    procs: Procs
    tmp_path: Path
    db_url: str
    nodes: list[Node] = field(default_factory=list)
    token: str = ""

    def configure(self, ports: list[int], settings: dict) -> None:
        """One config per node: the same database and settings, its own port, node id, public
        URL and MQTT client id (stable across its lives, so a restarted node takes back its own
        session in the shared ack subscription instead of leaving a dead one there)."""
        for i, port in enumerate(ports):
            path = self.tmp_path / f"node-{i}.yaml"
            mqtt = {**settings.get("mqtt", {}), "client_id": f"warnd-chaos-{i}"}
            path.write_text(yaml.safe_dump({**settings, "database_url": self.db_url, "port": port,
                                            "node_id": f"chaos-{i}", "public_base_url": f"http://127.0.0.1:{port}",
                                            "mqtt": mqtt}, allow_unicode=True), encoding="utf-8")
            self.nodes.append(Node(i, port, path))

    def prepare(self, directory: dict) -> None:
        cfg = ["--config", str(self.nodes[0].config)]
        (self.tmp_path / "directory.yaml").write_text(yaml.safe_dump(directory, allow_unicode=True), encoding="utf-8")
        run([*warnd_command(), "db", "upgrade", *cfg])
        run([*warnd_command(), "directory", "import", *cfg, str(self.tmp_path / "directory.yaml")])
        self.token = run([*warnd_command(), "token", "create", *cfg, "--department", DEPARTMENT,
                          "--admin"]).strip().splitlines()[-1]

    def start(self, node: Node) -> None:
        node.lives += 1
        node.proc = self.procs.start(f"{node.name}-{node.lives}", [*warnd_command(), "serve", "--config",
                                                                    str(node.config), "--no-migrate"])

    def wait_ready(self, node: Node, timeout: float = 60) -> None:
        assert node.proc is not None
        until(lambda: http_ok(node.base + "/readyz"), timeout, f"{node.name} to be ready", interval=0.1,
              alive=[node.proc])

    def in_flight(self) -> list[tuple[int, int]]:
        """(node index, sends handed to a provider and not yet answered), busiest first."""
        rows = self.sql("SELECT claimed_by, count(*) AS n FROM deliveries WHERE state = 'sending' "
                        "AND handed_at IS NOT NULL GROUP BY claimed_by ORDER BY n DESC")
        by_name = {n.name: n.index for n in self.nodes}
        return [(by_name[name], row.n) for row in rows
                if (name := str(row.claimed_by).split("/")[0]) in by_name]

    def ready(self, node: Node) -> bool:
        return node.proc is not None and http_ok(node.base + "/readyz", timeout=1)

    def kill9(self, node: Node) -> None:
        assert node.proc is not None
        node.proc.kill9()
        node.proc = None

    def up(self) -> list[Node]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def died(self) -> list[str]:
        """Nodes that exited without being killed by the test."""
        return [f"{n.name} (exit {n.proc.returncode})\n{n.proc.tail()}" for n in self.nodes
                if n.proc is not None and n.proc.poll() is not None]

    def api(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 30):  # noqa: ANN201 - procs.Response
        """Ask the first node that answers (as a load balancer would)."""
        last: Exception | None = None
        for node in self.up():
            try:
                return http(method, node.base + path, body,
                            {"Authorization": f"Bearer {self.token}", **(headers or {})}, timeout=timeout)
            except OSError as exc:
                last = exc
        raise AssertionError(f"no node answered {method} {path}: {last}")

    def get(self, path: str) -> dict:
        response = self.api("GET", path)
        assert response.status == 200, (path, response.status, response.body[:2000])
        return response.json()

    def sql(self, query: str, **params: object) -> list[sa.Row]:
        engine = sa.create_engine(self.db_url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                return list(conn.execute(sa.text(query), params))
        finally:
            engine.dispose()


# -- the door-to-door walker --

class Walker:
    """Whoever receives a call-list SMS walks it: opens the page (on any node that answers: the
    link's signature is the cluster's, not one node's) and marks every household told. A list
    whose grid was confirmed meanwhile answers 409 and is left. Called between faults; a node
    or database that does not answer now is tried again at the next call."""

    def __init__(self, cluster: Cluster, twilio: Twilio, delays: tuple[float, float]) -> None:
        self.cluster, self.twilio, self.delays = cluster, twilio, delays  # even list ids, odd ones
        self.seen: dict[str, float] = {}  # list link → when it is walked
        self.done: dict[str, str] = {}  # link → walked / inactive
        self.marked = 0

    def step(self) -> None:
        now = time.time()
        for m in self.twilio.lines("message"):
            for link, list_id in LINK.findall(m["body"]):
                self.seen.setdefault(link, now + self.delays[int(list_id) % 2])
        for link, due in self.seen.items():
            if link not in self.done and now >= due:
                self._walk(link)

    def _walk(self, link: str) -> None:
        path = link.split("/", 3)[3]
        for node in self.cluster.up():
            try:
                page = http("GET", f"{node.base}/{path}", timeout=10)
                if page.status in (409, 410):
                    self.done[link] = "inactive"
                    return
                if page.status != 200:
                    continue
                for _vul, already, item in ITEM.findall(page.body.decode()):
                    if already:
                        continue
                    marked = http("POST", f"{node.base}/{path}/items/{item}", b"mark=notified",
                                  {"Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
                    if marked.status == 409:
                        self.done[link] = "inactive"
                        return
                    if marked.status not in (200, 303):  # urllib follows the 303 back to the page
                        raise OSError(f"marking answered {marked.status}")
                    self.marked += 1
                self.done[link] = "walked"
                return
            except OSError:
                continue


def recovery_reported(logdir: Path) -> tuple[Counter, Counter]:
    """What the nodes' logs say recovery did: claims of dead processes by fate (unsent /
    resent / uncertain), and uncertain sends not found at the provider, so sent again, by channel."""
    fates, again = Counter(), Counter()
    for path in sorted(logdir.glob("chaos-*.stderr")):
        for line in (x for x in read_jsonl(path) if isinstance(x, dict)):
            if line.get("msg") == "recovered deliveries from a dead claim":
                # no dead process named: a live node's claim whose lease ran out
                fates[line["fate"] if line.get("dead") else f"{line['fate']} (lease ran out)"] += line["count"]
            elif line.get("msg") == "uncertain sends not at the provider: sending again":
                again[line["channel"]] += line["count"]
    return fates, again


def duplicates(keys: list) -> dict:
    """Keys seen more than once, with how many extra times."""
    return {k: n - 1 for k, n in Counter(keys).items() if n > 1}
