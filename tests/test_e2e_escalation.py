"""Escalation with real `warnd serve` processes: two nodes on one PostgreSQL fire each
rung once; a node killed with SIGKILL while rungs are due, then restarted, fires
each rung exactly once. Ladders run in seconds here (fractions of a minute)."""
from __future__ import annotations

import json
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from conftest import create_pg_database, drop_pg_database
from factories import COUNTY, TOWNSHIP, VILLAGE, alert
from procs import free_port, run, until, warnd_command
from test_e2e_serve import procs  # noqa: F401 - the fixture

from warnd.ingest.capxml import alert_to_xml
from warnd.store.database import sync_url

pytestmark = pytest.mark.slow
LADDER = {"red": [{"after_minutes": 0.01, "action": "notify", "to": ["superior"], "channels": ["sms"],
                   "not_woken": True},
                  {"after_minutes": 0.02, "action": "door_to_door", "assign": ["superior"]},
                  {"after_minutes": 0.03, "action": "alarm"}]}


def directory(grids: int) -> dict:
    regions = [{"code": COUNTY, "name": "示例县", "kind": "county"},
               {"code": TOWNSHIP, "name": "城关镇", "kind": "township", "parent": COUNTY},
               {"code": VILLAGE, "name": "河口村", "kind": "village", "parent": TOWNSHIP}]
    regions += [{"code": f"{VILLAGE}{g:03d}", "name": f"{g}组", "kind": "grid", "parent": VILLAGE}
                for g in range(grids)]
    people = [{"id": f"r{g}", "name": f"网格员{g}", "region": f"{VILLAGE}{g:03d}", "roles": ["grid_responsible"],
               "phone": f"+86138{g:08d}"} for g in range(grids)]
    people.append({"id": "duty", "name": "王镇长", "region": TOWNSHIP, "roles": ["township_duty"],
                   "phone": "+8613900000000"})
    homes = [{"id": f"h{g}", "grid": f"{VILLAGE}{g:03d}", "address": f"{g}组1号"} for g in range(grids)]
    return {"regions": regions, "people": people, "households": homes}


class Deployment:
    """Config, directory and token for one database; `serve()` starts another node on it."""

    def __init__(self, procs, tmp_path: Path, url: str, grids: int) -> None:  # noqa: ANN001
        self.procs, self.tmp, self.url, self.grids = procs, tmp_path, url, grids
        (tmp_path / "dir.yaml").write_text(yaml.safe_dump(directory(grids), allow_unicode=True))
        self.ports: list[int] = []
        base = self._config("setup", 0)
        run([*warnd_command(), "db", "upgrade", "--config", str(base)])
        run([*warnd_command(), "directory", "import", "--config", str(base), str(tmp_path / "dir.yaml")])
        self.token = run([*warnd_command(), "token", "create", "--config", str(base), "--department", "县气象局",
                          "--admin"]).strip()

    def _config(self, name: str, port: int) -> Path:
        path = self.tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump({
            "database_url": self.url, "port": port, "node_id": name, "log_level": "WARNING",
            "public_base_url": f"http://127.0.0.1:{port}", "webhook": {"enabled": False},
            "routing": [], "ladders": LADDER, "sweeps": {"escalate_seconds": 0.1},
            "allow_silent_ladders": True,  # the rungs fire and are counted; nobody need be texted
            "approval": {"green_channel": ["县气象局"]}}))
        return path

    def serve(self, name: str):  # noqa: ANN201
        port = free_port()
        proc = self.procs.start(name, [*warnd_command(), "serve", "--config", str(self._config(name, port)),
                                       "--no-migrate"])
        until(lambda: _ready(port), 30, f"{name} ready", alive=[proc])
        self.ports.append(port)
        return proc

    def post_red_warning(self) -> int:
        now = datetime.now(timezone.utc).replace(microsecond=0)
        body = alert_to_xml(alert("E1", codes=(VILLAGE,), sent=now, expires=now + timedelta(hours=1))).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.ports[0]}/api/v1/warnings", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/cap+xml"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)["warning"]["id"]

    def count(self, sql: str) -> int:
        engine = sa.create_engine(sync_url(self.url))
        try:
            with engine.connect() as conn:
                return conn.execute(sa.text(sql)).scalar()
        finally:
            engine.dispose()


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def assert_each_rung_fired_once(dep: Deployment) -> None:
    n = dep.grids
    assert dep.count("SELECT count(*) FROM rungs WHERE state = 'fired'") == 3 * n
    assert dep.count("SELECT count(*) FROM alarms") == n
    assert dep.count("SELECT count(*) FROM call_lists") == n
    assert dep.count("SELECT count(*) FROM deliveries WHERE recipient_id = 'duty' AND channel = 'sms'") == 2 * n
    assert dep.count("SELECT count(*) FROM confirmations WHERE not_woken_at IS NOT NULL") == n


def test_two_nodes_on_one_postgresql_fire_each_rung_once(procs, tmp_path):  # noqa: F811
    url = create_pg_database()
    try:
        dep = Deployment(procs, tmp_path, url, grids=60)
        a, b = dep.serve("node-a"), dep.serve("node-b")
        dep.post_red_warning()
        until(lambda: dep.count("SELECT count(*) FROM rungs WHERE state = 'fired'") == 180, 60,
              "every rung fired", interval=0.2, alive=[a, b])
        assert_each_rung_fired_once(dep)
        firers = dep.count("SELECT count(DISTINCT fired_by) FROM rungs")
        print(f"\nrungs fired by {firers} node(s)")
    finally:
        procs.close()
        drop_pg_database(url)


def test_a_node_killed_while_rungs_are_due_fires_each_exactly_once_after_restart(procs, tmp_path):  # noqa: F811
    dep = Deployment(procs, tmp_path, f"sqlite:///{tmp_path / 'kill.db'}", grids=300)
    node = dep.serve("node")
    dep.post_red_warning()
    until(lambda: dep.count("SELECT count(*) FROM rungs WHERE state = 'fired'") > 0, 60, "some rungs fired",
          interval=0.01, alive=[node])
    node.kill9()
    at_kill = dep.count("SELECT count(*) FROM rungs WHERE state = 'fired'")
    restarted = dep.serve("node")
    until(lambda: dep.count("SELECT count(*) FROM rungs WHERE state = 'fired'") == 900, 90,
          "every rung fired after the restart", interval=0.2, alive=[restarted])
    assert_each_rung_fired_once(dep)
    print(f"\nrungs fired before the kill: {at_kill} of 900")
