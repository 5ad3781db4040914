"""The webhook sink simulator, in-process and as a separate process, over real HTTP."""
from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime, timezone

import base64
import os

import aiohttp
import pytest
from standardwebhooks import Webhook

from warnd.sim.webhook_sink import Behaviour, WebhookSink


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def sign_headers(secret: str, msg_id: str, body: bytes, now: datetime) -> dict[str, str]:
    now = now.replace(microsecond=0)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, now, body.decode())}


SECRET = new_secret()


async def post(session: aiohttp.ClientSession, url: str, msg_id: str, body: bytes = b'{"a":1}',
               secret: str = SECRET, **extra: str) -> aiohttp.ClientResponse:
    headers = {**sign_headers(secret, msg_id, body, datetime.now(timezone.utc)),
               "content-type": "application/json", **extra}
    async with session.post(url, data=body, headers=headers) as response:
        await response.read()
        return response


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def sink():
    s = WebhookSink(SECRET, keep_bodies=True)
    await s.start()
    yield s
    await s.stop()


async def test_records_a_verified_message(sink, session):
    response = await post(session, sink.url("/hook"), "msg_1", b'{"x":"\xe7\xba\xa2"}')
    assert response.status == 200
    assert sink.stats.unique == 1 and sink.stats.rejected == 0
    [record] = sink.received("/hook")
    assert (record.id, record.length, record.content_type) == ("msg_1", 11, "application/json")
    assert sink.bodies[("/hook", "msg_1")] == b'{"x":"\xe7\xba\xa2"}'


async def test_bad_or_missing_signature_is_401_and_not_recorded(sink, session):
    assert (await post(session, sink.url("/hook"), "msg_1", secret=new_secret())).status == 401
    async with session.post(sink.url("/hook"), data=b"{}") as response:
        assert response.status == 401
    tampered = sign_headers(SECRET, "msg_2", b"original", datetime.now(timezone.utc))
    async with session.post(sink.url("/hook"), data=b"tampered", headers=tampered) as response:
        assert response.status == 401
    assert sink.stats.rejected == 3 and sink.records == []


async def test_a_resent_webhook_id_is_a_duplicate(sink, session):
    for _ in range(3):
        assert (await post(session, sink.url("/hook"), "msg_7")).status == 200
    assert (await post(session, sink.url("/hook"), "msg_8")).status == 200
    assert (sink.stats.unique, sink.stats.duplicates) == (2, 2)
    assert [r.id for r in sink.records] == ["msg_7", "msg_8"]


async def test_secrets_per_path():
    a, b = new_secret(), new_secret()
    sink = WebhookSink({"/a": a, "/b": b})
    await sink.start()
    try:
        async with aiohttp.ClientSession() as session:
            assert (await post(session, sink.url("/a"), "m1", secret=a)).status == 200
            assert (await post(session, sink.url("/b"), "m1", secret=a)).status == 401
            assert (await post(session, sink.url("/b"), "m1", secret=b)).status == 200
            assert (await post(session, sink.url("/c"), "m1", secret=b)).status == 404
        assert sink.stats.unique == 2  # the same id on two paths is two receivers
    finally:
        await sink.stop()


async def test_injected_failures(session):
    sink = WebhookSink(SECRET, paths={"/gone": Behaviour(status=410),
                                      "/busy": Behaviour(fail_rate=1.0, retry_after=7)})
    await sink.start()
    try:
        assert (await post(session, sink.url("/gone"), "m1")).status == 410
        busy = await post(session, sink.url("/busy"), "m1")
        assert busy.status == 503 and busy.headers["Retry-After"] == "7"
        assert (await post(session, sink.url("/fine"), "m1")).status == 200
        assert (sink.stats.unique, sink.stats.failed) == (1, 2)
    finally:
        await sink.stop()


async def test_fail_rate_is_a_share(session):
    sink = WebhookSink(SECRET, behaviour=Behaviour(fail_rate=0.5), seed=1)
    await sink.start()
    try:
        statuses = [(await post(session, sink.url("/h"), f"m{i}")).status for i in range(60)]
        assert 10 < statuses.count(503) < 50 and statuses.count(200) == sink.stats.unique
    finally:
        await sink.stop()


async def test_latency(sink, session):
    sink.configure("/slow", latency=0.3)
    started = time.monotonic()
    assert (await post(session, sink.url("/slow"), "m1")).status == 200
    assert time.monotonic() - started >= 0.3


async def test_control_endpoint(sink, session):
    async def control(**settings):
        async with session.post(sink.url("/_control"), json=settings) as response:
            return response.status, await response.json()

    assert (await control(path="/h", status=410))[0] == 200
    assert (await post(session, sink.url("/h"), "m1")).status == 410
    assert (await post(session, sink.url("/other"), "m1")).status == 200
    assert (await control(path="/h", reset=True))[0] == 200
    assert (await post(session, sink.url("/h"), "m1")).status == 200

    status, body = await control(down_for=0.3, retry_after=2)
    assert status == 200 and body["behaviour"]["down_until"] > time.time()
    down = await post(session, sink.url("/x"), "m2")
    assert down.status == 503 and down.headers["Retry-After"] == "2"
    await asyncio.sleep(0.35)
    assert (await post(session, sink.url("/x"), "m2")).status == 200

    assert (await control(colour="red"))[0] == 400
    async with session.get(sink.url("/_stats")) as response:
        stats = await response.json()
    assert stats["unique"] == 3 and stats["failed"] == 2


async def test_as_a_process_records_survive_a_kill(tmp_path, session):
    record = tmp_path / "received.jsonl"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "warnd.sim.webhook_sink", "--port", "0", "--secret", SECRET,
        "--record", str(record), stdout=asyncio.subprocess.PIPE)
    try:
        base_url = (await asyncio.wait_for(process.stdout.readline(), 20)).decode().strip()
        assert base_url.startswith("http://127.0.0.1:")
        for i in range(5):
            assert (await post(session, f"{base_url}/sub", f"msg_{i}")).status == 200
        assert (await post(session, f"{base_url}/sub", "msg_0")).status == 200  # duplicate
        assert (await post(session, f"{base_url}/sub", "msg_9", secret=new_secret())).status == 401
    finally:
        process.kill()
        await process.wait()
    lines = [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]
    assert [line["id"] for line in lines] == [f"msg_{i}" for i in range(5)]
    assert lines[0]["path"] == "/sub" and lines[0]["length"] == 7
