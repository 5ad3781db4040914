"""A new operator's first hour (issue 15): every mistake gets one clear message in English and
Chinese, naming the file, key or value, and a documented exit code (warnd/exits.py); never a
stack trace. The commands run as an operator runs them: the real CLI, in a subprocess."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from factories import T0, VILLAGE, alert, people, regions

from warnd.config import Config, RoutingRule, RungConfig, load_config
from warnd.domain import readiness
from warnd.domain.errors import WarndError
from warnd.domain.model import Level
from warnd.domain.planning import PlanInput, Prior, plan
from warnd.domain.sending import Audience
from warnd.exits import Exit
from warnd_channels.registry import audiences

CHINESE = re.compile(r"[\u4e00-\u9fff]")


def warnd(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
          timeout: float = 90) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WARND_")}
    return subprocess.run([sys.executable, "-m", "warnd", *args], capture_output=True, text=True,
                          timeout=timeout, env={**clean, **(env or {})}, cwd=cwd)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed once this returns: nothing listens there


def one_clear_message(done: subprocess.CompletedProcess, code: Exit, *names: str) -> str:
    """The exit code, no stack trace, one `Error:` naming every name, and some Chinese."""
    out = done.stdout + done.stderr
    assert done.returncode == code, out
    assert "Traceback" not in out, out
    error = done.stderr[done.stderr.index("Error:"):]
    assert done.stderr.count("Error:") == 1, out
    for name in names:
        assert name in error, error
    assert CHINESE.search(error), error
    return error


@pytest.fixture
def config_file(tmp_path):
    def write(text: str) -> Path:
        path = tmp_path / "warnd.yaml"
        path.write_text(text, encoding="utf-8")
        return path
    return write


# ---------------------------------------------------------------- the mistakes, as an operator makes them

def test_postgresql_down_for_serve_is_exit_3_naming_the_url():
    url = f"postgresql://warnd:secret@127.0.0.1:{closed_port()}/warnd"
    done = warnd("serve", env={"WARND_DATABASE_URL": url})
    error = one_clear_message(done, Exit.DATABASE, "database unreachable", "WARND_DATABASE_URL", "127.0.0.1")
    assert "secret" not in error  # the password is hidden


def test_postgresql_down_for_serve_without_migrating_is_exit_3():
    done = warnd("serve", "--no-migrate", env={"WARND_DATABASE_URL": f"postgresql://127.0.0.1:{closed_port()}/x"})
    one_clear_message(done, Exit.DATABASE, "database unreachable")
    assert "node started" not in done.stderr


def test_postgresql_down_for_db_upgrade_is_exit_3():
    done = warnd("db", "upgrade", "--database-url", f"postgresql://127.0.0.1:{closed_port()}/x")
    one_clear_message(done, Exit.DATABASE, "database unreachable", "database_url")


def test_token_create_with_postgresql_down_does_not_blame_the_schema():
    done = warnd("token", "create", "--department", "县气象局", "--sender", "a@example.cn",
                 env={"WARND_DATABASE_URL": f"postgresql://127.0.0.1:{closed_port()}/x"})
    error = one_clear_message(done, Exit.DATABASE, "database unreachable")
    assert "db upgrade" not in error


def test_a_port_in_use_is_exit_4_before_the_node_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = warnd("serve", "--port", str(port), "--database-url", f"sqlite:///{tmp_path / 'w.db'}")
    one_clear_message(done, Exit.PORT, f"port {port}", "--port")
    assert "node started" not in done.stderr


@pytest.mark.parametrize("command", [["serve"], ["db", "upgrade"]])
def test_an_unknown_log_level_is_exit_2_naming_key_and_value(config_file, command):
    done = warnd(*command, "--config", str(config_file("log_level: verbose\n")))
    one_clear_message(done, Exit.CONFIG, "config.invalid", "log_level", "verbose", "warnd.yaml", "DEBUG")


def test_a_yaml_file_whose_top_level_is_a_list_is_exit_2(config_file):
    done = warnd("serve", "--config", str(config_file("- port: 8080\n")))
    one_clear_message(done, Exit.CONFIG, "warnd.yaml", "top level is a list")


def test_sms_enabled_without_a_sender_is_refused_at_load(config_file):
    done = warnd("db", "upgrade", "--config", str(config_file("sms: {enabled: true}\ntwilio: {auth_token: real}\n")))
    one_clear_message(done, Exit.CONFIG, "twilio.from_number", "messaging_service_sid", "warnd.yaml")


def test_a_mysql_url_is_exit_2_saying_what_warnd_runs_on():
    done = warnd("db", "upgrade", "--database-url", "mysql://warnd:pw@db/warnd")
    one_clear_message(done, Exit.CONFIG, "database_url", "mysql://", "PostgreSQL", "SQLite", "command line")


def test_a_config_error_is_config_invalid_and_names_the_file(config_file):
    done = warnd("db", "upgrade", "--config", str(config_file("port: eighty\n")))
    error = one_clear_message(done, Exit.CONFIG, "config.invalid", "port", "eighty", "warnd.yaml")
    assert "request.invalid" not in error


def test_a_yaml_error_names_file_and_line_once(config_file):
    done = warnd("db", "upgrade", "--config", str(config_file("port: 8080\nsms: [\n")))
    error = one_clear_message(done, Exit.CONFIG, "warnd.yaml:3", "line 3")
    assert "<unicode string>" not in error
    assert error.count("expected the node content") == 2  # once per language, no more
    assert len(error.splitlines()) == 2


def test_an_unknown_key_suggests_the_nearest(config_file):
    done = warnd("db", "upgrade", "--config", str(config_file("webhok: {enabled: false}\n")))
    one_clear_message(done, Exit.CONFIG, "webhok", "did you mean webhook?", "是否应为 webhook")


def test_a_csv_missing_a_column_is_reported_once(tmp_path):
    csv = tmp_path / "people.csv"
    csv.write_text("id,name,region\n" + "".join(f"p{i},某人{i},421126\n" for i in range(500)), encoding="utf-8")
    done = warnd("directory", "import", "--database-url", f"sqlite:///{tmp_path / 'w.db'}", str(csv))
    error = one_clear_message(done, Exit.FAILED, "people.csv:1", "roles")
    assert len(error.splitlines()) == 2


def test_token_create_refuses_a_malformed_region_code(tmp_path):
    done = warnd("token", "create", "--database-url", f"sqlite:///{tmp_path / 'w.db'}", "--department", "县气象局",
                 "--sender", "a@example.cn", "--regions", "421126,99x")
    one_clear_message(done, Exit.CONFIG, "--regions", "99x")


def test_an_unknown_environment_variable_is_refused_like_an_unknown_key():
    done = warnd("db", "upgrade", env={"WARND_SMS__ENABLD": "true"})
    one_clear_message(done, Exit.CONFIG, "WARND_SMS__ENABLD", "WARND_SMS__ENABLED", "环境变量")


def test_serve_refuses_a_ladder_that_asks_nobody_and_prints_why(config_file, tmp_path):
    path = config_file(f"database_url: sqlite:///{tmp_path / 'w.db'}\nport: {closed_port()}\n"
                       "ladders:\n  red:\n    - {after_minutes: 5, action: notify, to: [backup], channels: [sms]}\n")
    done = warnd("serve", "--config", str(path))
    one_clear_message(done, Exit.NOT_READY, "ladders.red", "sms", "allow_silent_ladders")
    assert "node started" not in done.stderr


# ---------------------------------------------------------------- unit: keys, environment, readiness

def test_the_nearest_key_is_suggested_at_any_depth(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text("sms:\n  retry: {max_attemps: 3}\nrouting:\n  - {chanels: [sms]}\n")
    with pytest.raises(WarndError) as err:
        load_config(path)
    found = {p.field: p.detail_en for p in err.value.problems}
    assert "did you mean max_attempts?" in found["sms.retry.max_attemps"]
    assert "did you mean channels?" in found["routing.0.chanels"]
    assert all(str(path) in detail for detail in found.values())


def test_environment_variables_set_every_key_as_yaml_scalars(monkeypatch):
    monkeypatch.setenv("WARND_SMS__ENABLED", "true")
    monkeypatch.setenv("WARND_TWILIO__FROM_NUMBER", "+15005550006")
    monkeypatch.setenv("WARND_TWILIO__AUTH_TOKEN", "0123")  # text stays text
    monkeypatch.setenv("WARND_SMS__PER_NUMBER__DAY", "null")
    monkeypatch.setenv("WARND_PORT", "9090")
    monkeypatch.setenv("WARND_LOG_LEVEL", "debug")
    monkeypatch.setenv("WARND_TOKEN", "another tool's")  # no such key, no `__`: left alone
    config = load_config(None)
    assert config.sms.enabled and config.twilio.auth_token == "0123" and config.sms.per_number.day is None
    assert (config.port, config.log_level) == (9090, "DEBUG")
    assert load_config(None, port=7070).port == 7070  # the command line beats the environment


def test_a_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("WARND_SMS__RATE_PER_SECOND", "fast")
    with pytest.raises(WarndError) as err:
        load_config(None)
    [problem] = err.value.problems
    assert problem.field == "WARND_SMS__RATE_PER_SECOND" and "sms.rate_per_second" in problem.detail_en


def test_log_level_is_case_insensitive_and_validated():
    assert load_config(None, log_level="warning").log_level == "WARNING"
    with pytest.raises(WarndError) as err:
        load_config(None, log_level="verbose")
    assert err.value.code == "config.invalid" and err.value.problems[0].field == "log_level"


WEBHOOKS_ONLY = {"webhook": Audience.SUBSCRIBER}
PHONES = {"webhook": Audience.SUBSCRIBER, "sms": Audience.PERSON, "voice": Audience.PERSON}


def test_the_default_configuration_warns_but_may_start():
    findings = readiness.check(Config(), WEBHOOKS_ONLY)
    assert readiness.ok(findings)
    assert {(f.code, f.level) for f in findings} >= {("routing.reaches_nobody", "red"), ("ladder.asks_nobody", "red"),
                                                     ("ladder.asks_nobody", "orange")}
    assert {f.severity for f in findings} == {"warning"}


def test_a_written_ladder_asking_only_by_disabled_channels_is_an_error():
    config = Config(ladders={"red": [RungConfig(after_minutes=5, action="notify", to=["backup"], channels=["sms"])]})
    [ladder] = [f for f in readiness.check(config, WEBHOOKS_ONLY) if f.code == "ladder.asks_nobody"]
    assert (ladder.severity, ladder.key) == ("error", "ladders.red") and not readiness.ok((ladder,))
    assert all(f.code != "ladder.asks_nobody" for f in readiness.check(config, PHONES))  # sms enabled: it can ask


def test_opting_out_allows_it_per_level_or_everywhere():
    ladders = {"red": [RungConfig(after_minutes=5, action="notify", to=["backup"], channels=["sms"])]}
    everywhere = readiness.check(Config(ladders=ladders, allow_silent_ladders=True), WEBHOOKS_ONLY)
    assert {f.severity for f in everywhere} == {"allowed"}
    red_only = readiness.check(Config(ladders=ladders, allow_silent_ladders=["红色"]), WEBHOOKS_ONLY)
    assert readiness.ok(red_only) and {f.severity for f in red_only if f.level == "red"} == {"allowed"}


def test_phones_and_a_routing_to_them_are_ready():
    config = Config(routing=[RoutingRule(channels=["sms", "voice"], roles=["grid_responsible"])])
    assert readiness.check(config, PHONES) == ()


def test_levels_nobody_confirms_are_not_checked():
    config = Config(levels={"red": {"confirm_minutes": None}, "orange": {"confirm_minutes": None},
                            "yellow": {"confirm_minutes": None}})
    assert readiness.check(config, WEBHOOKS_ONLY) == ()


def test_planning_notes_confirmations_nobody_can_be_asked_for():
    def planned(channels: frozenset[str]):  # noqa: ANN202
        return plan(PlanInput(alert(), Level.RED, T0, (VILLAGE,), regions(), people(), (), Prior(),
                              audiences(channels)), Config())
    silent = planned(frozenset({"webhook"}))
    assert silent.confirmations and any("nobody will be asked" in n for n in silent.notes)
    assert not any("nobody will be asked" in n for n in planned(frozenset({"webhook", "sms"})).notes)
