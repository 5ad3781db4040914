"""The logs as an operator reads them: JSON lines from a real node and a real HTTP server
(SQLite, a manual clock, the webhook sink), and from a real `warnd serve` process.

Each test reads the lines as they are written: a handler on the "warnd" logger with
warnd's own formatter, parsed back from JSON."""
from __future__ import annotations

import asyncio
import json
import logging
import sys

import pytest
from aiohttp.test_utils import TestClient, TestServer
from factories import COUNTY, NO_APPROVAL, SENDER, VILLAGE, alert
from procs import Procs, free_port, http, http_ok, until, warnd_command

from warnd.clock import ManualClock
from warnd.config import load_config
from warnd.domain.authority import Role, Scope
from warnd.domain.directory import Region, Subscriber
from warnd.domain.model import Level
from warnd.engine.node import Node
from warnd.http.app import build_app
from warnd.ingest.capxml import alert_to_xml
from warnd.ingest.directory import DirectoryData
from warnd.logs import JsonFormatter
from warnd.sim.webhook_sink import WebhookSink
from warnd.store.migrate import upgrade
from warnd_channels.webhook import new_secret

SECRET = new_secret()
XML = "application/cap+xml"
SIGNED = "v1.c2lnbmVkLXZhbHVlLW5vYm9keS1zaG91bGQtc2Vl.ZmFrZXNpZw"  # a `?d=` value's shape


class Lines(logging.Handler):
    """What warnd logs, each record as the JSON line it would be, parsed back."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.text: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.text.append(self.format(record))

    def where(self, logger: str, msg: str) -> list[dict]:
        return [e for e in map(json.loads, self.text) if e["logger"] == logger and e["msg"] == msg]


@pytest.fixture
def lines():
    handler, logger = Lines(), logging.getLogger("warnd")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
async def sink():
    s = WebhookSink(secrets=SECRET)
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def server(tmp_path, sink):
    """A node that dispatches to one webhook (the sink's /gone, which answers 410), behind HTTP."""
    url = f"sqlite:///{tmp_path / 'logs.db'}"
    upgrade(url)
    config = load_config(None, database_url=url, approval=NO_APPROVAL, dispatcher={"poll_seconds": 0.05},
                         webhook={"allow_private_urls": True, "timeout_seconds": 2.0})
    node = Node(config, clock=ManualClock())
    await node.directory.import_data(DirectoryData(
        regions=(Region(COUNTY, "示例县", "county"), Region(VILLAGE, "河口村", "village", COUNTY)),
        subscribers=(Subscriber("tv", sink.url("/gone"), SECRET),)))
    await node.start()
    weather = await node.tokens.create(Scope("县气象局", ("暴雨",), (COUNTY,), Level.ORANGE, senders=(SENDER,)))
    admin = await node.tokens.create(Scope("预警中心", ("*",), ("*",), Level.RED, Role.ADMIN, ("*",)))
    client = TestClient(TestServer(build_app(node)))
    await client.start_server()
    yield client, node, weather, admin
    await client.close()
    await node.stop()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_each_request_is_one_access_line_without_its_token_or_signed_values(server, lines):
    client, _, _, admin = server
    resp = await client.get(f"/api/v1/warnings?d={SIGNED}&deliveries=5", headers=_bearer(admin) | {
        "Cookie": "warnd_session=cookie-secret-value", "X-Request-Id": "req-42"})
    assert resp.status == 200, await resp.text()
    resp = await client.get("/api/v1/warnings/999999", headers=_bearer(admin))
    assert resp.status == 404
    resp = await client.get(f"/c/{SIGNED}")  # a confirmation link: its token is the credential
    assert resp.status >= 400

    access = lines.where("warnd.access", "request")
    assert [(a["method"], a["path"], a["status"]) for a in access] == [
        ("GET", "/api/v1/warnings", 200), ("GET", "/api/v1/warnings/999999", 404), ("GET", "/c/{token}", resp.status)]
    first = access[0]
    assert first["query"] == "d=-&deliveries=5" and first["request_id"] == "req-42"
    assert first["remote"] == "127.0.0.1" and all(isinstance(a["duration_ms"], float) for a in access)
    everything = "\n".join(lines.text)
    assert admin not in everything and SIGNED not in everything and "cookie-secret-value" not in everything


async def test_a_health_probe_is_a_debug_line(server, lines):
    client, *_ = server
    assert (await client.get("/healthz")).status == 200
    (probe,) = lines.where("warnd.access", "request")
    assert (probe["path"], probe["level"]) == ("/healthz", "debug")


async def test_an_accepted_and_a_rejected_warning_are_one_line_each(server, lines):
    client, _, weather, _ = server
    orange = alert_to_xml(alert("A1", severity="Severe")).encode()
    resp = await client.post("/api/v1/warnings", data=orange, headers=_bearer(weather) | {"Content-Type": XML})
    assert resp.status == 201, await resp.text()
    warning_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    red = alert_to_xml(alert("R1")).encode()  # above the token's highest level (orange)
    resp = await client.post("/api/v1/warnings", data=red, headers=_bearer(weather) | {"Content-Type": XML})
    assert resp.status == 403
    code = (await resp.json())["code"]
    assert code == "auth.level_out_of_scope"
    resp = await client.post("/api/v1/warnings", data=b"<alert>not CAP", headers=_bearer(weather) | {
        "Content-Type": XML})
    assert resp.status == 400
    unparsed = (await resp.json())["code"]

    (accepted,) = lines.where("warnd.intake", "warning accepted")
    assert accepted["level"] == "info"
    assert {k: accepted[k] for k in ("warning_id", "identifier", "sender", "warning_level", "status", "msg_type",
                                     "department", "awaiting_approval", "duplicate")} == {
        "warning_id": warning_id, "identifier": "A1", "sender": SENDER, "warning_level": "orange",
        "status": "Actual", "msg_type": "Alert", "department": "县气象局", "awaiting_approval": False,
        "duplicate": False}
    refused, garbled = lines.where("warnd.intake", "warning rejected")
    assert (refused["code"], refused["identifier"], refused["status_code"]) == (code, "R1", 403)
    assert (garbled["code"], garbled["department"]) == (unparsed, "县气象局") and "identifier" not in garbled
    everything = "\n".join(lines.text)
    assert "预计未来3小时有强降雨" not in everything and "<alert>" not in everything  # never the CAP body


async def test_a_send_that_gives_up_is_a_warning_line(server, sink, lines):
    client, node, _, admin = server
    sink.configure("/gone", status=410)
    resp = await client.post("/api/v1/warnings", data=alert_to_xml(alert("G1")).encode(),
                             headers=_bearer(admin) | {"Content-Type": XML})
    assert resp.status == 201, await resp.text()
    warning_id = int(resp.headers["Location"].rsplit("/", 1)[1])

    async def gave_up() -> list[dict]:
        await asyncio.sleep(0.02)
        return lines.where("warnd.dispatcher", "send gave up")
    deadline = asyncio.get_running_loop().time() + 15
    while not await gave_up():
        assert asyncio.get_running_loop().time() < deadline, "no give-up line in 15 s"
    (line,) = await gave_up()
    assert line["level"] == "warning"
    assert {k: line[k] for k in ("channel", "warning_id", "recipient", "attempts", "code")} == {
        "channel": "webhook", "warning_id": warning_id, "recipient": "tv", "attempts": 1, "code": "http.410"}
    assert sink.url("/gone") not in "\n".join(lines.text)  # an address may carry a key: never logged


@pytest.mark.slow
def test_warnd_serve_writes_only_json_lines(tmp_path):
    port = free_port()
    procs = Procs(tmp_path)
    try:
        proc = procs.start("serve", warnd_command() + [
            "serve", "--database-url", f"sqlite:///{tmp_path / 'serve.db'}", "--port", str(port)])
        base = f"http://127.0.0.1:{port}"
        until(lambda: http_ok(base + "/healthz"), 60, "warnd serve to answer /healthz", alive=[proc])
        assert http("GET", base + "/api/v1/warnings", headers=_bearer("not-a-real-token")).status == 401
        proc.stop()
        assert proc.returncode == 0, proc.tail()
    finally:
        procs.close()
    written = proc.stdout_path.read_text(encoding="utf-8") + proc.stderr_path.read_text(encoding="utf-8")
    entries = []
    for line in written.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}\n{written}")
    assert {"ts", "level", "logger", "msg"} <= set(entries[0])
    assert any(e["logger"] == "warnd.access" and e["status"] == 401 for e in entries)
    assert "not-a-real-token" not in written
    print(f"{len(entries)} JSON lines", file=sys.stderr)
