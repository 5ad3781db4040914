"""The webhook channel against real local servers: the sink and the trouble server."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from standardwebhooks import Webhook

from warnd.config import Config, WebhookConfig, load_config
from warnd.domain.model import MsgType, Status
from warnd.domain.urlsafety import UnsafeAddress
from warnd.sim.webhook_sink import WebhookSink
from warnd_channels import conformance as kit
from warnd_channels.base import Outcome, Recipient
from warnd_channels.registry import SPECS, build_channels
from warnd_channels.webhook import (CAP_CONTENT_TYPE, JSON_CONTENT_TYPE, MAX_RETRY_AFTER, UNSAFE_ADDRESS,
                                    InvalidSecret, WebhookChannel, classify, new_secret, parse_retry_after,
                                    webhook_id)

SECRET = new_secret()

# --- classification: the shared HTTP and transport rules, plus the webhook's own rows

CASES = [
    *kit.http_status_cases(lambda status, headers: (status, None, headers), max_retry_after=MAX_RETRY_AFTER),
    *kit.aiohttp_transport_cases(lambda exc: (None, exc, {})),
    kit.Case("exc-invalid-secret", (None, InvalidSecret("bad"), {}), Outcome.FAILED, "secret"),
    kit.Case("exc-unsafe-address", (None, UnsafeAddress("h.example", [("127.0.0.1", "loopback")]), {}),
             Outcome.FAILED, UNSAFE_ADDRESS, None),  # the connect-time SSRF guard: never retried
    kit.Case("exc-unexpected", (None, RuntimeError("bug"), {}), Outcome.RETRY, "error"),
    kit.Case("nothing", (None, None, {}), Outcome.RETRY, "error"),
]


@pytest.mark.parametrize("case", CASES, ids=kit.case_id)
def test_classify(case):
    kit.check_case(classify, case, max_retry_after=MAX_RETRY_AFTER)


def test_retry_after_http_date_is_relative_to_now():
    now = datetime(2025, 7, 1, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after({"Retry-After": "Tue, 01 Jul 2025 00:02:00 GMT"}, now) == 120
    assert classify(503, None, {"Retry-After": "Tue, 01 Jul 2025 00:00:30 GMT"}, now=now).retry_after == 30
    assert parse_retry_after({}) is None


# --- fixtures


def recipient(url: str = "http://127.0.0.1:9/hook", *, fmt: str = "json", language: str = "zh-CN",
              secret: str = SECRET, public: bool = False) -> Recipient:
    return Recipient(kind="subscriber", id="sub-1", address=url, language=language, format=fmt,
                     secret=secret, public=public)


@pytest.fixture
async def channel():
    ch = WebhookChannel(WebhookConfig(allow_private_urls=True, timeout_seconds=2, concurrency=4))
    yield ch
    await ch.close()


@pytest.fixture
async def sink():
    s = WebhookSink(SECRET, keep_bodies=True)
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def trouble():
    async with kit.TroubleServer(delay=5.0) as server:
        yield server


async def deliver(channel: WebhookChannel, url: str, **kwargs):
    message = kit.sample_message(recipient(url, **{k: v for k, v in kwargs.items() if k != "delivery_id"}),
                                 delivery_id=kwargs.get("delivery_id", 1))
    return await channel.send(message, channel.render(message))


# --- rendering


@pytest.mark.parametrize("fmt", ["json", "cap"])
def test_renders_for_zh_and_en(channel, fmt):
    rendered = kit.check_languages(channel, lambda lang: kit.sample_message(recipient(fmt=fmt, language=lang)))
    assert "暴雨红色预警" in rendered["zh-CN"].text and "长沙市气象台" in rendered["zh-CN"].text
    assert "RED warning: Red rainstorm warning" in rendered["en"].text


@pytest.mark.parametrize("fmt", ["json", "cap"])
def test_drills_are_marked(channel, fmt):
    kit.check_drill_marking(channel, lambda alert: kit.sample_message(recipient(fmt=fmt), alert=alert))


def test_json_body(channel):
    alert = kit.sample_alert(status=Status.EXERCISE, msg_type=MsgType.UPDATE)
    message = kit.sample_message(recipient(language="en"), alert=alert, delivery_id=42, warning_id=7)
    rendered = channel.render(message)
    assert rendered.content_type == JSON_CONTENT_TYPE
    body = json.loads(rendered.body)
    assert body["type"] == "warning.update" and body["id"] == "msg_warnd_42"
    assert datetime.fromisoformat(body["timestamp"]) == message.created_at
    assert body["warning"] == {
        "id": 7, "level": "red", "level_zh": "红色", "drill": True, "status": "Exercise",
        "msgType": "Update", "sender": alert.sender, "identifier": alert.identifier,
        "event": "Rainstorm", "headline": "Red rainstorm warning", "expires": alert.expires.isoformat()}
    assert body["text"] == rendered.text and body["text"].startswith("[EXERCISE 演练] [UPDATE]")
    assert isinstance(body["cap"], dict) and alert.identifier in json.dumps(body["cap"])
    assert "红色" in rendered.body.decode("utf-8")  # UTF-8, not \\u escapes


def test_cap_body_is_the_cap_xml(channel):
    message = kit.sample_message(recipient(fmt="cap"))
    rendered = channel.render(message)
    assert rendered.content_type == CAP_CONTENT_TYPE
    assert rendered.body == message.cap_xml.encode("utf-8")


def test_cancel_type(channel):
    alert = kit.sample_alert(msg_type=MsgType.CANCEL)
    body = json.loads(channel.render(kit.sample_message(recipient(), alert=alert)).body)
    assert body["type"] == "warning.cancel" and body["text"].startswith("【解除】")


def test_webhook_id_is_stable_across_attempts(channel):
    first = kit.sample_message(recipient(), delivery_id=9, attempt=1)
    again = replace(first, attempt=4)
    assert webhook_id(9) == "msg_warnd_9"
    assert channel.render(first).body == channel.render(again).body


def test_new_secret():
    secret = new_secret()
    assert secret.startswith("whsec_") and secret != new_secret()
    assert WebhookChannel.new_secret().startswith("whsec_")
    Webhook(secret)  # the library accepts it


# --- sending to real servers


@pytest.mark.parametrize("fmt", ["json", "cap"])
async def test_delivered_and_verified(channel, sink, fmt):
    result = await deliver(channel, sink.url("/sub"), fmt=fmt, delivery_id=5)
    assert (result.outcome, result.code, result.provider_ref) == (Outcome.DELIVERED, "http.200", "msg_warnd_5")
    [record] = sink.received("/sub")
    assert record.id == "msg_warnd_5"
    assert record.content_type == (JSON_CONTENT_TYPE if fmt == "json" else CAP_CONTENT_TYPE)
    body = sink.bodies[("/sub", "msg_warnd_5")]
    assert record.length == len(body) and body == channel.render(
        kit.sample_message(recipient(fmt=fmt), delivery_id=5)).body


async def test_wrong_secret_is_401_failed(channel, sink):
    result = await deliver(channel, sink.url("/sub"), secret=new_secret())
    assert (result.outcome, result.code) == (Outcome.FAILED, "http.401")
    assert sink.stats.rejected == 1 and sink.records == []


async def test_invalid_secret_fails_without_sending(channel, sink):
    result = await deliver(channel, sink.url("/sub"), secret="")
    assert (result.outcome, result.code) == (Outcome.FAILED, "secret")
    assert sink.stats.requests == 0


async def test_503_with_retry_after(channel, sink):
    sink.configure("/busy", status=503, retry_after=7)
    result = await deliver(channel, sink.url("/busy"))
    assert (result.outcome, result.code, result.retry_after) == (Outcome.RETRY, "http.503", 7)
    assert "injected" in result.detail


async def test_410_is_permanent(channel, sink):
    sink.configure("/gone", status=410)
    result = await deliver(channel, sink.url("/gone"))
    assert (result.outcome, result.code) == (Outcome.FAILED, "http.410")


async def test_timeout(sink):
    sink.configure("/slow", latency=1.0)
    channel = WebhookChannel(WebhookConfig(allow_private_urls=True, timeout_seconds=0.2))
    try:
        result = await deliver(channel, sink.url("/slow"))
    finally:
        await channel.close()
    assert (result.outcome, result.code) == (Outcome.RETRY, "timeout")


async def test_refused_port(channel, trouble):
    result = await deliver(channel, trouble.refused_url)
    assert (result.outcome, result.code) == (Outcome.RETRY, "connect")


async def test_redirect_is_not_followed(channel, trouble, sink):
    trouble.redirect_to = sink.url("/sub")
    result = await deliver(channel, trouble.url("redirect"))
    assert (result.outcome, result.code) == (Outcome.FAILED, "http.302")
    assert sink.stats.requests == 0


async def test_no_answer_after_the_request_is_retried(channel, trouble):
    result = await deliver(channel, trouble.url("drop"))
    assert (result.outcome, result.code) == (Outcome.RETRY, "disconnected")
    assert trouble.requests == 1  # the request was read in full


async def test_resend_is_deduplicated_by_the_receiver(channel, sink):
    first = await deliver(channel, sink.url("/sub"), delivery_id=3)
    again = await deliver(channel, sink.url("/sub"), delivery_id=3)
    assert first.outcome is again.outcome is Outcome.DELIVERED
    assert (sink.stats.unique, sink.stats.duplicates) == (1, 1)


async def test_send_never_raises(trouble):
    trouble.delay = 2.0
    channel = WebhookChannel(WebhookConfig(allow_private_urls=True, timeout_seconds=0.5))
    try:
        messages = [kit.sample_message(recipient(url), delivery_id=i) for i, url in enumerate(trouble.urls())]
        results = await kit.check_send_never_raises(channel, messages)
    finally:
        await channel.close()
    by_path = {m.recipient.address.rsplit("/", 1)[-1]: r for m, r in zip(messages, results)}
    assert by_path["ok"].outcome is Outcome.DELIVERED and by_path["huge"].outcome is Outcome.DELIVERED
    assert by_path["slow"].code == "timeout" and by_path["refused"].code == "connect"
    assert by_path["not a url"].outcome is Outcome.FAILED
    assert all(r.outcome is Outcome.RETRY for k, r in by_path.items() if k in ("drop", "reset", "garbage"))


async def test_one_session_created_lazily(sink):
    channel = WebhookChannel(WebhookConfig(allow_private_urls=True))
    assert channel._session is None
    for i in range(3):
        assert (await deliver(channel, sink.url("/sub"), delivery_id=i)).outcome is Outcome.DELIVERED
    session = channel._session
    assert session is not None and session.connector.limit == 64
    await channel.close()
    await channel.close()  # idempotent
    assert session.closed


# --- registry


def test_registry_builds_enabled_channels():
    channels = build_channels(Config())
    assert set(channels) == {"webhook"} and isinstance(channels["webhook"], WebhookChannel)
    assert SPECS["webhook"].dedupes and channels["webhook"].name == "webhook"
    assert build_channels(load_config(webhook={"enabled": False})) == {}

