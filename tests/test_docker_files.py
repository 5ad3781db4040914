"""The Docker files, read as Docker would read them (Docker itself cannot run here): the
build context, the data volume, the health check's port, an authenticated Mosquitto, no
channel on placeholder credentials. The broker's settings are also run for real: the
compose file's mosquitto.conf and ACL on a local Mosquitto."""
from __future__ import annotations

import fnmatch
import os
import queue
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from mosquitto import require_mosquitto
from procs import free_port

from warnd.config import load_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))


def _ignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _ignored(path: str) -> bool:
    """Docker's rule, near enough for these paths: a pattern matches the path or one of its parents."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in _ignore_patterns():
        bare = pattern.removeprefix("**/")
        for prefix in prefixes:
            if fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(prefix.rsplit("/", 1)[-1], bare):
                return True
    return False


def test_the_build_context_leaves_out_the_venv_git_caches_tests_and_databases():
    for path in (".venv/bin/python", ".git/HEAD", "warnd/__pycache__/cli.cpython-311.pyc", ".pytest_cache/v",
                 "tests/test_logs.py", "warnd.db", "var/data/warnd.db-wal", "deploy/.env", "deploy/warnd.env"):
        assert _ignored(path), path
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, flags=re.M)
    for source in (s for line in copied for s in line.split()):
        assert not _ignored(source), f"the Dockerfile copies {source}, which .dockerignore leaves out"


def test_the_image_keeps_its_data_in_a_volume_and_checks_the_configured_port():
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^VOLUME /var/lib/warnd/data$", dockerfile, flags=re.M)
    assert "database_url: sqlite:////var/lib/warnd/data/warnd.db" in dockerfile
    healthcheck = dockerfile[dockerfile.index("HEALTHCHECK"):].split("\nENTRYPOINT")[0]
    assert "healthcheck.py" in healthcheck and "8080" not in healthcheck
    warnd = COMPOSE["services"]["warnd"]
    assert "warnddata:/var/lib/warnd/data" in " ".join(warnd["volumes"])
    assert warnd["healthcheck"]["test"][-1].endswith("healthcheck.py")
    assert "8080" not in " ".join(warnd["healthcheck"]["test"])
    assert warnd["environment"]["WARND_PORT"] == "${WARND_PORT:-8080}"
    assert warnd["ports"] == ["${WARND_PORT:-8080}:${WARND_PORT:-8080}"]


def test_the_health_check_asks_the_port_the_configuration_names(tmp_path):
    """deploy/healthcheck.py against a listener on a free port named only by WARND_PORT."""
    port = free_port()
    server = socket.create_server(("127.0.0.1", port))
    answers = subprocess.Popen([sys.executable, "-c", _ONE_READY_ANSWER, str(server.fileno())],
                               pass_fds=[server.fileno()])
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARND_")}
        env |= {"WARND_CONFIG": str(DEPLOY / "warnd.yaml"), "WARND_PORT": str(port)}
        done = subprocess.run([sys.executable, str(DEPLOY / "healthcheck.py")], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        env["WARND_PORT"] = str(free_port())  # nobody there
        done = subprocess.run([sys.executable, str(DEPLOY / "healthcheck.py")], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 1 and "/readyz" in done.stderr
    finally:
        answers.kill()
        answers.wait()
        server.close()


_ONE_READY_ANSWER = """
import socket, sys
server = socket.socket(fileno=int(sys.argv[1]))
conn, _ = server.accept()
assert b"GET /readyz " in conn.recv(4096)
conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok")
conn.close()
"""


def test_compose_runs_mosquitto_with_accounts_and_warnd_logs_in():
    conf = (DEPLOY / "mosquitto.conf").read_text(encoding="utf-8")
    settings = dict(line.split(None, 1) for line in conf.splitlines() if line and not line.startswith("#"))
    assert settings["allow_anonymous"] == "false"
    assert settings["password_file"] == "/mosquitto/data/passwd" and "acl_file" in settings
    mosquitto = COMPOSE["services"]["mosquitto"]
    assert mosquitto["entrypoint"][-1] == "/mosquitto/config/mosquitto-start.sh"
    assert mosquitto["environment"]["MQTT_PASSWORD"].startswith("${MQTT_PASSWORD:?")
    assert "mosquitto_passwd -b" in (DEPLOY / "mosquitto-start.sh").read_text(encoding="utf-8")
    url = COMPOSE["services"]["warnd"]["environment"]["WARND_MQTT__URL"]
    assert url.startswith("mqtt://warnd:${MQTT_PASSWORD:?") and url.endswith("@mosquitto:1883")


def test_the_compose_config_loads_with_no_channel_on_placeholder_credentials(monkeypatch):
    for name in [n for n in os.environ if n.startswith("WARND_")]:
        monkeypatch.delenv(name)
    text = (DEPLOY / "warnd.yaml").read_text(encoding="utf-8")
    assert "twilio" not in yaml.safe_load(text)  # credentials come from deploy/warnd.env only
    config = load_config(DEPLOY / "warnd.yaml")
    assert not config.sms.enabled and not config.voice.enabled and config.speaker.enabled
    monkeypatch.setenv("WARND_MQTT__URL", "mqtt://warnd:s3cret@mosquitto:1883")
    monkeypatch.setenv("WARND_PORT", "9090")
    config = load_config(DEPLOY / "warnd.yaml")
    assert (config.mqtt.url, config.port) == ("mqtt://warnd:s3cret@mosquitto:1883", 9090)


# -- the broker's settings, run --

def _client(port: int, user: str | None, password: str | None) -> tuple[mqtt.Client, queue.Queue, int]:
    received: queue.Queue = queue.Queue()
    connected: queue.Queue = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{time.monotonic_ns()}",
                         protocol=mqtt.MQTTv5)
    if user:
        client.username_pw_set(user, password)
    client.on_connect = lambda c, u, flags, reason, props: connected.put(reason.value)
    client.on_message = lambda c, u, msg: received.put((msg.topic, msg.payload))
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client, received, connected.get(timeout=10)


@pytest.fixture
def broker(tmp_path):
    """Mosquitto with deploy/mosquitto.conf and mosquitto.acl (only the port and paths moved)."""
    binary = require_mosquitto()
    passwd = tmp_path / "passwd"
    passwd.touch()
    for user, password in (("warnd", "warnd-pw"), ("spk1", "spk1-pw")):
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True)
    passwd.chmod(0o600)
    port = free_port()
    conf = (DEPLOY / "mosquitto.conf").read_text(encoding="utf-8")
    conf = (conf.replace("listener 1883", f"listener {port} 127.0.0.1")
            .replace("/mosquitto/data/passwd", str(passwd)).replace("/mosquitto/data/", f"{tmp_path}/")
            .replace("/mosquitto/config/mosquitto.acl", str(DEPLOY / "mosquitto.acl")))
    if os.geteuid() == 0:  # a root Mosquitto drops to user mosquitto, who cannot read the test's files
        conf += "\nuser root\n"
    (tmp_path / "mosquitto.conf").write_text(conf)
    proc = subprocess.Popen([binary, "-c", str(tmp_path / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def test_the_broker_refuses_anonymous_clients_and_keeps_speakers_to_their_own_topics(broker):
    for user, password in ((None, None), ("warnd", "not-the-password")):
        refused, _, reason = _client(broker, user, password)
        refused.loop_stop()
        assert reason == 0x87, (user, reason)  # CONNACK: not authorised
    warnd, acks, ok = _client(broker, "warnd", "warnd-pw")
    assert ok == 0
    warnd.subscribe("$share/warnd/warnd/speakers/+/ack", qos=1)
    speaker, commands, ok = _client(broker, "spk1", "spk1-pw")
    assert ok == 0
    speaker.subscribe("warnd/speakers/spk1/cmd", qos=1)
    speaker.subscribe("warnd/speakers/spk2/cmd", qos=1)  # another's: granted nothing
    time.sleep(0.3)
    speaker.publish("warnd/speakers/spk1/ack", b"played", qos=1).wait_for_publish(5)
    assert acks.get(timeout=5) == ("warnd/speakers/spk1/ack", b"played")
    warnd.publish("warnd/speakers/spk2/cmd", b"for spk2", qos=1).wait_for_publish(5)
    warnd.publish("warnd/speakers/spk1/cmd", b"for spk1", qos=1).wait_for_publish(5)
    assert commands.get(timeout=5) == ("warnd/speakers/spk1/cmd", b"for spk1")
    # A forged ack for another speaker is refused (PUBACK 0x87; paho then drops the connection,
    # so it goes on a connection of its own) and never reaches warnd.
    forger, _, ok = _client(broker, "spk1", "spk1-pw")
    assert ok == 0
    forger.publish("warnd/speakers/spk2/ack", b"forged", qos=1).wait_for_publish(5)
    forger.loop_stop()
    time.sleep(0.3)
    assert acks.empty() and commands.empty()
    for client in (warnd, speaker):
        client.loop_stop()
        client.disconnect()
