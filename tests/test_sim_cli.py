"""`warnd sim …`: every simulator a click command with help in both languages, the old
argparse options kept, bad values refused as usage errors, and each one started from its
command as a real process that answers."""
from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner
from mosquitto import running_mosquitto
from procs import Procs, free_port, http, http_ok, until

from warnd.sim import wecom
from warnd.sim.cli import sim

CJK = re.compile(r"[\u4e00-\u9fff]")
LATIN = re.compile(r"[A-Za-z]{3}")

# The options (and defaults) the argparse programs had; none may go missing.
OPTIONS = {
    "twilio": {"host": "127.0.0.1", "port": 0, "account-sid": None, "auth-token": None, "behaviours": None,
               "record": None, "inbound-sms-url": None, "speed": None, "callback-limit": 100, "seed": None},
    "webhook-sink": {"host": "127.0.0.1", "port": 0, "secret": (), "record": None, "fail-rate": 0.0,
                     "status": None, "retry-after": None, "latency": 0.0, "seed": None},
    "aliyun": {"host": "127.0.0.1", "port": 0, "access-key-id": None, "access-key-secret": None,
               "sign-name": ("县预警中心",), "template": (), "report-url": None, "up-url": None, "reply": (),
               "report-after": 0.5},
    "wecom": {"host": "127.0.0.1", "port": 0, "key": (), "per-minute": wecom.PER_MINUTE, "record": None},
    "speakers": {"broker": None, "count": 10, "prefix": "warnd/speakers", "behaviours": None,
                 "multiplexed": False, "protocol": "5", "speed": 1.0},
}
WAIT = 20.0


def squeeze(text: str) -> str:
    return "".join(text.split())  # help is re-wrapped: compare without whitespace


def options(name: str) -> dict[str, click.Option]:
    command = sim.commands[name]
    return {p.opts[0].removeprefix("--"): p for p in command.params
            if isinstance(p, click.Option) and p.opts[0] != "--help"}


def test_group_help_is_bilingual():
    result = CliRunner().invoke(sim, ["--help"])
    assert result.exit_code == 0, result.output
    assert "Run a simulator / 运行模拟器" in result.output
    assert set(sim.commands) == set(OPTIONS)
    for name in OPTIONS:
        assert name in result.output


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_command_help_lists_every_option_in_both_languages(name):
    result = CliRunner().invoke(sim, [name, "--help"])
    assert result.exit_code == 0, result.output
    out = squeeze(result.output)
    doc = sim.commands[name].help or ""
    assert CJK.search(doc) and LATIN.search(doc) and re.search(r"\s/\s", doc)
    assert set(options(name)) == set(OPTIONS[name])
    for option_name, option in options(name).items():
        english, _, chinese = (option.help or "").rpartition(" / ")
        assert LATIN.search(english) and CJK.search(chinese), (option_name, option.help)
        assert f"--{option_name}" in result.output
        assert squeeze(english) in out and squeeze(chinese) in out, option_name


REQUIRED = {"twilio": ["--account-sid", "AC1", "--auth-token", "t"],
            "aliyun": ["--access-key-id", "k", "--access-key-secret", "s"],
            "speakers": ["--broker", "mqtt://127.0.0.1:1883"]}
GIVEN = {"account_sid": "AC1", "auth_token": "t", "access_key_id": "k", "access_key_secret": "s",
         "broker": "mqtt://127.0.0.1:1883"}


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_defaults_are_the_argparse_ones(monkeypatch, name):
    monkeypatch.delenv("TWILIO_ACCOUNT_SID", raising=False)
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    command = sim.commands[name]
    params = command.make_context(name, list(REQUIRED.get(name, []))).params
    for option_name, option in options(name).items():
        expected = OPTIONS[name][option_name]
        if option.name in GIVEN:
            expected = GIVEN[option.name]
        elif option_name == "secret":
            expected = None  # no --secret: nothing checked, as before
        assert params[option.name] == expected, option_name


@pytest.mark.parametrize(("args", "option"), [
    (["twilio", "--account-sid", "AC1", "--auth-token", "t", "--port", "abc"], "--port"),
    (["twilio", "--account-sid", "AC1", "--auth-token", "t", "--port", "70000"], "--port"),
    (["twilio", "--account-sid", "AC1", "--auth-token", "t", "--speed", "0"], "--speed"),
    (["twilio", "--auth-token", "t"], "--account-sid"),
    (["webhook-sink", "--secret", "not-a-secret"], "--secret"),
    (["webhook-sink", "--fail-rate", "1.5"], "--fail-rate"),
    (["webhook-sink", "--status", "42"], "--status"),
    (["aliyun", "--access-key-id", "k", "--access-key-secret", "s", "--template", "SMS_1"], "--template"),
    (["aliyun", "--access-key-id", "k", "--access-key-secret", "s", "--report-after", "-1"], "--report-after"),
    (["aliyun", "--access-key-secret", "s"], "--access-key-id"),
    (["wecom", "--per-minute", "0"], "--per-minute"),
    (["speakers", "--broker", "http://127.0.0.1:1883"], "--broker"),
    (["speakers", "--broker", "mqtt://127.0.0.1:1883", "--protocol", "3"], "--protocol"),
    (["speakers", "--broker", "mqtt://127.0.0.1:1883", "--count", "many"], "--count"),
    (["speakers", "--count", "1"], "--broker"),
    (["speakers", "--broker", "mqtt://127.0.0.1:1883", "--behaviours", "/nonexistent.json"], "--behaviours"),
])
def test_a_bad_value_is_a_usage_error(args, option):
    result = CliRunner().invoke(sim, args)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # nothing raised past click
    assert "Error:" in result.output and option in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("name", "content", "says"), [
    ("twilio", "numbers: [", "not YAML"),
    ("twilio", "numbers: {'+8613800000000': {sms: maybe}}", "sms: expected one of"),
    ("speakers", '{"*": {"explode": true}}', "explode"),
    ("speakers", "[1, 2]", "expected"),
])
def test_a_bad_behaviours_file_is_a_usage_error(tmp_path, name, content, says):
    path = tmp_path / "behaviours.yaml"
    path.write_text(content, encoding="utf-8")
    args = {"twilio": ["--account-sid", "AC1", "--auth-token", "t"],
            "speakers": ["--broker", "mqtt://127.0.0.1:1883"]}[name]
    result = CliRunner().invoke(sim, [name, *args, "--behaviours", str(path)])
    assert result.exit_code == 2, result.output
    assert says in result.output and "--behaviours" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("name", ["twilio", "webhook_sink", "aliyun", "wecom", "speakers"])
def test_python_m_runs_the_click_command(name):
    done = subprocess.run([sys.executable, "-m", f"warnd.sim.{name}", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"Usage: python -m warnd.sim.{name} [OPTIONS]" in done.stdout
    assert CJK.search(done.stdout) and "--help" in done.stdout


def test_a_taken_port_is_one_line_not_a_traceback():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "warnd.sim.wecom", "--port", str(port)], capture_output=True,
                              text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("Error: the simulator cannot start / 模拟器无法启动")
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


# -- each simulator started from its command, as a process, on a free port --

@pytest.fixture
def procs(tmp_path):
    p = Procs(tmp_path)
    yield p
    p.close()


HTTP_SIMULATORS = {
    "twilio": (["--account-sid", "AC" + "0" * 32, "--auth-token", "secret", "--speed", "10", "--seed", "1"],
               "/_stats"),
    "webhook_sink": (["--secret", "whsec_" + base64.b64encode(b"sink-secret-for-the-test").decode(),
                      "--latency", "0"], "/_stats"),
    "aliyun": (["--access-key-id", "LTAI1", "--access-key-secret", "s3cret", "--template", "SMS_1=${event}预警",
                "--reply", "13800001001=1"], "/_stats"),
    "wecom": (["--key", "KEY1", "--per-minute", "5"], "/_messages"),
}


@pytest.mark.parametrize("name", sorted(HTTP_SIMULATORS))
def test_each_http_simulator_starts_and_answers(procs, tmp_path, name):
    args, probe = HTTP_SIMULATORS[name]
    port = free_port()
    record = ["--record", str(tmp_path / "record.jsonl")] if name != "aliyun" else []
    proc = procs.start(name, [sys.executable, "-m", f"warnd.sim.{name}", "--host", "127.0.0.1", "--port", str(port),
                              *args, *record])
    base = f"http://127.0.0.1:{port}"
    until(lambda: http_ok(base + probe), WAIT, f"the {name} simulator to answer", alive=[proc])
    assert proc.first_line(WAIT).removeprefix("http://") == base.removeprefix("http://")
    if name == "wecom":  # the options reached the simulator: the key is known
        answer = http("POST", f"{base}/cgi-bin/webhook/send?key=KEY1",
                      json.dumps({"msgtype": "text", "text": {"content": "测试"}}).encode())
        assert answer.json() == {"errcode": 0, "errmsg": "ok"}
    if name == "webhook_sink":  # the secret reached it: an unsigned message is refused
        assert http("POST", f"{base}/hook", b"{}").status == 401
    proc.stop()
    assert proc.returncode == 0, proc.tail()


async def test_the_speaker_simulator_starts_and_answers(tmp_path, procs):
    async with running_mosquitto(tmp_path) as broker:
        behaviours = tmp_path / "behaviours.json"
        behaviours.write_text(json.dumps({"spk-00001": {"offline": True}}))
        proc = procs.start("speakers", [sys.executable, "-m", "warnd.sim.speakers", "--broker", broker.url,
                                        "--count", "2", "--prefix", "test/spk", "--protocol", "4",
                                        "--speed", "10", "--behaviours", str(behaviours)])
        assert proc.first_line(WAIT) == "ready 2"
        proc.stop()
        assert proc.returncode == 0, proc.tail()
        summary = json.loads(proc.stdout_path.read_text().strip().splitlines()[-1])
        assert summary["played"] == 0 and summary["commands"] == 0
