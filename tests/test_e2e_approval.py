"""End to end with real processes: an editor's red warning waits for two approvers, then goes out;
the audit chain verifies, the database refuses to rewrite it, and a forced edit is found.

`warnd serve` and the webhook sink run as their own processes; accounts, tokens, approvals and
the audit check go through the `warnd` command as an operator would type them.
"""
from __future__ import annotations

import sqlite3
import subprocess

import pytest
from procs import clean_env, http, run, until, warnd_command
from test_e2e_serve import SECRET, XML, Sink, Warnd, cap, procs  # noqa: F401 - procs is a fixture

pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery"


def warnd_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*warnd_command(), *args], input=stdin, capture_output=True, text=True, timeout=120,
                          env=clean_env())


def test_red_waits_for_two_approvers_and_the_record_is_tamper_evident(procs, tmp_path):
    sink = Sink(procs, tmp_path)
    warnd = Warnd(procs, tmp_path, [{"id": "tv", "url": sink.url + "/tv", "secret": SECRET}],
                  webhook={"allow_private_urls": True}, dispatcher={"poll_seconds": 0.1},
                  approval={"levels": {"red": 2, "orange": 1, "yellow": 0, "blue": 0}})
    cfg = ["--config", str(warnd.config_path)]
    tokens = {}
    for name, role in (("editor", "editor"), ("wang", "approver"), ("li", "approver")):
        made = warnd_cli("user", "create", name, "--role", role, "--department", "县气象局",
                         "--sender", "dept@example.cn", *cfg, stdin=PASSWORD + "\n")
        assert made.returncode == 0, made.stderr
        tokens[name] = run([*warnd_command(), "user", "token", name, *cfg]).strip().splitlines()[-1]
    warnd.serve()

    # 制作: the editor submits red; nothing is planned, nothing is sent
    body, _ = cap("E2E-RED")
    response = http("POST", warnd.base + "/api/v1/warnings", body,
                    {"Authorization": f"Bearer {tokens['editor']}", "Content-Type": XML}, timeout=60)
    assert response.status == 201, response.body
    wid = response.json()["warning"]["id"]
    assert response.json()["warning"]["state"] == "awaiting"
    assert warnd.states(wid) == {}

    def approve(who: str) -> subprocess.CompletedProcess:
        return warnd_cli("warning", "approve", str(wid), "--url", warnd.base, "--token", tokens[who])

    first = approve("wang")
    assert first.returncode == 0 and "1/2" in first.stdout, first.stderr
    assert warnd.states(wid) == {} and sink.records() == []
    again = approve("wang")
    assert again.returncode != 0 and "approval.already_approved" in again.stderr
    second = approve("li")
    assert second.returncode == 0 and "published" in second.stdout, second.stderr
    until(lambda: warnd.states(wid) == {"delivered": 1}, 30, "the approved warning to be delivered",
          alive=[warnd.proc, sink.proc])
    assert len(sink.records()) == 1
    detail = warnd.warning(wid)
    assert detail["published_at"] <= detail["first_sent_at"]

    # 有叫有应有记录: the chain verifies; the database refuses to rewrite it
    verified = warnd_cli("audit", "verify", *cfg)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    db = sqlite3.connect(warnd.db_path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE audit_log SET actor = 'mallory' WHERE action = 'warning.approve'")
        # with the triggers dropped (someone with the database file), an edit is still found
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'"):
            db.execute(f'DROP TRIGGER "{name}"')
        (edited,) = db.execute("SELECT min(id) FROM audit_log WHERE action = 'warning.approve'").fetchone()
        db.execute("UPDATE audit_log SET actor = 'user:mallory' WHERE id = ?", (edited,))
        db.commit()
    finally:
        db.close()
    broken = warnd_cli("audit", "verify", *cfg)
    assert broken.returncode != 0
    assert str(edited) in broken.stdout + broken.stderr
