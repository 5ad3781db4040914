"""A province (issue 16): import a province's directory, plan a province-wide red warning.

    python -m bench.province [--grids 100000] [--households 1000000] [--people 300000]
                             [--counties 100] [--townships 12] [--villages 20]
                             [--db postgresql://postgres@127.0.0.1:5432/test] [--json out.json] [--profile P]

Everything as an operator does it, with the `warnd` command, each step its own process:

1. A synthetic province is written as CSV files (regions, people, households,
   speakers): province 42, 8 counties per prefecture, each county 12 townships
   (`…100`–), each township 20 villages (`…200`–), the grids spread over the
   villages (4–5 each at full size, 3 digits after the village code). People: two
   duty officers per county and per township (each other's backup), a head per
   village, one grid responsible person per grid (backed up by the village head),
   and liaisons in the grids for the rest. Households: 10 per grid, 8 % vulnerable,
   70 % with a mobile, 10 % a landline, 20 % none. One loudspeaker per grid.
2. `warnd db upgrade`, then `warnd directory import` of the four files, timed, its
   peak RSS read from its rusage (ru_maxrss) when it exits. Targets ≤ 5 min and
   ≤ 500 MiB (the issue's "warnd's RSS ≤ 500 MB throughout" covers this process too).
3. `warnd serve` on that database, with SMS and voice (the Twilio simulator, in
   its own process) and speakers (warnd's own mosquitto) enabled but throttled to
   one send a second per channel: planning is measured, not sending. Routing for
   red: SMS to grid responsible persons and liaisons, a call to the responsible
   person, every grid's speaker — about 4.7 deliveries per grid. The red ladder's
   three rungs are 30–50 minutes out, so nothing escalates during the run.
4. One red CAP warning naming every county is POSTed; the time until the API
   answers is the figure (target ≤ 10 s). The database must then hold one open
   requirement per grid, ≥ 3 deliveries per grid and the ladders (3 rungs per
   requirement). warnd serve's RSS is sampled every 50 ms from its start to the end
   (peak ≤ 500 MiB, VmHWM); memory per open requirement is (RSS once the POST was
   answered − RSS just before it) ÷ requirements.

Escalation lag with 100,000 open requirements is `bench.escalation_lag`'s figure
(it plans 100,000 rungs due over a minute); it is not measured again here.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from bench.common import (
    LOOPBACK,
    BenchError,
    Process,
    Result,
    cap_alert,
    cpu_seconds,
    finish,
    free_port,
    http,
    peak_rss_mib,
    processes,
    rss_mib,
    run as command,
    scratch_database,
    tool,
    workdir,
)

NAME = "province"
DEFAULT_GRIDS = 100_000
DEFAULT_HOUSEHOLDS = 1_000_000
DEFAULT_PEOPLE = 300_000
# bench.run_all --smoke: every step once on a few hundred grids, correctness only
SMOKE = {"grids": 300, "households": 3_000, "people": 900, "counties": 2, "townships": 3, "villages": 5}
COUNTIES, TOWNSHIPS, VILLAGES = 100, 12, 20  # per province, per county, per township
TARGET_IMPORT = 300.0  # s
TARGET_POST = 10.0  # s
TARGET_RSS = 500.0  # MiB, every warnd process, throughout
IMPORT_SECONDS = 1200.0  # bound on the import (a failing run still ends)
POST_SECONDS = 300.0
SAMPLE_SECONDS = 0.05
SID, TOKEN, FROM = "AC" + "d" * 32, "bench-province-auth-token", "+15005550006"
DEPARTMENT = "bench"
XML = "application/cap+xml"
# sends per second per channel: the dispatcher runs but hardly sends. Not slower: a sender waiting
# for its next cell holds up SIGTERM that long (the dispatcher waits for its senders).
SLOW = 1.0
SYLLABLES = "青石桐梓柳塘枫林杨湾河山桥岭溪港坪畈冲湖岗店集寨铺口源洲坝台畔垸"
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "建国海燕志强丽华德明秀英永福春梅小红大山桂兰长青国庆玉珍立新文静敏军伟芳娟磊洋勇艳杰涛明超霞平刚桂英华兰"


@dataclass
class Layout:
    """What was written: counts per kind and the county codes (the warning's area)."""

    counties: list[str] = field(default_factory=list)
    regions: int = 0
    grids: int = 0
    people: int = 0
    households: int = 0
    speakers: int = 0
    files: list[Path] = field(default_factory=list)


def _place(rng: random.Random, suffix: str) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(2)) + suffix


def _person(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


def write_province(out: Path, grids: int, households: int, people: int, counties: int = COUNTIES,
                   townships: int = TOWNSHIPS, villages: int = VILLAGES, seed: int = 16) -> Layout:
    """The directory as four CSV files in `out` (the import's input), made up but shaped like one."""
    rng = random.Random(seed)
    n_villages = counties * townships * villages
    if grids < n_villages:
        raise BenchError(f"{grids} grids for {n_villages} villages: every village needs a grid")
    fixed = 2 * counties + 2 * counties * townships + n_villages + grids
    if people < fixed:
        raise BenchError(f"{people} people: this layout needs at least {fixed} (duty officers, heads, one per grid)")
    lay = Layout()
    liaisons, extra = divmod(people - fixed, grids)  # per grid, and the first `extra` grids get one more
    homes, extra_homes = divmod(households, grids)
    files = {k: open(out / f"{k}.csv", "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed below
             for k in ("regions", "people", "households", "speakers")}
    try:
        w = {k: csv.writer(f) for k, f in files.items()}
        w["regions"].writerow(["code", "name", "parent"])
        w["people"].writerow(["id", "name", "region", "roles", "phone", "backup"])
        w["households"].writerow(["id", "grid", "address", "phone", "vulnerable"])
        w["speakers"].writerow(["id", "grid"])
        w["regions"].writerow(["42", "示范省", ""])
        phone_seq = iter(range(10**8))
        g_index = 0

        def add_person(pid: str, region: str, role: str, backup: str = "") -> None:
            w["people"].writerow([pid, _person(rng), region, role, f"139{next(phone_seq):08d}", backup])
            lay.people += 1

        for c in range(counties):
            prefecture = f"42{c // 8 + 1:02d}"
            if c % 8 == 0:
                w["regions"].writerow([prefecture, _place(rng, "市"), "42"])
            county = f"{prefecture}{c % 8 + 2:02d}"
            lay.counties.append(county)
            w["regions"].writerow([county, _place(rng, "县"), prefecture])
            add_person(f"cd-{county}-1", county, "county_duty", f"cd-{county}-2")
            add_person(f"cd-{county}-2", county, "county_duty", f"cd-{county}-1")
            for t in range(townships):
                township = f"{county}{100 + t:03d}"
                w["regions"].writerow([township, _place(rng, "镇"), county])
                add_person(f"td-{township}-1", township, "township_duty", f"td-{township}-2")
                add_person(f"td-{township}-2", township, "township_duty", f"td-{township}-1")
                for v in range(villages):
                    village = f"{township}{200 + v:03d}"
                    vname = _place(rng, "村")
                    w["regions"].writerow([village, vname, township])
                    head = f"vh-{village}"
                    add_person(head, village, "village_head")
                    v_index = (c * townships + t) * villages + v
                    here = grids // n_villages + (v_index < grids % n_villages)
                    for g in range(here):
                        grid = f"{village}{g + 1:03d}"
                        w["regions"].writerow([grid, f"{vname}第{g + 1}网格", village])
                        lay.grids += 1
                        add_person(f"gr-{grid}", grid, "grid_responsible", head)
                        for k in range(liaisons + (g_index < extra)):
                            add_person(f"li-{grid}-{k}", grid, "liaison", f"gr-{grid}")
                        w["speakers"].writerow([f"spk-{grid}", grid])
                        lay.speakers += 1
                        for h in range(homes + (g_index < extra_homes)):
                            roll = rng.random()
                            n = lay.households
                            phone = (f"186{n:08d}" if roll < 0.7 else f"0713-{2000000 + n % 7000000:07d}"
                                     if roll < 0.8 else "")
                            vulnerable = "true" if rng.random() < 0.08 else ""
                            w["households"].writerow([f"hh-{grid}-{h}", grid, f"{vname}{g + 1}组{h + 1}号",
                                                      phone, vulnerable])
                            lay.households += 1
                        g_index += 1
        lay.regions = 1 + (counties + 7) // 8 + counties * (1 + townships * (1 + villages)) + lay.grids
    finally:
        for f in files.values():
            f.close()
    lay.files = [out / f"{k}.csv" for k in ("regions", "people", "households", "speakers")]
    return lay


def config_json(db_url: str, port: int, twilio_url: str, mqtt_port: int) -> str:
    slow = {"enabled": True, "rate_per_second": SLOW, "concurrency": 1}
    return json.dumps({
        "database_url": db_url, "host": LOOPBACK, "port": port, "node_id": f"bench-province-{port}",
        "public_base_url": f"http://{LOOPBACK}:{port}", "log_level": "WARNING",
        "approval": {"green_channel": [DEPARTMENT]},  # planning is measured, not the 签发 step
        "twilio": {"account_sid": SID, "auth_token": TOKEN, "api_base_url": twilio_url, "from_number": FROM,
                   "catch_up_hours": 0},
        "sms": slow, "voice": slow, "speaker": slow, "webhook": {"enabled": False},
        "mqtt": {"embedded_port": mqtt_port},  # warnd starts its own mosquitto there
        "routing": [{"levels": ["red"], "channels": ["sms"], "roles": ["grid_responsible", "liaison"]},
                    {"levels": ["red"], "channels": ["voice"], "roles": ["grid_responsible"]},
                    {"levels": ["red"], "channels": ["speaker"]}],
        # the default red ladder's rungs, later: nothing escalates while the run lasts
        "ladders": {"red": [{"after_minutes": 30, "action": "notify", "to": ["backup", "superior"],
                             "not_woken": True, "ask_door": True},
                            {"after_minutes": 40, "action": "door_to_door", "call_households": True},
                            {"after_minutes": 50, "action": "alarm"}]},
    }, ensure_ascii=False, indent=2) + "\n"


# -- measuring processes --

def timed_command(argv: list[str], log: Path, timeout: float) -> tuple[float, float | None, str]:
    """Run a command to completion: (wall seconds, peak RSS in MiB from its rusage, output)."""
    with open(log, "wb") as out:
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        while True:  # wait4, not wait: the rusage of this child alone
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > timeout:
                proc.kill()
                proc.wait(10)
                raise BenchError(f"{' '.join(argv[:3])}… did not finish in {timeout:g}s")
            time.sleep(0.05)
        wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(argv[:3])}… failed ({proc.returncode}):\n{text[-2000:]}")
    return wall, usage.ru_maxrss / 1024, text  # ru_maxrss: KiB on Linux


class Sampler:
    """VmRSS of a process every SAMPLE_SECONDS, in a thread, until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_mib(self.pid)
            if value is not None:
                self.samples.append((time.monotonic(), value))
            self._stop.wait(SAMPLE_SECONDS)

    def peak(self, since: float = 0.0) -> float | None:
        return max((v for t, v in self.samples if t >= since), default=None)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def counts_in_db(db_url: str, wid: int) -> dict[str, int]:
    """What the POST left in the database, read directly (SQLite WAL / PostgreSQL: beside warnd)."""
    from warnd.store.database import sync_url

    engine = sa.create_engine(sync_url(db_url))
    one = {"w": wid}
    try:
        with engine.connect() as conn:
            def scalar(sql: str) -> int:
                return int(conn.execute(sa.text(sql), one).scalar() or 0)
            out = {"requirements": scalar(
                       "SELECT count(*) FROM confirmations WHERE warning_id = :w AND state = 'open'"),
                   "rungs": scalar("SELECT count(*) FROM rungs WHERE warning_id = :w AND state = 'pending'"),
                   "deliveries": scalar("SELECT count(*) FROM deliveries WHERE warning_id = :w"),
                   "grids with ≥ 3 deliveries": scalar(
                       "SELECT count(*) FROM (SELECT grid FROM deliveries WHERE warning_id = :w AND grid IS NOT NULL "
                       "GROUP BY grid HAVING count(*) >= 3) AS g")}
            for channel, n in conn.execute(sa.text("SELECT channel, count(*) FROM deliveries WHERE warning_id = :w "
                                                   "GROUP BY channel ORDER BY channel"), one):
                out[f"deliveries {channel}"] = int(n)
    finally:
        engine.dispose()
    return out


# -- the run --

def run_benchmark(db: str | None = None, grids: int = DEFAULT_GRIDS, households: int = DEFAULT_HOUSEHOLDS,
                  people: int = DEFAULT_PEOPLE, counties: int = COUNTIES, townships: int = TOWNSHIPS,
                  villages: int = VILLAGES, profile: Path | None = None) -> Result:
    result = Result(NAME)
    t0 = time.monotonic()
    try:
        with workdir("warnd-bench-province-") as wd, processes() as procs, scratch_database(db, wd) as db_url:
            result.add("database", db_url.split(":", 1)[0])
            _run(result, wd, procs, db_url, grids, households, people, counties, townships, villages, profile)
    except BenchError as exc:
        result.ok = False
        result.error = str(exc)
    result.add("total wall time", time.monotonic() - t0, "s", "writing the files and every step included")
    return result


def _run(result: Result, wd: Path, procs: list[Process], db_url: str, grids: int, households: int, people: int,
         counties: int, townships: int, villages: int, profile: Path | None) -> None:
    t = time.monotonic()
    lay = write_province(wd, grids, households, people, counties, townships, villages)
    result.add("directory", f"{lay.regions:,} regions ({len(lay.counties)} counties, {lay.grids:,} grids), "
               f"{lay.people:,} people, {lay.households:,} households, {lay.speakers:,} speakers", "",
               f"CSV, {sum(f.stat().st_size for f in lay.files) / 2**20:.0f} MiB, written in "
               f"{time.monotonic() - t:.1f} s")
    warnd = tool("warnd")
    sim_port, port = free_port(), free_port()
    api = f"http://{LOOPBACK}:{port}"
    cfg = wd / "warnd.yaml"
    cfg.write_text(config_json(db_url, port, f"http://{LOOPBACK}:{sim_port}", free_port()), encoding="utf-8")
    command([warnd, "db", "upgrade", "--config", str(cfg)], timeout=120)

    argv = [warnd, "directory", "import", "--config", str(cfg), *map(str, lay.files)]
    if profile is not None:  # py-spy runs the import: its wall time and RSS are then py-spy's too
        argv = [tool("py-spy"), "record", "--format", "raw", "--rate", "50", "--output",
                str(profile.with_suffix(".import.txt")), "--", *argv]
        result.notes.append(f"py-spy profiles (collapsed stacks): {profile.with_suffix('.import.txt')}, "
                            f"{profile.with_suffix('.post.txt')}")
    wall, peak, out = timed_command(argv, wd / "import.log", IMPORT_SECONDS)
    result.add("directory import", wall, "s", f"`warnd directory import` of the four files; target ≤ "
               f"{TARGET_IMPORT:g} s")
    result.target("directory import", wall <= TARGET_IMPORT)
    result.add("directory import peak RSS", peak, "MiB", f"ru_maxrss of the import process; target ≤ {TARGET_RSS:g}")
    result.target("directory import peak RSS", None if peak is None else peak <= TARGET_RSS)
    result.add("import rows/s", (lay.regions + lay.people + lay.households + lay.speakers) / wall, "/s")
    imported = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\.inserted: (\d+)$", out, re.M)}
    expected = {"regions": lay.regions, "people": lay.people, "households": lay.households, "speakers": lay.speakers}
    if {k: imported.get(k) for k in expected} != expected:
        result.ok = False
        result.notes.append(f"import inserted {imported}, expected {expected}")

    token = command([warnd, "token", "create", "--config", str(cfg), "--department", DEPARTMENT, "--admin"],
                    timeout=60).strip().splitlines()[-1].strip()
    sim = Process("twilio-sim", [sys.executable, "-m", "warnd.sim.twilio", "--host", LOOPBACK, "--port",
                                 str(sim_port), "--account-sid", SID, "--auth-token", TOKEN], wd)
    procs.append(sim)
    sim.wait_http(f"http://{LOOPBACK}:{sim_port}/_stats", 30)
    t = time.monotonic()
    server = Process("warnd", [warnd, "serve", "--config", str(cfg), "--no-migrate"], wd)
    procs.append(server)
    sampler = Sampler(server.pid)
    try:
        server.wait_http(f"{api}/readyz", 120)
        result.add("warnd serve ready", time.monotonic() - t, "s", "start → GET /readyz 200")
        _post(result, api, token, db_url, server, sampler, lay,
              profile.with_suffix(".post.txt") if profile is not None else None)
    finally:
        sampler.stop()
    result.add("warnd serve peak RSS", peak_rss_mib(server.pid), "MiB",
               f"VmHWM of the serve process, start to end; target ≤ {TARGET_RSS:g}")
    hwm = result.value("warnd serve peak RSS")
    result.target("warnd serve peak RSS", None if hwm is None else hwm <= TARGET_RSS)
    code = server.stop()
    if code not in (0, None):
        result.notes.append(f"warnd serve exited with {code}: {server.log_tail(5)}")
    result.add("escalation lag with 100,000 open", "see escalation_lag", "",
               "bench.escalation_lag plans 100,000 open requirements with rungs due over 60 s; target p99 ≤ 1 s")


def _post(result: Result, api: str, token: str, db_url: str, server: Process, sampler: Sampler, lay: Layout,
          profile: Path | None) -> None:
    body = cap_alert(f"bench-province-{uuid.uuid4().hex[:12]}", lay.counties)
    spy = None
    if profile is not None:  # every thread of warnd serve, idle ones too, from just before the POST
        spy = Process("py-spy", [tool("py-spy"), "record", "--pid", str(server.pid), "--format", "raw", "--rate",
                                 "100", "--threads", "--idle", "--output", str(profile)], profile.parent)
        time.sleep(1.0)  # py-spy attaches
    before = rss_mib(server.pid)
    result.add("warnd RSS before the POST", before, "MiB", "VmRSS, the node idle")
    cpu0, started = cpu_seconds(server.pid), time.monotonic()
    status, _, raw = http("POST", f"{api}/api/v1/warnings", body,
                          {"Authorization": f"Bearer {token}", "Content-Type": XML}, timeout=POST_SECONDS)
    answered = time.monotonic() - started
    cpu1 = cpu_seconds(server.pid)
    if spy is not None:
        spy.stop(30, signal.SIGINT)
    if status != 201:
        raise BenchError(f"POST /api/v1/warnings answered {status}: {raw[:500]!r}")
    warning = json.loads(raw)["warning"]
    after = rss_mib(server.pid)
    result.add("POST answered", answered, "s", f"a red warning naming {len(lay.counties)} counties, planned and "
               f"stored; target ≤ {TARGET_POST:g} s")
    result.target("POST answered", answered <= TARGET_POST)
    if cpu0 is not None and cpu1 is not None:
        result.add("warnd CPU for the POST", cpu1 - cpu0, "s", "all threads of the serve process")
    if str(warning.get("level")).lower() not in ("red", "4"):
        result.ok = False
        result.notes.append(f"the warning's level is {warning.get('level')!r}, not red")
    found = counts_in_db(db_url, warning["id"])
    for name, value in found.items():
        result.add(name, value, "", "in the database after the answer")
    n = lay.grids
    if found["requirements"] != n or found["rungs"] != 3 * n or found["deliveries"] < 3 * n \
            or found["grids with ≥ 3 deliveries"] != n:
        result.ok = False
        result.notes.append(f"expected {n:,} open requirements, {3 * n:,} pending rungs and ≥ 3 deliveries in each "
                            f"of the {n:,} grids; found {found}")
    result.add("warnd RSS after the POST", after, "MiB", "VmRSS once the answer was back")
    result.add("warnd RSS peak during the POST", sampler.peak(started), "MiB", f"sampled every {SAMPLE_SECONDS:g} s")
    if before is not None and after is not None and found["requirements"]:
        result.add("memory per open requirement", (after - before) * 1024 / found["requirements"], "KiB",
                   "(RSS after − before) ÷ requirements; the plan's deliveries and rungs included")


def run(db: str | None = None) -> Result:
    """The entry point bench.run_all calls: the default size."""
    return run_benchmark(db)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.province", description=__doc__.split("\n\n")[0])
    parser.add_argument("--grids", type=int, default=DEFAULT_GRIDS, help=f"grids ({DEFAULT_GRIDS})")
    parser.add_argument("--households", type=int, default=DEFAULT_HOUSEHOLDS,
                        help=f"households, spread evenly over the grids ({DEFAULT_HOUSEHOLDS})")
    parser.add_argument("--people", type=int, default=DEFAULT_PEOPLE, help=f"people ({DEFAULT_PEOPLE})")
    parser.add_argument("--counties", type=int, default=COUNTIES, help=f"counties ({COUNTIES})")
    parser.add_argument("--townships", type=int, default=TOWNSHIPS, help=f"townships per county ({TOWNSHIPS})")
    parser.add_argument("--villages", type=int, default=VILLAGES, help=f"villages per township ({VILLAGES})")
    parser.add_argument("--db", help="database: default a SQLite file in a temp dir; a postgresql:// URL on "
                        "loopback gets a fresh database, dropped afterwards")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--profile", type=Path, help="py-spy the import and warnd serve during the POST: collapsed "
                        "stacks in PROFILE.import.txt and PROFILE.post.txt (the import's figures then include py-spy)")
    args = parser.parse_args(argv)
    if min(args.grids, args.households, args.people, args.counties, args.townships, args.villages) < 1 \
            or args.counties > 8 * 99:
        parser.error("every count must be positive (and at most 792 counties)")
    return finish(run_benchmark(args.db, args.grids, args.households, args.people, args.counties, args.townships,
                                args.villages, args.profile.resolve() if args.profile else None), args.json)


if __name__ == "__main__":
    sys.exit(main())
