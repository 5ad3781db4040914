"""A real warnd for the console's browser tests: `warnd serve` with the Twilio simulator, both
as processes on free ports, SQLite in a temporary directory, the small county of
tests/data/console_directory.yaml and one account per role.

    site = ConsoleSite(procs, tmp_path)      # config, database, directory, accounts, processes
    site.api("GET", "/api/v1/warnings")      # as the admin token (for setup and checks)
    site.reply("+8613800001001")             # that person answers the warning SMS with "1"

SMS and voice both go to the simulator; the red ladder is seconds long (a not-woken rung,
then an operator alarm) so a live view shows both while the test watches. Red needs two
approvals (the default), orange one; the drill targets are a few minutes.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from procs import Proc, Procs, clean_env, free_port, http, http_ok, run, until, warnd_command

DIRECTORY = Path(__file__).parent / "data" / "console_directory.yaml"
PASSWORD = "console-test-password"
SID, TOKEN, FROM = "AC" + "c" * 32, "console-test-auth-token", "+15005550006"
CENTRE = "县预警中心"
MET = "县气象局"
SENDER = "qx@linjiang.example.cn"
# name → (role, department, display name)
USERS = {
    "admin": ("admin", CENTRE, "管理员老周"),
    "approver1": ("approver", CENTRE, "签发人王"),
    "approver2": ("approver", CENTRE, "签发人李"),
    "operator": ("operator", CENTRE, "值班员张"),
    "editor": ("editor", MET, "气象制作员"),
    "viewer": ("viewer", CENTRE, "查看员"),
}
COUNTY, TOWNSHIP1, TOWNSHIP2 = "421127", "421127100", "421127101"
SHIMEN, YANGLIUWAN = "421127101201", "421127101202"


def _directory() -> dict:
    return yaml.safe_load(DIRECTORY.read_text(encoding="utf-8"))


def region_codes() -> list[str]:
    return [r["code"] for r in _directory()["regions"]]


def grids_under(code: str) -> list[str]:
    return [r["code"] for r in _directory()["regions"] if len(r["code"]) == 15 and r["code"].startswith(code)]


def responsible(grid: str) -> str:
    """The phone of the grid's responsible person (A角)."""
    (phone,) = [p["phone"] for p in _directory()["people"]
                if p["region"] == grid and "grid_responsible" in p["roles"]]
    return phone


def polygon(code: str) -> list[list[float]]:
    (ring,) = [r["polygon"] for r in _directory()["regions"] if r["code"] == code]
    return ring


class ConsoleSite:
    def __init__(self, procs: Procs, tmp_path: Path) -> None:
        self.procs = procs
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.twilio_record = tmp_path / "twilio.jsonl"
        self.twilio = procs.start("twilio", [
            sys.executable, "-m", "warnd.sim.twilio", "--port", "0", "--account-sid", SID, "--auth-token", TOKEN,
            "--record", str(self.twilio_record), "--speed", "20",
            "--inbound-sms-url", f"{self.base}/twilio/sms/inbound"])
        self.twilio_url = self.twilio.first_line()
        until(lambda: http_ok(self.twilio_url + "/_stats"), 20, "the Twilio simulator", alive=[self.twilio])
        self.db_path = tmp_path / "warnd.db"
        self.config_path = tmp_path / "warnd.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config(), allow_unicode=True), encoding="utf-8")
        cfg = ["--config", str(self.config_path)]
        run([*warnd_command(), "db", "upgrade", *cfg])
        run([*warnd_command(), "directory", "import", *cfg, str(DIRECTORY)])
        for name, (role, department, shown) in USERS.items():
            self._user(name, role, department, shown)
        self.token = run([*warnd_command(), "token", "create", *cfg, "--department", CENTRE,
                          "--admin"]).strip().splitlines()[-1]
        self.proc: Proc = procs.start("warnd", [*warnd_command(), "serve", *cfg, "--no-migrate"])
        until(lambda: http_ok(self.base + "/readyz"), 60, "warnd serve to be ready", alive=[self.proc, self.twilio])

    def config(self) -> dict:
        return {
            "database_url": f"sqlite:///{self.db_path}", "port": self.port, "node_id": "console-browser",
            "public_base_url": self.base, "log_level": "WARNING",
            "twilio": {"account_sid": SID, "auth_token": TOKEN, "api_base_url": self.twilio_url,
                       "from_number": FROM},
            "sms": {"enabled": True, "rate_per_second": 50, "concurrency": 8,
                    "per_number": {"minute": 100, "hour": 1000, "day": 1000}},
            "voice": {"enabled": True, "rate_per_second": 2, "concurrency": 8,
                      "per_number": {"minute": 100, "hour": 1000, "day": 1000}},
            "webhook": {"enabled": True, "allow_private_urls": True},
            "routing": [{"levels": ["red", "orange", "yellow"], "statuses": ["Actual", "Exercise", "Test"],
                         "channels": ["sms", "voice"], "roles": ["grid_responsible"]}],
            "levels": {"red": {"confirm_minutes": 5}, "orange": {"confirm_minutes": 5},
                       "yellow": {"confirm_minutes": 5}, "blue": {"confirm_minutes": None}},
            # seconds, not minutes: the not-woken list and an alarm while the test watches
            "ladders": {
                "red": [{"after_minutes": 0.05, "action": "notify", "to": ["backup"], "channels": ["sms"],
                         "not_woken": True},
                        {"after_minutes": 0.1, "action": "alarm"}],
                "orange": [{"after_minutes": 0.1, "action": "alarm"}],
                "yellow": [{"after_minutes": 3, "action": "alarm"}],
                "uncovered": [{"after_minutes": 30, "action": "alarm"}]},
            "approval": {"levels": {"red": 2, "orange": 1, "yellow": 0, "blue": 0}},
            "dispatcher": {"poll_seconds": 0.1},
            "sweeps": {"escalate_seconds": 0.2},
            "accounts": {"cookie_secure": False, "max_failed_logins": 50},
            "console": {"live_poll_seconds": 0.3, "drill_targets": {"reach_minutes": 2, "complete_minutes": 5}},
        }

    def _user(self, name: str, role: str, department: str, shown: str) -> None:
        args = [*warnd_command(), "user", "create", name, "--config", str(self.config_path), "--role", role,
                "--department", department, "--sender", SENDER, "--display-name", shown]
        done = subprocess.run(args, input=PASSWORD + "\n", capture_output=True, text=True, timeout=60,
                              env=clean_env())
        assert done.returncode == 0, (args, done.stdout, done.stderr)

    # -- HTTP as the admin token --

    def api(self, method: str, path: str, body: object = None, status: int | tuple[int, ...] = 200):
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        headers = {"Authorization": f"Bearer {self.token}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        response = http(method, self.base + path, data, headers, timeout=60)
        wanted = (status,) if isinstance(status, int) else status
        assert response.status in wanted, (method, path, response.status, response.body[:2000])
        return response.json() if response.body[:1] in (b"{", b"[") else response.body

    # -- the simulator --

    def reply(self, *phones: str, text: str = "1") -> None:
        """These people answer the SMS now (the simulator posts the replies to warnd)."""
        response = http("POST", self.twilio_url + "/_control", json.dumps({"reply_now": {p: text for p in phones}})
                        .encode(), {"Content-Type": "application/json"})
        assert response.status == 200, response.body

    def sms_to(self, phone: str) -> list[dict]:
        out = []
        for line in self.twilio_record.read_text(encoding="utf-8").splitlines() if self.twilio_record.exists() else ():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("kind") == "message" and row.get("to") == phone:
                out.append(row)
        return out

    def alive(self) -> list[Proc]:
        return [self.proc, self.twilio]
