"""Chaos (issue 16): three `warnd serve` nodes on one PostgreSQL, with Mosquitto, the speaker,
Twilio and webhook simulators, all real processes. During a red fan-out and its ladder a
seeded, bounded sequence of faults is applied: `kill -9` of a node and its restart, a
PostgreSQL restart (`pg_ctl stop -m immediate`, then start), a Mosquitto restart, a webhook
sink outage (kill -9, restarted on the same port and record), and a Twilio 429 storm.

Then, once every wait has settled: nothing lost (every delivery final, every reply applied),
every rung fired at most once and none left due, duplicates only where the receiver
de-duplicates or where warnd recorded the send as uncertain (counted), every grid confirmed
or covered door to door, and warnd's delivered counts per channel equal to the simulators'.

CHAOS_SEED=<n> replays a run; the seed and every fault are printed.
"""
from __future__ import annotations

import json
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from chaos_support import (DEPARTMENT, FROM, SECRET, SID, TOKEN, Broker, Cluster, PrivatePostgres, Sink, Twilio,
                           Walker, duplicates, recovery_reported)
from factories import COUNTY, TOWNSHIP, VILLAGE, alert
from procs import Procs, free_port, until

from warnd.ingest.capxml import alert_to_xml

pytestmark = pytest.mark.slow

NODES = 3
GRIDS = 36
HOUSEHOLDS = 3  # a grid
SPEAKERS = 12  # one in each of the first grids
SUBSCRIBERS = 12
# the responsible people: who answers the warning, and how (the rest say nothing)
SMS_REPLIERS, PRESSERS = 12, 6
BACKUP_REPLIERS = 9  # of the silent grids' backups, who answer when the first rung asks them
# The ladder runs in seconds: the backup asked at 20 s, door to door at 40 s, an alarm at 60 s.
LADDER = {"red": [{"after_minutes": 1 / 3, "action": "notify", "to": ["backup"], "channels": ["sms", "voice"],
                   "not_woken": True},
                  {"after_minutes": 2 / 3, "action": "door_to_door", "assign": ["backup"], "list_channels": ["sms"]},
                  {"after_minutes": 1.0, "action": "alarm"}]}
# seconds from a call-list SMS to its walk: half the walkers are quick, half are still on
# their way when the alarm rung is due
WALK_AFTER = (3.0, 25.0)
SETTLE = 100.0  # seconds, after the last fault, for everything to end
FINAL = ("delivered", "cancelled")
PRESS_WITHIN = 8.0  # seconds from placing a call to its key press, at most (latency, ringing, answer)
OPEN_STATES = ("pending", "sending", "sent", "uncertain")


def grid(g: int) -> str:
    return f"{VILLAGE}{g:03d}"


def responsible_phone(g: int) -> str:
    return f"+86138{g:08d}"


def backup_phone(g: int) -> str:
    return f"+86139{g:08d}"


def directory() -> dict:
    regions = [{"code": COUNTY, "name": "示例县", "kind": "county"},
               {"code": TOWNSHIP, "name": "城关镇", "kind": "township", "parent": COUNTY},
               {"code": VILLAGE, "name": "河口村", "kind": "village", "parent": TOWNSHIP}]
    regions += [{"code": grid(g), "name": f"{g}组", "kind": "grid", "parent": VILLAGE} for g in range(GRIDS)]
    people = []
    for g in range(GRIDS):
        people += [{"id": f"r{g}", "name": f"网格员{g}", "region": grid(g), "roles": ["grid_responsible"],
                    "phone": responsible_phone(g), "backup": f"b{g}"},
                   {"id": f"b{g}", "name": f"信息员{g}", "region": grid(g), "roles": ["liaison"],
                    "phone": backup_phone(g)}]
    households = [{"id": f"h{g}-{k}", "grid": grid(g), "address": f"{g}组{k + 1}号", "vulnerable": k == 0}
                  for g in range(GRIDS) for k in range(HOUSEHOLDS)]
    speakers = [{"id": f"spk-{g:05d}", "grid": grid(g)} for g in range(SPEAKERS)]
    return {"regions": regions, "people": people, "households": households, "speakers": speakers}


def behaviours(rng: random.Random) -> tuple[dict, dict[str, str]]:
    """The Twilio simulator's people, drawn from the seed: who replies, who presses 1, whose
    backup answers; the counts are fixed, so the outcome does not depend on the seed."""
    order = list(range(GRIDS))
    rng.shuffle(order)
    numbers, kind = {}, {}
    for i, g in enumerate(order):
        if i < SMS_REPLIERS:
            numbers[responsible_phone(g)] = {"reply": {"after": [2, 15], "text": "1"}}
            kind[grid(g)] = "sms reply"
        elif i < SMS_REPLIERS + PRESSERS:
            numbers[responsible_phone(g)] = {"press": "1", "press_after": 1}
            kind[grid(g)] = "key press"
        elif i < SMS_REPLIERS + PRESSERS + BACKUP_REPLIERS:
            numbers[backup_phone(g)] = {"reply": {"after": [1, 6], "text": "1"}}
            kind[grid(g)] = "backup reply"
        else:
            kind[grid(g)] = "door to door"
    # a little latency on every request keeps a few sends in flight for a kill to catch
    return {"default": {"sms": "deliver", "call": "answer", "answer_after": 1, "hangup_after": 2},
            "numbers": numbers, "faults": {"latency": 0.5}}, kind


def settings(twilio_url: str, broker_url: str) -> dict:
    return {
        "log_level": "WARNING", "approval": {"green_channel": [DEPARTMENT]},
        "routing": [{"levels": ["red"], "channels": ["sms", "voice"], "roles": ["grid_responsible"]},
                    {"levels": ["red"], "channels": ["speaker"]}, {"levels": ["red"], "channels": ["webhook"]}],
        "ladders": LADDER,
        "twilio": {"account_sid": SID, "auth_token": TOKEN, "api_base_url": twilio_url, "from_number": FROM,
                   # lost callbacks (a node down) looked up within seconds, uncertain sends too
                   "reconcile_after_seconds": 4, "lookup_uncertain_after_seconds": 3},
        "sms": {"rate_per_second": 8, "concurrency": 8, "enabled": True},
        "voice": {"rate_per_second": 4, "concurrency": 8, "enabled": True,
                  "retry": {"max_attempts": 4, "base_seconds": 2, "max_seconds": 5}},
        "speaker": {"enabled": True},
        "mqtt": {"url": broker_url, "protocol": 5},
        "webhook": {"allow_private_urls": True, "retry": {"max_attempts": 12, "base_seconds": 1, "max_seconds": 4}},
        # a claim a live node could neither send nor hand back (the database down at that moment)
        # waits out its lease: 30 s here instead of 60, to keep the test short
        "dispatcher": {"poll_seconds": 0.2, "heartbeat_seconds": 1, "takeover_seconds": 4, "lease_seconds": 30},
        "sweeps": {"recover_seconds": 1, "reconcile_seconds": 2, "speaker_seconds": 2, "escalate_seconds": 0.3},
    }


# -- the faults --

PROCESS_FAULTS = ("kill_node", "pg_restart", "mqtt_restart")
PROVIDER_FAULTS = ("sink_outage", "twilio_429")
HOLD = {"kill_node": (2, 5), "pg_restart": (1, 3), "mqtt_restart": (1, 3), "sink_outage": (3, 8),
        "twilio_429": (3, 7)}  # seconds broken, drawn between these bounds
BUSY_WITHIN = 4.0  # seconds the first kill waits for a node with sends in flight
CHAOS_WITHIN = 120.0  # seconds after the warning: both tracks done (a bound, not a target)


@dataclass
class Fault:
    kind: str
    gap: float  # seconds after the previous fault of its track ended (the first: after the warning)
    hold: float
    node: int | None = None
    busiest: bool = False  # kill_node: the node with the most sends handed to a provider, if any
    in_flight: int | None = None  # busiest: how many it had
    began: float | None = None
    ended: float | None = None  # back: the service answers again (a node: ready)

    def describe(self) -> str:
        what = f"{self.kind}{'' if self.node is None else f' node {self.node}'}"
        if self.in_flight is not None:
            what += f" ({self.in_flight} sends in flight)"
        return f"{what} {self.began:.1f}–{self.ended:.1f}s"


def plan(rng: random.Random) -> tuple[list[Fault], list[Fault]]:
    """Two tracks that overlap. The processes, one after the other (a node cannot start while
    the database is down): a node kill in the fan-out, then in a seeded order another node
    kill, a PostgreSQL and a Mosquitto restart and one more of these. The providers: a sink
    outage, a 429 storm and one more of either. Order, gaps, outages and nodes are drawn from
    the seed; the tracks span the fan-out and the ladder's three rungs (about the first 60 s)."""
    def track(kinds: list[str], first: tuple[float, float], gaps: tuple[float, float],
              lead: str | None = None) -> list[Fault]:
        rng.shuffle(kinds)
        kinds = [lead, *kinds] if lead else kinds
        out = []
        for i, kind in enumerate(kinds):
            gap = rng.uniform(*(first if i == 0 else gaps))
            out.append(Fault(kind, round(gap, 1), round(rng.uniform(*HOLD[kind]), 1),
                             rng.randrange(NODES) if kind == "kill_node" else None))
        return out
    # the first fault kills a node with sends in flight, during the fan-out: what a crash
    # leaves uncertain is looked up at the provider, or re-sent where the receiver de-duplicates
    processes = track(["kill_node", "pg_restart", "mqtt_restart", rng.choice(PROCESS_FAULTS)], (0.5, 2), (2, 6),
                      lead="kill_node")
    processes[0].busiest = True
    providers = track(["sink_outage", "twilio_429", rng.choice(PROVIDER_FAULTS)], (3, 8), (6, 14))
    return processes, providers


class Chaos:
    """Plays the tracks side by side, one tick every 0.2 s; between ticks the walker walks."""

    def __init__(self, cluster: Cluster, pg: PrivatePostgres, broker: Broker, sink: Sink, twilio: Twilio,
                 walker: Walker, fleet, t0: float) -> None:  # noqa: ANN001 - procs.Proc
        self.cluster, self.pg, self.broker, self.sink = cluster, pg, broker, sink
        self.twilio, self.walker, self.fleet, self.t0 = twilio, walker, fleet, t0
        self.killed_nodes: set[str] = set()

    def now(self) -> float:
        return time.time() - self.t0

    def check_alive(self) -> None:
        died = self.cluster.died()
        assert died == [], "a node exited by itself:\n" + "\n".join(died)
        for name, proc in (("twilio", self.twilio.proc), ("speakers", self.fleet)):
            assert proc.poll() is None, f"{name} exited with {proc.returncode}\n{proc.tail()}"

    def run(self, *tracks: list[Fault]) -> None:
        players = [self._play(track) for track in tracks]
        waits = {p: next(p) for p in players}
        while waits:
            assert self.now() < CHAOS_WITHIN, f"the faults took longer than {CHAOS_WITHIN}s"
            for player, ready in list(waits.items()):
                if ready():
                    try:
                        waits[player] = next(player)
                    except StopIteration:
                        del waits[player]
            self.walker.step()
            self.check_alive()
            time.sleep(0.2)

    def _play(self, track: list[Fault]):  # noqa: ANN202 - a generator of conditions to wait for
        last = 0.0
        for f in track:
            yield lambda: self.now() >= last + f.gap
            if f.busiest:  # a moment with sends in flight (a bounded wait: at most BUSY_WITHIN)
                f.in_flight = 0
                yield lambda: self.now() >= last + f.gap + BUSY_WITHIN or self._pick_busiest(f)
            f.began = self.now()
            self._break(f)
            yield lambda: self.now() >= f.began + f.hold
            self._mend(f)
            if f.kind == "kill_node":
                node = self.cluster.nodes[f.node]
                yield lambda: self.cluster.ready(node)
            f.ended = last = self.now()

    def _pick_busiest(self, f: Fault) -> bool:
        busy = self.cluster.in_flight()
        if busy:
            f.node, f.in_flight = busy[0]
        return bool(busy)

    def _break(self, f: Fault) -> None:
        if f.kind == "kill_node":
            node = self.cluster.nodes[f.node]
            self.killed_nodes.add(node.name)
            self.cluster.kill9(node)
        elif f.kind == "pg_restart":
            self.pg.stop_immediate()
        elif f.kind == "mqtt_restart":
            self.broker.stop()
        elif f.kind == "sink_outage":
            self.sink.kill()
        elif f.kind == "twilio_429":
            self.twilio.storm(True)

    def _mend(self, f: Fault) -> None:
        if f.kind == "kill_node":
            self.cluster.start(self.cluster.nodes[f.node])  # ready is waited for by the track
        elif f.kind == "pg_restart":
            self.pg.start()
        elif f.kind == "mqtt_restart":
            self.broker.start()
        elif f.kind == "sink_outage":
            self.sink.start()
        elif f.kind == "twilio_429":
            self.twilio.storm(False)


# -- the test --

@pytest.fixture
def world(request, tmp_path):
    """The private PostgreSQL cluster and every process; the processes are stopped first (their
    output shown if the test failed), then the cluster they used."""
    failed_before = request.session.testsfailed
    pg = PrivatePostgres()
    group = Procs(tmp_path)
    yield pg, group
    group.close()
    if request.session.testsfailed > failed_before:
        print("\n" + group.tails() + "\n===== postgresql =====\n" + pg.log_tail(), file=sys.stderr)
    pg.close()


def test_chaos_three_nodes_lose_nothing_fire_each_rung_once_and_agree_with_the_simulators(world, tmp_path):
    pg, procs = world
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 10**6))
    print(f"\n[chaos] seed {seed} (CHAOS_SEED={seed} replays it)")
    rng = random.Random(seed)
    t_start = time.monotonic()

    pg.init()
    broker = Broker(procs, tmp_path)
    broker.start()
    sink = Sink(procs, tmp_path)
    sink.start()
    cluster = Cluster(procs, tmp_path, pg.url())
    twilio_people, kind_of = behaviours(rng)
    # replies go to node 0 (Twilio has one inbound URL); each node gets its own status callbacks
    ports = [free_port() for _ in range(NODES)]
    twilio = Twilio(procs, tmp_path, f"http://127.0.0.1:{ports[0]}/twilio/sms/inbound", twilio_people, seed)
    cluster.configure(ports, settings(twilio.url, broker.url))
    d = directory()
    d["subscribers"] = [{"id": f"s{i}", "url": f"{sink.url}/s{i}", "secret": SECRET,
                         "format": "json" if i % 2 else "cap"} for i in range(SUBSCRIBERS)]
    cluster.prepare(d)
    (tmp_path / "speakers.json").write_text('{"*": {"ack_after": 0.5}}')
    fleet = procs.start("speakers", [sys.executable, "-m", "warnd.sim.speakers", "--broker", broker.url, "--count",
                                     str(SPEAKERS), "--behaviours", str(tmp_path / "speakers.json")])
    assert fleet.first_line(timeout=60) == f"ready {SPEAKERS}"
    for node in cluster.nodes:
        cluster.start(node)
    for node in cluster.nodes:
        cluster.wait_ready(node)
    t_setup = time.monotonic() - t_start

    # the red warning, through the API of one node
    now = datetime.now(timezone.utc).replace(microsecond=0)
    body = alert_to_xml(alert("CHAOS-1", codes=(VILLAGE,), sent=now, expires=now + timedelta(hours=1))).encode()
    response = cluster.api("POST", "/api/v1/warnings", body, {"Content-Type": "application/cap+xml"}, timeout=60)
    assert response.status == 201, (response.status, response.body[:2000])
    t0 = time.time()
    wid = response.json()["warning"]["id"]
    planned = {r.channel: r.n for r in cluster.sql(
        "SELECT channel, count(*) AS n FROM deliveries WHERE warning_id = :w GROUP BY channel", w=wid)}
    assert planned == {"sms": GRIDS, "voice": GRIDS, "speaker": SPEAKERS, "webhook": SUBSCRIBERS}, planned

    walker = Walker(cluster, twilio, WALK_AFTER)
    chaos = Chaos(cluster, pg, broker, sink, twilio, walker, fleet, t0)
    processes, providers = plan(rng)
    faults = processes + providers
    try:
        chaos.run(processes, providers)
    finally:
        print("[chaos] faults: " + "; ".join(f.describe() for f in sorted(faults, key=lambda f: f.began or 1e9)
                                             if f.ended is not None))
    t_chaos_end = chaos.now()

    # everything ends: no send open, no grid open, no rung left due, the simulators idle
    def settled() -> bool:
        walker.step()
        chaos.check_alive()
        try:
            left = cluster.sql(
                f"SELECT (SELECT count(*) FROM deliveries WHERE state IN {OPEN_STATES}) AS d,"
                " (SELECT count(*) FROM confirmations WHERE state = 'open') AS c,"
                " (SELECT count(*) FROM rungs WHERE state = 'pending' AND due_at <= now()) AS r")[0]
        except Exception:  # noqa: BLE001 - a moment the database is busy recovering: ask again
            return False
        return left.d == 0 and left.c == 0 and left.r == 0 and twilio.stats()["pending"] == 0
    try:
        until(settled, SETTLE, "every delivery final, every grid confirmed or covered, no rung due", interval=0.5)
    finally:
        t_settled = chaos.now()
    fleet.stop()
    fleet_summary = _last_json(fleet.stdout_path.read_text())
    sink_stats = sink.stats()

    outages = [(f.kind, None if f.node is None else cluster.nodes[f.node].name, t0 + f.began, t0 + f.ended)
               for f in faults if f.kind in ("kill_node", "pg_restart")]
    report = _check(cluster, twilio, sink, sink_stats, fleet_summary, wid, kind_of, outages)
    print(f"[chaos] setup {t_setup:.1f}s; chaos {t_chaos_end:.1f}s; settled {t_settled:.1f}s after the warning; "
          f"total {time.monotonic() - t_start:.1f}s")
    walks = Counter(walker.done.values())
    report.append(f"door to door: {len(walker.seen)} call lists, {walks['walked']} walked ({walker.marked} households "
                  f"marked told), {walks['inactive']} no longer needed (grid confirmed meanwhile)")
    for line in report:
        print("[chaos] " + line)


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


# -- the verdict --

def _check(cluster: Cluster, twilio: Twilio, sink: Sink, sink_stats: dict, fleet: dict, wid: int,
           kind_of: dict[str, str], outages: list[tuple[str, str | None, float, float]]) -> list[str]:
    rows = cluster.sql("SELECT id, channel, recipient_id, grid, purpose, state, provider_ref, last_code "
                       "FROM deliveries WHERE warning_id = :w", w=wid)
    grids = {r.grid: r for r in cluster.sql(
        "SELECT id, grid, state, channel, confirmed_by, not_woken_at FROM confirmations WHERE warning_id = :w", w=wid)}
    # what warnd itself counts: sends whose outcome a timeout left unknown, claims a kill left
    # behind (by fate), and uncertain sends it did not find at the provider and so sent again
    timed_out = Counter(r.channel for r in cluster.sql(
        "SELECT DISTINCT d.id, d.channel FROM deliveries d JOIN delivery_attempts a ON a.delivery_id = d.id "
        "WHERE a.outcome = 'uncertain'"))
    fates, sent_again = recovery_reported(cluster.tmp_path)
    report = [f"recovery as warnd reported it: dead claims {dict(fates)}; uncertain sends not found at the "
              f"provider, sent again {dict(sent_again)}; sends timed out uncertain {dict(timed_out)}"]

    # nothing lost: every send final, cancelled only for grids that were reached some other way
    by_state = Counter((r.channel, r.state) for r in rows)
    assert {s for _, s in by_state} <= set(FINAL), [(r.id, r.channel, r.state, r.last_code) for r in rows
                                                     if r.state not in FINAL]
    for r in rows:
        if r.state == "cancelled":
            assert r.grid in grids and grids[r.grid].state in ("confirmed", "covered"), r
    assert {g: q.state for g, q in grids.items() if q.state not in ("confirmed", "covered")} == {}
    assert len(grids) == GRIDS

    # every rung at most once, none left due; each fired rung's effects exactly once
    rungs = cluster.sql("SELECT confirmation_id, grid, ladder, step, action, state, fired_by FROM rungs "
                        "WHERE warning_id = :w", w=wid)
    assert duplicates([(r.confirmation_id, r.ladder, r.step) for r in rungs]) == {}
    assert [r for r in rungs if r.state == "pending"] == []
    fired = Counter((r.grid, r.action) for r in rungs if r.state == "fired")
    assert duplicates([(r.grid, r.recipient_id, r.channel, r.purpose) for r in rows]) == {}, "a send planned twice"
    for g, q in grids.items():
        notify = sum(1 for r in rows if r.grid == g and r.recipient_id.startswith("b") and r.purpose != "door_to_door")
        assert notify == 2 * fired[g, "notify"], (g, notify, fired[g, "notify"])  # the backup: SMS and call
        assert (q.not_woken_at is not None) == bool(fired[g, "notify"]), g
        door = sum(1 for r in rows if r.grid == g and r.purpose == "door_to_door")
        assert door == fired[g, "door_to_door"], (g, door)
    lists = Counter(r.grid for r in cluster.sql("SELECT grid FROM call_lists WHERE warning_id = :w", w=wid))
    alarms = Counter(r.grid for r in cluster.sql("SELECT grid FROM alarms WHERE warning_id = :w", w=wid))
    assert dict(lists) == {g: 1 for (g, a), n in fired.items() if a == "door_to_door"}
    assert dict(alarms) == {g: 1 for (g, a), n in fired.items() if a == "alarm"}
    firers = Counter(r.fired_by for r in rungs if r.state == "fired")
    report.append(f"rungs fired {sum(fired.values())} (notify {sum(n for (_, a), n in fired.items() if a == 'notify')},"
                  f" door {sum(lists.values())}, alarm {sum(alarms.values())}) by {dict(firers)}; "
                  f"skipped {sum(1 for r in rungs if r.state == 'skipped')}; none twice")

    # SMS: warnd's delivered = the simulator's distinct delivered (one message per delivery: its
    # confirmation link makes each body unique); a duplicate only of an uncertain send
    messages = twilio.lines("message")
    final_status = {x["sid"]: x["status"] for x in twilio.lines("message_status")}
    sms = [r for r in rows if r.channel == "sms"]
    sms_refs = {r.provider_ref: r for r in sms if r.state == "delivered"}
    assert all(final_status.get(ref) == "delivered" for ref in sms_refs), "warnd delivered what Twilio did not"
    groups: dict[tuple, list[str]] = {}
    for m in messages:
        groups.setdefault((m["to"], m["body"]), []).append(m["sid"])
    sms_dups = {k: len(v) - 1 for k, v in groups.items() if len(v) > 1}
    # a duplicate is allowed only as a send warnd counted as uncertain and sent again
    assert sum(sms_dups.values()) <= sent_again["sms"] + timed_out["sms"], (sms_dups, sent_again, timed_out)
    delivered_at_sim = {k for k, sids in groups.items() if any(final_status.get(s) == "delivered" for s in sids)}
    assert len(sms_refs) == len(delivered_at_sim), (len(sms_refs), len(delivered_at_sim))
    report.append(f"sms: {len(sms)} planned, {len(sms_refs)} delivered = {len(delivered_at_sim)} distinct at the "
                  f"simulator ({len(messages)} messages), {Counter(r.state for r in sms)}; duplicates "
                  f"{sum(sms_dups.values())} (warnd counted {sent_again['sms'] + timed_out['sms']} uncertain sends "
                  f"sent again)")

    # voice: one completed call per delivered call; extra calls only of uncertain sends
    calls = twilio.lines("call")
    call_status = {x["sid"]: x for x in twilio.lines("call_status")}
    voice = [r for r in rows if r.channel == "voice"]
    voice_refs = {r.provider_ref: r for r in voice if r.state == "delivered"}
    assert all(call_status.get(ref, {}).get("status") == "completed" for ref in voice_refs)
    completed = [c for c in calls if call_status.get(c["sid"], {}).get("status") == "completed"]
    extra = [c for c in completed if c["sid"] not in voice_refs]
    call_groups = Counter((c["to"], c["twiml"]) for c in completed)
    assert len(extra) <= sent_again["voice"] + timed_out["voice"], (len(extra), sent_again, timed_out)
    assert len(voice_refs) == len(call_groups), (len(voice_refs), len(call_groups))
    presses = [s for s in call_status.values() if s.get("digits")]
    applied = {r.provider_ref for r in cluster.sql("SELECT provider_ref FROM inbound WHERE channel = 'voice'")}
    placed_by = {r.provider_ref: str(r.node).split("/")[0] for r in cluster.sql(
        "SELECT d.provider_ref, a.node FROM deliveries d JOIN delivery_attempts a ON a.delivery_id = d.id "
        "WHERE d.channel = 'voice' AND a.attempt = d.attempts")}
    created = {c["sid"]: c["created_at"] for c in calls}
    # A key press is POSTed once, to the node that placed the call (Twilio does not retry it,
    # and its Calls API does not list digits): lost when that node, or the database, was down
    # then (the press comes about 3 s after the call is placed). Counted, not a failure.
    def down_then(sid: str) -> bool:
        at = created.get(sid, 0.0)
        return any(start <= at + PRESS_WITHIN and at <= end and (kind == "pg_restart" or node == placed_by.get(sid))
                   for kind, node, start, end in outages)
    lost_presses = [s["sid"] for s in presses if s["sid"] not in applied]
    assert [sid for sid in lost_presses if not down_then(sid)] == [], "a key press lost with its node and database up"
    report.append(f"voice: {len(voice)} planned, {len(voice_refs)} delivered = {len(call_groups)} distinct completed "
                  f"calls ({len(calls)} placed), {Counter(r.state for r in voice)}; duplicates {len(extra)}; "
                  f"key presses {len(presses)}, {len(lost_presses)} lost (their node or the database down)")

    # replies: each one Twilio logged is applied once; one that found node 0 down is caught up
    # from Twilio's message log when node 0 starts again
    replies = twilio.lines("reply")
    inbound_sms = Counter(r.provider_ref for r in cluster.sql("SELECT provider_ref FROM inbound WHERE channel = 'sms'"))
    missing = [(x["from_"], x["http_status"]) for x in replies if inbound_sms[x["sid"]] != 1]
    refused = [m for m in missing if m[1] is not None and m[1] >= 500]
    assert [m for m in missing if m not in refused] == [], f"replies Twilio logged but warnd never applied: {missing}"
    assert refused == [], f"replies warnd answered 5xx (database down) never applied: {refused}"
    report.append(f"replies {len(replies)}: {len(replies) - len(missing)} applied once each "
                  f"({sum(1 for x in replies if x['http_status'] is None)} found node 0 down, caught up at its start)"
)

    # webhooks: the sink's distinct ids = warnd's delivered; duplicates only of the same webhook-id
    records = sink.records()
    ids = Counter(r["id"] for r in records)
    hooks = [r for r in rows if r.channel == "webhook"]
    assert {f"msg_warnd_{r.id}" for r in hooks if r.state == "delivered"} == set(ids), (len(hooks), len(ids))
    hook_dups = sum(n - 1 for n in ids.values()) + sink.dropped_before + sink_stats["duplicates"]
    assert sink_stats["rejected"] == 0, sink_stats
    report.append(f"webhook: {len(hooks)} delivered = {len(ids)} distinct webhook-ids at the sink "
                  f"({sink.lives} lives); duplicates {hook_dups} (same webhook-id, de-duplicated by the receiver)")

    # speakers: each played once; a command received twice had the same message id (dropped)
    spk = [r for r in rows if r.channel == "speaker"]
    assert fleet["played"] == SPEAKERS == sum(1 for r in spk if r.state == "delivered"), fleet
    assert fleet["acks_lost"] == 0, fleet
    report.append(f"speaker: {len(spk)} delivered = {fleet['played']} played; duplicates {fleet['duplicates']} "
                  f"(same message id, dropped by the speaker)")

    how = Counter((kind_of[g], q.state) for g, q in grids.items())
    report.append(f"grids: {sum(1 for q in grids.values() if q.state == 'confirmed')} confirmed, "
                  f"{sum(1 for q in grids.values() if q.state == 'covered')} covered door to door; {dict(how)}")
    return report


# -- the bug the chaos test found: a reply answered 5xx was never applied --

def test_a_reply_refused_while_the_database_is_down_is_applied_later(world, tmp_path):
    pg, procs = world
    pg.init()
    port = free_port()
    phone = responsible_phone(0)
    twilio = Twilio(procs, tmp_path, f"http://127.0.0.1:{port}/twilio/sms/inbound", {}, 1)
    cluster = Cluster(procs, tmp_path, pg.url())
    cluster.configure([port], {
        "log_level": "WARNING", "approval": {"green_channel": [DEPARTMENT]}, "webhook": {"enabled": False},
        "routing": [{"levels": ["red"], "channels": ["sms"], "roles": ["grid_responsible"]}],
        "ladders": {"red": [{"after_minutes": 60, "action": "alarm"}]}, "allow_silent_ladders": True,
        "twilio": {"account_sid": SID, "auth_token": TOKEN, "api_base_url": twilio.url, "from_number": FROM},
        "sms": {"enabled": True, "rate_per_second": 10}, "sweeps": {"recover_seconds": 1, "reconcile_seconds": 2}})
    d = directory()
    cluster.prepare({"regions": d["regions"][:4], "people": d["people"][:2]})  # r0 and b0, its backup
    node = cluster.nodes[0]
    cluster.start(node)
    cluster.wait_ready(node)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    body = alert_to_xml(alert("CHAOS-DB", codes=(VILLAGE,), sent=now, expires=now + timedelta(hours=1))).encode()
    assert cluster.api("POST", "/api/v1/warnings", body, {"Content-Type": "application/cap+xml"}).status == 201
    until(lambda: any(x["status"] == "delivered" for x in twilio.lines("message_status")), 30, "the SMS delivered",
          alive=[node.proc, twilio.proc])

    pg.stop_immediate()
    twilio.reply_now(phone)  # the person answers "1" while warnd's database is down
    until(lambda: twilio.lines("reply"), 20, "the reply posted", alive=[twilio.proc])
    (refused,) = twilio.lines("reply")
    assert refused["http_status"] >= 500, refused  # warnd could not take it, and said so
    pg.start()
    until(lambda: cluster.ready(node), 30, "the node ready again", alive=[node.proc])

    def confirmed() -> bool:
        return cluster.sql("SELECT state FROM confirmations")[0].state == "confirmed"
    until(confirmed, 15, "the refused reply applied once the database is back", interval=0.5, alive=[node.proc])
