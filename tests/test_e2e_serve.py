"""End to end with real processes: `warnd serve` and the webhook sink, over real HTTP.

The sink runs as its own process (`python -m warnd.sim.webhook_sink`): it verifies
every Standard Webhooks signature, de-duplicates by webhook-id and appends one
flushed JSON line per unique message to a record file. warnd uses the system
clock, so CAP times are real UTC times. Waits are bounded polls for a condition.
"""
from __future__ import annotations

import json
import sqlite3
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from factories import COUNTY, GRIDS, TOWNSHIP, VILLAGE, alert
from procs import Proc, Procs, free_port, http, http_ok, run, until, warnd_command

from warnd.domain.model import MsgType, Reference
from warnd.ingest.capxml import alert_to_xml
from warnd_channels.webhook import new_secret

pytestmark = pytest.mark.slow

SECRET = new_secret()
SENDER = "dept@example.cn"  # the factories' sender
XML = "application/cap+xml"


@pytest.fixture
def procs(request, tmp_path):
    """Every process a test starts; all stopped afterwards, their output shown if the test failed."""
    failed_before = request.session.testsfailed
    group = Procs(tmp_path)
    yield group
    group.close()
    if request.session.testsfailed > failed_before:
        print("\n" + group.tails(), file=sys.stderr)


# -- the sink --

class Sink:
    def __init__(self, procs: Procs, tmp_path: Path) -> None:
        self.record = tmp_path / "sink.jsonl"
        self.proc = procs.start("sink", [sys.executable, "-m", "warnd.sim.webhook_sink", "--port", "0",
                                         "--secret", SECRET, "--record", str(self.record)])
        self.url = self.proc.first_line()
        assert self.url.startswith("http://127.0.0.1:"), self.url
        until(lambda: http_ok(self.url + "/_stats"), 20, "the sink to answer", alive=[self.proc])

    def stats(self) -> dict:
        return http("GET", self.url + "/_stats", timeout=10).json()

    def control(self, **settings: object) -> dict:
        response = http("POST", self.url + "/_control", json.dumps(settings).encode(),
                        {"Content-Type": "application/json"})
        assert response.status == 200, response.body
        return response.json()

    def records(self) -> list[dict]:
        """Unique messages in arrival order (the file is flushed per line; skip a torn last line)."""
        out = []
        for line in self.record.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        return out


# -- warnd --

class Warnd:
    """A config, a database, a directory, a token — and `warnd serve` processes using them."""

    def __init__(self, procs: Procs, tmp_path: Path, subscribers: list[dict], **config: object) -> None:
        self.procs = procs
        self.db_path = tmp_path / "warnd.db"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config_path = tmp_path / "warnd.yaml"
        self.config_path.write_text(yaml.safe_dump({
            "database_url": f"sqlite:///{self.db_path}", "port": self.port, "node_id": "e2e-node",
            "public_base_url": self.base, "log_level": "WARNING", "approval": {"green_channel": ["县气象局"]},
            **config}), encoding="utf-8")
        directory_path = tmp_path / "directory.yaml"
        directory_path.write_text(yaml.safe_dump(directory(subscribers), allow_unicode=True), encoding="utf-8")
        cfg = ["--config", str(self.config_path)]
        run([*warnd_command(), "db", "upgrade", *cfg])
        run([*warnd_command(), "directory", "import", *cfg, str(directory_path)], timeout=300)
        self.token = run([*warnd_command(), "token", "create", *cfg, "--department", "县气象局",
                          "--admin"]).strip().splitlines()[-1]
        self.proc: Proc | None = None
        self.lives = 0

    def serve(self) -> Proc:
        self.lives += 1
        self.proc = self.procs.start(f"warnd-{self.lives}", [*warnd_command(), "serve", "--config",
                                                             str(self.config_path)])
        until(lambda: http_ok(self.base + "/readyz"), 60, "warnd serve to be ready", alive=[self.proc])
        return self.proc

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def post(self, body: bytes) -> tuple[int, dict]:
        response = http("POST", self.base + "/api/v1/warnings", body,
                        {**self.auth(), "Content-Type": XML}, timeout=120)
        assert response.status in (200, 201), (response.status, response.body[:2000])
        return response.status, response.json()

    def warning(self, warning_id: int, deliveries: int = 500) -> dict:
        response = http("GET", f"{self.base}/api/v1/warnings/{warning_id}?deliveries={deliveries}",
                        headers=self.auth())
        assert response.status == 200, (response.status, response.body[:2000])
        return response.json()

    def states(self, warning_id: int) -> dict[str, int]:
        by_channel = self.warning(warning_id, deliveries=0)["deliveries_by_channel"]
        out: dict[str, int] = {}
        for by_state in by_channel.values():
            for state, n in by_state.items():
                out[state] = out.get(state, 0) + n
        return out


def directory(subscribers: list[dict]) -> dict:
    return {
        "regions": [{"code": COUNTY, "name": "示例县"},
                    {"code": TOWNSHIP, "name": "城关镇", "parent": COUNTY},
                    {"code": VILLAGE, "name": "河口村", "parent": TOWNSHIP},
                    {"code": GRIDS[0], "name": "一组", "parent": VILLAGE},
                    {"code": GRIDS[1], "name": "二组", "parent": VILLAGE}],
        "people": [{"id": "p1", "name": "张三", "region": GRIDS[0], "roles": ["grid_responsible"],
                    "phone": "+8613800000001"}],
        "subscribers": subscribers,
    }


def cap(identifier: str, *, msg_type: MsgType = MsgType.ALERT, refs: tuple[tuple[str, datetime], ...] = (),
        severity: str = "Extreme") -> tuple[bytes, datetime]:
    """CAP XML for a warning on the village, sent now (real UTC), expiring in six hours."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    references = tuple(Reference(SENDER, ident, sent.isoformat()) for ident, sent in refs)
    a = alert(identifier, severity=severity, msg_type=msg_type, codes=(VILLAGE,), sent=now,
              expires=now + timedelta(hours=6), references=references)
    return alert_to_xml(a).encode(), now


def msg_ids(warning: dict) -> dict[str, dict]:
    """webhook-id → delivery row, for every delivery of a warning."""
    return {f"msg_warnd_{d['id']}": d for d in warning["deliveries"]}


# -- the tests --

def test_cap_in_signed_webhook_out_update_and_cancel(procs, tmp_path):
    t_start = time.monotonic()
    sink = Sink(procs, tmp_path)
    warnd = Warnd(procs, tmp_path, [
        {"id": "a", "url": sink.url + "/a", "secret": SECRET, "format": "cap"},
        {"id": "b", "url": sink.url + "/b", "secret": SECRET, "format": "json"},
    ], webhook={"allow_private_urls": True}, dispatcher={"poll_seconds": 0.1})
    warnd.serve()
    alive = [warnd.proc, sink.proc]

    # /b is down and asks for a long pause: its copy of the alert stays pending, so the
    # update below finds something to supersede (and no retry is in flight at that moment).
    sink.control(path="/b", down_for=3600, retry_after=3600)

    # 1. the alert: out to /a, signed; /b's copy waits for a retry
    body, w1_sent = cap("E2E-W1")
    status, created = warnd.post(body)
    assert (status, created["created"]) == (201, True)
    w1 = created["warning"]["id"]

    def first_round() -> bool:
        rows = {d["recipient_id"]: d for d in warnd.warning(w1)["deliveries"]}
        return (rows.get("a", {}).get("state") == "delivered" and rows.get("b", {}).get("state") == "pending"
                and rows["b"]["attempts"] >= 1)
    until(first_round, 30, "the alert delivered to /a and refused by /b", alive=alive)
    stats = sink.stats()
    assert stats["unique"] >= 1 and stats["rejected"] == 0, stats

    # the same alert again is the same resource and sends nothing new
    status, again = warnd.post(body)
    assert (status, again["created"], again["warning"]["id"]) == (200, False, w1)
    assert sum(warnd.states(w1).values()) == 2

    # 2. /b comes back; an update referencing the alert
    sink.control(path="/b", reset=True)
    body2, w2_sent = cap("E2E-W2", msg_type=MsgType.UPDATE, refs=(("E2E-W1", w1_sent),))
    status, created = warnd.post(body2)
    update_accepted_at = time.time()
    assert (status, created["created"]) == (201, True)
    w2 = created["warning"]["id"]
    until(lambda: warnd.states(w2) == {"delivered": 2}, 30, "the update delivered to both", alive=alive)
    old = warnd.warning(w1)
    assert old["state"] == "superseded"
    assert set(warnd.states(w1)) <= {"superseded", "delivered"}, warnd.states(w1)
    assert warnd.states(w1) == {"delivered": 1, "superseded": 1}

    old_ids, new_ids = msg_ids(old), msg_ids(warnd.warning(w2))
    records = sink.records()
    by_id = {r["id"]: r for r in records}
    stale = [r for r in records if r["id"] in old_ids and r["received_at"] >= update_accepted_at]
    assert stale == [], f"old text arrived after the update was accepted: {stale}"
    assert [by_id[i]["path"] for i in old_ids if i in by_id] == ["/a"]  # /b never got the old text
    assert sorted(by_id[i]["path"] for i in new_ids) == ["/a", "/b"]
    assert "xml" in by_id[next(i for i in new_ids if new_ids[i]["recipient_id"] == "a")]["content_type"]
    assert "json" in by_id[next(i for i in new_ids if new_ids[i]["recipient_id"] == "b")]["content_type"]

    # 3. a cancel: out to those who had the warning (both, via the update)
    body3, _ = cap("E2E-W3", msg_type=MsgType.CANCEL, refs=(("E2E-W2", w2_sent),))
    status, created = warnd.post(body3)
    assert (status, created["created"]) == (201, True)
    w3 = created["warning"]["id"]
    until(lambda: warnd.states(w3) == {"delivered": 2}, 30, "the cancel delivered to both", alive=alive)
    assert warnd.warning(w2)["state"] == "cancelled"
    cancel_ids = msg_ids(warnd.warning(w3))
    records = sink.records()
    assert sorted(r["path"] for r in records if r["id"] in cancel_ids) == ["/a", "/b"]

    # everything that arrived was signed, arrived once, and nothing else arrived
    stats = sink.stats()
    assert (stats["unique"], stats["duplicates"], stats["rejected"]) == (5, 0, 0), stats
    old_to_a = {i for i, d in old_ids.items() if d["recipient_id"] == "a"}
    assert {r["id"] for r in records} == old_to_a | set(new_ids) | set(cancel_ids)
    print(f"\n[e2e] alert/update/cancel: {stats}, {time.monotonic() - t_start:.1f}s")


FANOUT = 10_000
KILL_AFTER = 1_500


def test_kill_9_during_a_10000_fanout_loses_nothing(procs, tmp_path):
    t_start = time.monotonic()
    sink = Sink(procs, tmp_path)
    subscribers = [{"id": f"s{i}", "url": f"{sink.url}/s{i}", "secret": SECRET, "format": "json"}
                   for i in range(FANOUT)]
    warnd = Warnd(procs, tmp_path, subscribers, webhook={"allow_private_urls": True},
                  dispatcher={"poll_seconds": 0.1})
    t_setup = time.monotonic() - t_start
    first = warnd.serve()

    body, _ = cap("E2E-FANOUT", severity="Extreme")  # red
    t0 = time.monotonic()
    status, created = warnd.post(body)
    t_accept = time.monotonic() - t0
    assert (status, created["created"], created["warning"]["level"]) == (201, True, "red")
    wid = created["warning"]["id"]

    until(lambda: sink.stats()["unique"] >= KILL_AFTER, 120, f"the sink to have {KILL_AFTER} messages",
          interval=0.02, alive=[first, sink.proc])
    first.kill9()
    t_kill = time.monotonic() - t0
    at_kill = sink.stats()

    # What the dead process left: rows claimed but without a written result (read directly,
    # nothing runs against the database now). Only these may be sent twice.
    with sqlite3.connect(warnd.db_path) as conn:
        by_state = dict(conn.execute("SELECT state, count(*) FROM deliveries WHERE warning_id = ? "
                                     "GROUP BY state", (wid,)).fetchall())
    conn.close()
    # 201 came after the commit: every row exists although the process died mid fan-out
    assert sum(by_state.values()) == FANOUT, by_state
    in_flight = by_state.get("sending", 0)
    concurrency, batch_size = 64, 200  # webhook.concurrency and dispatcher.batch_size defaults
    assert in_flight <= concurrency + batch_size, by_state
    assert by_state.get("delivered", 0) <= at_kill["unique"] < FANOUT, (by_state, at_kill)

    t1 = time.monotonic()
    second = warnd.serve()  # same config, same node id: it takes back its own claims at once
    by_channel = warnd.warning(wid, deliveries=0)["deliveries_by_channel"]
    assert sum(n for by_state in by_channel.values() for n in by_state.values()) == FANOUT, by_channel
    until(lambda: sink.stats()["unique"] >= FANOUT, 120, f"the sink to have all {FANOUT}", interval=0.1,
          alive=[second, sink.proc])
    until(lambda: warnd.states(wid) == {"delivered": FANOUT}, 30, "every delivery recorded as delivered",
          alive=[second])
    t_complete = time.monotonic() - t1

    stats = sink.stats()
    assert warnd.warning(wid, deliveries=0)["deliveries_by_channel"] == {"webhook": {"delivered": FANOUT}}
    assert stats["unique"] == FANOUT, stats
    assert stats["rejected"] == 0, stats
    assert stats["duplicates"] <= in_flight <= concurrency + batch_size, (stats, in_flight)
    assert len({r["id"] for r in sink.records()}) == FANOUT
    print(f"\n[e2e] 10k fan-out: setup {t_setup:.1f}s, 201 after {t_accept:.2f}s, killed at {t_kill:.1f}s "
          f"with {at_kill['unique']} received, {by_state.get('delivered', 0)} recorded delivered, "
          f"{in_flight} in flight (sending); after restart: {stats['duplicates']} duplicates, "
          f"complete in {t_complete:.1f}s; total {time.monotonic() - t_start:.1f}s")
