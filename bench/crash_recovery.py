"""Crash recovery: `kill -9` of `warnd serve` in the middle of a red SMS fan-out, a restart,
and what it cost — time to the first and to the last person's first SMS after the restart,
duplicates, losses, and replies sent while warnd was down.

    python -m bench.crash_recovery [--count 2000] [--replies 50] [--outage 5] [--rate 500]
                                   [--concurrency 32] [--lookup-after S] [--db URL] [--json out.json]

Processes, all real, on loopback: the Twilio simulator (`python -m warnd.sim.twilio`, one for
the whole run, every message, status and reply appended to its `--record` file, replies
POSTed to warnd's /twilio/sms/inbound), and `warnd serve` (SQLite file, WAL,
synchronous=FULL, or a fresh PostgreSQL database with --db; the config, `db upgrade`,
`directory import` and an admin token made with the `warnd` command as an operator would).
The directory: one county / township / village, N grids, one grid responsible person per
grid with a mobile number of their own. One red CAP warning for the village plans N SMS
(`sms.rate_per_second` --rate, `sms.concurrency` = `twilio.connection_limit` = --concurrency;
confirmations open, so each SMS asks for "1"; the red ladder's one rung is 60 minutes out, so
no escalation SMS falls in the run — and only warning SMS, the ones carrying the headline,
are counted). The simulator delivers every SMS (signed `sent` after 0.1 s, `delivered`
after 1 s).

Without a kill (the baseline, same run, its own fresh database): POST the warning, wait
until the simulator has every person's SMS. With the kill: the same, then

  1. once the simulator has N/6 messages, `--replies`/10 people (at least 1) who got theirs
     reply "1" (`/_control reply_now`) while warnd is up: applied by the webhook;
  2. once it has N/3, SIGKILL `warnd serve` (no chance to clean up). The database is read
     (nothing runs against it then): rows claimed (`sending`) and, of those, handed to
     Twilio with their outcome unknown;
  3. one second into the outage, `--replies` other people who got their SMS reply "1": the
     simulator logs each reply as an inbound message (listed by Messages.json) and POSTs it
     once to warnd's webhook, which is down. Their real times are bracketed by the driver:
     from just before the /_control call to when the last reply's line (webhook failed) was
     in the record file (usually a few tens of ms; the record has no time of its own for a
     reply);
  4. after `--outage` seconds, `warnd serve` again with the same config (same node id: it
     takes back its own claims at once): claimed-but-never-handed rows go out at once,
     handed ones become `uncertain` and are looked up in Twilio's Messages list
     `twilio.lookup_uncertain_after_seconds` (default 10) after they were handed (found →
     settled, not found → sent again), and the replies it missed are fetched from Twilio's
     message log and applied with their real receive times;
  5. wait (at most 180 s) until every person has a warning SMS, no delivery is pending,
     sending or uncertain, and every reply's grid is confirmed.

Figures (from the simulator's record: its own receive time for each message): SMS before the
kill, rows in flight at the kill, restart → warnd ready, restart → the first SMS after it,
restart → the last person's first SMS (target ≤ 60 s), duplicates (people with more than one
warning SMS) and lost (people with none) — both must be 0 —, replies applied (before the kill
and during the outage: each must confirm its grid, not late, the outage's at a time before
the restart), max |confirmed_at − reply time| (an upper bound, from the bracket; Twilio's
Messages list gives whole seconds, so confirmed_at may be up to 1 s early: it must lie within
[reply − 1.5 s, reply + 0.5 s]) and max |confirmed_at − the reply's DateSent in Twilio's list|
(< 1 s for the replies warnd fetched from that list), recovery counters from the restarted
node's /metrics, and the fan-out time (POST of the warning → last person's first SMS) with
the kill and without, as a ratio. Correctness failures make the result not ok.
"""
from __future__ import annotations

import argparse
import base64
import json
import re
import signal
import sys
import time
from collections import Counter
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import sqlalchemy as sa

from bench.common import (
    LOOPBACK,
    BenchError,
    Process,
    Result,
    add_cli,
    cap_alert,
    finish,
    free_port,
    http,
    http_json,
    processes,
    run as command,
    scratch_database,
    tool,
    wait_until,
    workdir,
)

NAME = "crash_recovery"
DEFAULT_COUNT = 2_000
DEFAULT_REPLIES = 50
DEFAULT_OUTAGE = 5.0
CONCURRENCY = 32
RATE = 500.0
# bench.run_all --smoke: every step once, small. 100 SMS/s, so that the kill still falls in the
# fan-out, and uncertain sends looked up 2 s after they were handed instead of warnd's default
# 10 s, so that the run stays short (correctness only).
SMOKE = {"count": 150, "replies": 10, "outage": 2.0, "rate": 100.0, "lookup_after": 2.0}
TARGET_SECONDS = 60.0  # every first SMS within 60 s of the restart (issue 10)
REPLY_SLACK = 0.5  # s: confirmed_at must lie in [reply time − 1 s (Twilio's whole seconds) − this, + this]
SID, TOKEN, FROM = "AC" + "c" * 32, "bench-crash-auth-token", "+15005550006"
COUNTY, TOWNSHIP, VILLAGE = "421126", "421126100", "421126100201"
DEPARTMENT = "bench"
HEADLINE = "暴雨预警"  # cap_alert's headline: in every warning SMS
XML = "application/cap+xml"
FANOUT_SECONDS = 240.0  # bound on each fan-out
SETTLE_SECONDS = 180.0  # bound on the recovery after the restart
OPEN_STATES = ("pending", "sending", "uncertain")


def phone(i: int) -> str:
    return f"+86138{i:08d}"


def grid(i: int) -> str:
    return f"{VILLAGE}{i:04d}"


def directory(n: int) -> dict:
    regions = [{"code": COUNTY, "name": "蕲阳县", "kind": "county"},
               {"code": TOWNSHIP, "name": "青石镇", "kind": "township", "parent": COUNTY},
               {"code": VILLAGE, "name": "柳塘村", "kind": "village", "parent": TOWNSHIP}]
    regions += [{"code": grid(i), "name": f"{i}组", "kind": "grid", "parent": VILLAGE} for i in range(n)]
    people = [{"id": f"p{i}", "name": f"网格员{i}", "region": grid(i), "roles": ["grid_responsible"],
               "phone": phone(i)} for i in range(n)]
    return {"regions": regions, "people": people}


# -- the simulator --

class Simulator:
    """The Twilio simulator process, its control endpoint and its record file."""

    def __init__(self, procs: list[Process], wd: Path) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.record = wd / "twilio-record.jsonl"
        self.offset = 0
        self.proc = Process("twilio-sim", [sys.executable, "-m", "warnd.sim.twilio", "--host", LOOPBACK,
                                           "--port", str(self.port), "--account-sid", SID, "--auth-token", TOKEN,
                                           "--record", str(self.record), "--callback-limit", "64"], wd)
        procs.append(self.proc)
        self.proc.wait_http(f"{self.url}/_stats", 30)

    def control(self, data: dict) -> dict:
        status, body = http_json("POST", f"{self.url}/_control", data)
        if status != 200:
            raise BenchError(f"simulator /_control answered {status}: {body}")
        return body

    def stats(self) -> dict:
        status, body = http_json("GET", f"{self.url}/_stats")
        if status != 200 or not isinstance(body, dict):
            raise BenchError(f"simulator /_stats answered {status}: {body}")
        return body

    def inbound_times(self) -> dict[str, float]:
        """Number → when Twilio says it received that person's (latest) reply: its Messages list,
        as warnd reads it (DateSent: whole seconds)."""
        auth = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
        status, body = http_json("GET", f"{self.url}/2010-04-01/Accounts/{SID}/Messages.json?To=%2B"
                                 f"{FROM[1:]}&PageSize=1000", headers={"Authorization": auth})
        if status != 200 or not isinstance(body, dict):
            raise BenchError(f"simulator Messages.json answered {status}: {str(body)[:300]}")
        out: dict[str, float] = {}
        for m in body["messages"]:  # newest first
            if m["direction"] == "inbound" and m["from"] not in out:
                out[m["from"]] = parsedate_to_datetime(m["date_sent"]).timestamp()
        return out

    def new_phase(self, inbound_url: str) -> None:
        """Forget what was received (counters, lists) and read the record from here on."""
        self.control({"forget": True, "inbound_sms_url": inbound_url})
        self.offset = self.record.stat().st_size if self.record.exists() else 0

    def lines(self) -> list[dict]:
        """This phase's record lines (complete ones: each is flushed as it is written)."""
        if not self.record.exists():
            return []
        with open(self.record, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        out = []
        for raw in data.split(b"\n")[:-1]:
            try:
                out.append(json.loads(raw))
            except ValueError:
                pass
        return out


class Received:
    """What the simulator's record says this phase: warning SMS per number, replies."""

    def __init__(self, lines: list[dict]) -> None:
        self.sms = [m for m in lines if m.get("kind") == "message" and HEADLINE in (m.get("body") or "")]
        self.other = [m for m in lines if m.get("kind") == "message" and HEADLINE not in (m.get("body") or "")]
        self.per_number = Counter(m["to"] for m in self.sms)
        self.first: dict[str, float] = {}
        for m in self.sms:
            self.first[m["to"]] = min(self.first.get(m["to"], m["created_at"]), m["created_at"])
        self.replies = {r["from_"]: r for r in lines if r.get("kind") == "reply"}

    def in_order(self) -> list[str]:
        """Numbers in the order their first SMS arrived."""
        return sorted(self.first, key=self.first.__getitem__)


# -- warnd --

class Deployment:
    """One fresh database with config, directory and token, and `warnd serve` processes on it."""

    def __init__(self, wd: Path, name: str, db_url: str, sim: Simulator, n: int, concurrency: int, rate: float,
                 lookup_after: float | None) -> None:
        self.name, self.dir, self.db_url, self.n = name, wd / name, db_url, n
        self.dir.mkdir(exist_ok=True)
        self.warnd = tool("warnd")
        self.port = free_port()
        self.base = f"http://{LOOPBACK}:{self.port}"
        twilio = {"account_sid": SID, "auth_token": TOKEN, "api_base_url": sim.url, "from_number": FROM,
                  "connection_limit": concurrency}
        if lookup_after is not None:
            twilio["lookup_uncertain_after_seconds"] = lookup_after
        self.config = self.dir / "warnd.yaml"
        self.config.write_text(json.dumps({
            "database_url": db_url, "host": LOOPBACK, "port": self.port, "node_id": f"bench-crash-{name}",
            "public_base_url": self.base, "log_level": "WARNING", "approval": {"green_channel": [DEPARTMENT]},
            "twilio": twilio, "sms": {"enabled": True, "rate_per_second": rate, "concurrency": concurrency},
            "voice": {"enabled": False}, "webhook": {"enabled": False},
            "routing": [{"levels": ["red"], "channels": ["sms"], "roles": ["grid_responsible"]}],
            "ladders": {"red": [{"after_minutes": 60, "action": "notify", "to": ["backup", "superior"],
                                 "channels": ["sms"]}]},
        }), encoding="utf-8")
        cfg = ["--config", str(self.config)]
        command([self.warnd, "db", "upgrade", *cfg], timeout=120)
        (self.dir / "directory.yaml").write_text(json.dumps(directory(n), ensure_ascii=False), encoding="utf-8")
        command([self.warnd, "directory", "import", *cfg, str(self.dir / "directory.yaml")], timeout=300)
        self.token = command([self.warnd, "token", "create", *cfg, "--department", DEPARTMENT, "--admin"],
                             timeout=60).strip().splitlines()[-1].strip()
        self.inbound_url = f"{self.base}/twilio/sms/inbound"
        self.lives = 0

    def serve(self, procs: list[Process]) -> Process:
        self.lives += 1
        proc = Process(f"warnd-{self.name}-{self.lives}", [self.warnd, "serve", "--config", str(self.config),
                                                           "--no-migrate"], self.dir)
        procs.append(proc)
        return proc

    def ready(self, proc: Process, timeout: float = 60.0) -> None:
        proc.wait_http(f"{self.base}/readyz", timeout)

    def _get(self, path: str) -> dict:
        status, body = http_json("GET", f"{self.base}{path}", headers={"Authorization": f"Bearer {self.token}"})
        if status != 200 or not isinstance(body, dict):
            raise BenchError(f"GET {path} answered {status}: {str(body)[:300]}")
        return body

    def post(self, identifier: str) -> int:
        status, _, raw = http("POST", f"{self.base}/api/v1/warnings", cap_alert(identifier, [VILLAGE]),
                              {"Authorization": f"Bearer {self.token}", "Content-Type": XML}, timeout=120)
        if status != 201:
            raise BenchError(f"POST /api/v1/warnings answered {status}: {raw[:500]!r}")
        return json.loads(raw)["warning"]["id"]

    def states(self, wid: int) -> dict[str, int]:
        by_channel = self._get(f"/api/v1/warnings/{wid}?deliveries=0")["deliveries_by_channel"]
        out: Counter[str] = Counter()
        for by_state in by_channel.values():
            out.update(by_state)
        return dict(out)

    def grids(self, wid: int) -> dict[str, dict]:
        return {g["grid"]: g for g in self._get(f"/api/v1/warnings/{wid}/coverage")["grids"]}

    def metrics(self) -> dict[str, float]:
        status, _, raw = http("GET", f"{self.base}/metrics")
        out: dict[str, float] = {}
        if status == 200:
            for line in raw.decode().splitlines():
                m = re.match(r'(warnd_(?:recovered|reconciled)_total)\{([^}]*)\} (\S+)', line)
                if m:
                    out[f"{m[1]}{{{m[2]}}}"] = float(m[3])
        return out

    def at_rest(self, wid: int) -> dict[str, int]:
        """The dead process's rows, read directly (nothing runs against the database now)."""
        from warnd.store.database import sync_url

        engine = sa.create_engine(sync_url(self.db_url))
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text(
                    "SELECT state, handed_at IS NOT NULL AS handed, count(*) FROM deliveries "
                    "WHERE warning_id = :w GROUP BY state, handed_at IS NOT NULL"), {"w": wid}).all()
        finally:
            engine.dispose()
        out: Counter[str] = Counter()
        for state, handed, n in rows:
            out[state] += n
            if state == "sending" and handed:
                out["sending, handed"] += n
        return dict(out)


def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


# -- the two fan-outs --

def baseline(result: Result, sim: Simulator, dep: Deployment, procs: list[Process]) -> float | None:
    """The same fan-out, nothing killed: warning accepted → every person's SMS at the simulator."""
    n = dep.n
    sim.new_phase(dep.inbound_url)
    warnd = dep.serve(procs)
    dep.ready(warnd)
    accepted = time.time()  # the POST: the dispatcher may send before the answer is back
    dep.post("bench-crash-baseline")
    wait_until(lambda: len(Received(sim.lines()).first) >= n, FANOUT_SECONDS, 0.05,
               f"baseline: every one of {n} people's SMS at the simulator")
    got = Received(sim.lines())
    last = max(got.first.values())
    result.add("without kill: POST → first SMS", min(got.first.values()) - accepted, "s")
    result.add("without kill: POST → last person's SMS", last - accepted, "s", f"{n} people")
    dups = sum(1 for c in got.per_number.values() if c > 1)
    if dups or len(got.first) != n:
        result.ok = False
        result.notes.append(f"baseline: {dups} people with more than one SMS, {n - len(got.first)} without")
    warnd.stop()
    return last - accepted


def crashed(result: Result, sim: Simulator, dep: Deployment, procs: list[Process], replies: int,
            outage: float) -> float | None:
    n = dep.n
    early = max(1, replies // 10)
    sim.new_phase(dep.inbound_url)
    first_life = dep.serve(procs)
    dep.ready(first_life)
    accepted = time.time()
    wid = dep.post("bench-crash-kill")
    result.add("warning POST answered", time.time() - accepted, "s", f"{n} SMS planned")

    # 1. a few replies while warnd is up (applied by the webhook)
    wait_until(lambda: sim.stats()["messages"] >= max(early, n // 6), FANOUT_SECONDS, 0.01, f"{n // 6} SMS out")
    early_numbers = Received(sim.lines()).in_order()[:early]
    early_times = reply_now(sim, early_numbers, first_life)
    if any(Received(sim.lines()).replies[x].get("http_status") != 200 for x in early_numbers):
        result.ok = False
        result.notes.append("a reply sent while warnd was up was not taken by its webhook")

    # 2. the kill
    wait_until(lambda: sim.stats()["messages"] >= n // 3, FANOUT_SECONDS, 0.01, f"{n // 3} SMS out")
    t_kill = time.time()
    first_life.stop(sig=signal.SIGKILL)
    at_kill = sim.stats()["messages"]
    rest = dep.at_rest(wid)
    result.add("SMS at the simulator before the kill", at_kill, "",
               f"of {n}; SIGKILL {t_kill - accepted:.1f} s after the POST")
    result.add("rows claimed at the kill", rest.get("sending", 0), "",
               f"{rest.get('sending, handed', 0)} of them handed to Twilio, outcome unknown")
    if sum(v for k, v in rest.items() if k != "sending, handed") != n:
        result.ok = False
        result.notes.append(f"the kill left {rest} rows, not {n}: the POST's plan was not durable")
    if at_kill >= n:
        result.ok = False
        result.notes.append("the fan-out was over before the kill: nothing was recovered (lower --rate)")

    # 3. replies during the outage
    time.sleep(max(0.0, t_kill + 1.0 - time.time()))
    got = Received(sim.lines())
    outage_numbers = [x for x in got.in_order() if x not in early_numbers][:replies]
    if len(outage_numbers) < replies:
        raise BenchError(f"only {len(outage_numbers)} people had their SMS at the kill, {replies} should reply")
    outage_times = reply_now(sim, outage_numbers, None)
    lost_posts = [x for x in outage_numbers if Received(sim.lines()).replies[x].get("http_status") is None]
    result.add("replies during the outage", len(outage_numbers), "",
               f"{len(lost_posts)} of their webhook POSTs failed (warnd down)")
    if len(lost_posts) != len(outage_numbers):
        result.ok = False
        result.notes.append("a reply sent during the outage reached a webhook: warnd was not down")

    # 4. the restart
    time.sleep(max(0.0, t_kill + outage - time.time()))
    t_restart = time.time()
    second_life = dep.serve(procs)
    dep.ready(second_life)
    result.add("outage", t_restart - t_kill, "s", "SIGKILL → the new process started")
    result.add("restart → warnd ready", time.time() - t_restart, "s", "GET /readyz answers 200")

    # 5. recovery
    numbers = {phone(i): grid(i) for i in range(n)}
    answered = {**early_times, **outage_times}

    def settled() -> bool:
        if len(Received(sim.lines()).first) < n:
            return False
        if any(dep.states(wid).get(s, 0) for s in OPEN_STATES):
            return False
        grids = dep.grids(wid)
        return all(grids[numbers[x]]["state"] == "confirmed" for x in answered)

    try:
        wait_until(settled, SETTLE_SECONDS, 0.2, "after the restart: every SMS out, nothing open, every "
                   "reply applied")
    except BenchError as exc:
        result.ok = False
        result.notes.append(str(exc))
    t_settled = time.time()
    try:  # every status callback the simulator still had to post, posted: what is `sent` now stays so
        wait_until(lambda: sim.stats()["pending"] == 0, 30, 0.1, "the simulator's last callbacks")
    except BenchError as exc:
        result.notes.append(str(exc))
    got = Received(sim.lines())
    states = dep.states(wid)
    grids = dep.grids(wid)
    listed = sim.inbound_times()
    for name, value in sorted(dep.metrics().items()):
        result.add(f"restarted node: {name}", value)
    second_life.stop()

    after = sorted(t for t in (m["created_at"] for m in got.sms) if t >= t_restart)
    first_after = after[0] - t_restart if after else None
    last_first = max(got.first.values()) if got.first else None
    result.add("restart → first SMS", first_after, "s", "the first message the simulator took after it")
    last_after = None if last_first is None else last_first - t_restart
    result.add("restart → last person's first SMS", last_after, "s",
               f"{sum(1 for t in got.first.values() if t >= t_restart)} people got their first SMS after the "
               f"restart; target ≤ {TARGET_SECONDS:g} s")
    result.target("restart → last person's first SMS", None if last_after is None else last_after <= TARGET_SECONDS)
    dups = {x: c for x, c in got.per_number.items() if c > 1}
    lost = n - len(got.first)
    result.add("duplicates", len(dups), "people", "with more than one warning SMS; must be 0")
    result.add("lost", lost, "people", "without a warning SMS; must be 0")
    if dups or lost:
        result.ok = False
        result.notes.append(f"{len(dups)} people got the warning more than once "
                            f"({dict(list(dups.items())[:5])}), {lost} never got it")
    if got.other:
        result.notes.append(f"{len(got.other)} other SMS (not the warning) were sent during the run")
    if any(states.get(s, 0) for s in OPEN_STATES) or sum(states.values()) != n:
        result.ok = False
        result.notes.append(f"deliveries at the end: {states}")
    result.add("deliveries at the end", ", ".join(f"{k} {v}" for k, v in sorted(states.items())), "",
               "after the simulator's last callback: `sent` ones were delivered, their callback came while "
               "warnd was down (the reconcile sweep settles them, twilio.reconcile_after_seconds later)")

    for label, times in (("before the kill", early_times), ("during the outage", outage_times)):
        applied, errors, vs_twilio, wrong = 0, [], [], []
        for number, (t_a, t_b) in times.items():
            g = grids[numbers[number]]
            at = _ts(g.get("confirmed_at"))
            if g["state"] != "confirmed" or at is None or g.get("channel") != "sms":
                wrong.append(f"{number}: {g['state']} {g.get('channel')}")
                continue
            applied += 1
            errors.append(max(abs(at - t_a), abs(at - t_b)))
            if number in listed:
                vs_twilio.append(abs(at - listed[number]))
            # Twilio's whole seconds may put it up to 1 s before the real time, never after
            if not t_a - 1.0 - REPLY_SLACK <= at <= t_b + REPLY_SLACK or (times is outage_times and at >= t_restart):
                wrong.append(f"{number}: confirmed at {g['confirmed_at']}, replied between {t_a:.3f} and {t_b:.3f}")
            if g.get("late"):
                wrong.append(f"{number}: judged late")
        result.add(f"replies {label} applied", applied, f"of {len(times)}", "each confirms its grid (channel sms)")
        worst = max(errors) if errors else None
        width = max((t_b - t_a for t_a, t_b in times.values()), default=0.0)
        result.add(f"replies {label}: max |confirmed_at − reply time|", worst, "s",
                   f"an upper bound: the real time is bracketed to {width:.2f} s by the driver, and Twilio's "
                   f"list gives whole seconds (confirmed_at up to 1 s before the real time)")
        result.add(f"replies {label}: max |confirmed_at − Twilio's time|", max(vs_twilio) if vs_twilio else None,
                   "s", "against the reply's DateSent in Twilio's Messages list: < 1 s for those fetched from it "
                   "(the outage's); the webhook's are stamped by warnd's clock on arrival")
        # fetched from Twilio's list (the outage's): its time exactly; the webhook's: warnd's clock on arrival
        off = times is outage_times and max(vs_twilio, default=0) >= 1.0
        if wrong or applied != len(times) or len(vs_twilio) != len(times) or off:
            result.ok = False
            result.notes.append(f"replies {label}: {applied} of {len(times)} applied, {len(vs_twilio)} listed at "
                                f"Twilio, worst error {worst}; {wrong[:5]}")
    result.add("restart → all settled", t_settled - t_restart, "s", "every SMS out, nothing open, replies applied")
    return None if last_first is None else last_first - accepted


def reply_now(sim: Simulator, numbers: list[str], alive: Process | None) -> dict[str, tuple[float, float]]:
    """The numbers reply "1" now; (earliest, latest) real time of each reply: from before the
    /_control call to when its line (after the webhook POST) is in the record file."""
    t_a = time.time()
    sim.control({"reply_now": {x: "1" for x in numbers}})

    def recorded() -> bool:
        if alive is not None and not alive.alive():
            raise BenchError(f"{alive.name} died:\n{alive.log_tail()}")
        return all(x in Received(sim.lines()).replies for x in numbers)
    wait_until(recorded, 30, 0.005, f"{len(numbers)} replies in the simulator's record")
    t_b = time.time()
    return {x: (t_a, t_b) for x in numbers}


def run_benchmark(db: str | None = None, count: int = DEFAULT_COUNT, replies: int = DEFAULT_REPLIES,
                  outage: float = DEFAULT_OUTAGE, concurrency: int = CONCURRENCY, rate: float = RATE,
                  lookup_after: float | None = None) -> Result:
    result = Result(NAME)
    result.add("people", count, "", f"one grid each, one red warning SMS each; sms.rate_per_second {rate:g}, "
               f"concurrency {concurrency}")
    if lookup_after is not None:
        result.add("twilio.lookup_uncertain_after_seconds", lookup_after, "s", "set for this run (default 10)")
    if count < 6 * (replies + max(1, replies // 10)):
        result.ok = False
        result.error = f"--count {count} is too small for {replies} replies (needs 6 × replies)"
        return result
    t0 = time.monotonic()
    try:
        with workdir("warnd-bench-crash-") as wd, processes() as procs:
            sim = Simulator(procs, wd)
            with scratch_database(db, _mk(wd / "baseline")) as url_a:
                result.add("database", url_a.split(":", 1)[0], "", "fresh for each fan-out")
                dep_a = Deployment(wd, "baseline", url_a, sim, count, concurrency, rate, lookup_after)
                without = baseline(result, sim, dep_a, procs)
            with scratch_database(db, _mk(wd / "kill")) as url_b:
                dep_b = Deployment(wd, "kill", url_b, sim, count, concurrency, rate, lookup_after)
                with_kill = crashed(result, sim, dep_b, procs, replies, outage)
            result.compare("POST → last person's first SMS, with the kill ÷ without",
                           with_kill / without if with_kill and without else None,
                           "×", f"the outage ({outage:g} s) and the restart included")
            stats = sim.stats()
            if stats.get("crashed"):
                result.ok = False
                result.notes.append(f"the simulator's timelines raised {stats['crashed']} times")
    except BenchError as exc:
        result.ok = False
        result.error = str(exc)
    result.add("total wall time", time.monotonic() - t0, "s", "setup of both databases included")
    return result


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def run(db: str | None = None) -> Result:
    """The entry point bench.run_all calls: the default size."""
    return run_benchmark(db)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.crash_recovery", description=__doc__.split("\n\n")[0])
    add_cli(parser, DEFAULT_COUNT)
    parser.add_argument("--replies", type=int, default=DEFAULT_REPLIES,
                        help=f"people who reply during the outage ({DEFAULT_REPLIES})")
    parser.add_argument("--outage", type=float, default=DEFAULT_OUTAGE,
                        help=f"seconds from the kill to the restart ({DEFAULT_OUTAGE:g})")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY,
                        help=f"sms.concurrency and twilio.connection_limit ({CONCURRENCY})")
    parser.add_argument("--rate", type=float, default=RATE, help=f"sms.rate_per_second ({RATE:g})")
    parser.add_argument("--lookup-after", type=float, default=None,
                        help="twilio.lookup_uncertain_after_seconds (default: warnd's, 10)")
    args = parser.parse_args(argv)
    if args.count < 1 or args.replies < 1 or args.outage < 1.5 or args.concurrency < 1 or args.rate <= 0:
        parser.error("--count, --replies, --concurrency, --rate must be positive, --outage at least 1.5 s")
    return finish(run_benchmark(args.db, args.count, args.replies, args.outage, args.concurrency, args.rate,
                                args.lookup_after), args.json)


if __name__ == "__main__":
    sys.exit(main())
