"""The WeCom group robot channel: its classify table, its renders, and sends to the simulator."""
from __future__ import annotations

import json

import pytest

from warnd.config import load_config
from warnd.domain.model import MsgType, Status
from warnd.domain.sending import Audience
from warnd.sim.wecom import WecomSim, check_message
from warnd_channels import conformance as kit
from warnd_channels.base import Outcome, Recipient
from warnd_channels.registry import SPECS, build_channels
from warnd_channels.webhook import MAX_RETRY_AFTER
from warnd_channels.wecom import (ERRCODES, TEXT_MAX_BYTES, WecomChannel, WecomConfig, classify, fit,
                                  mentions_of)

KEY = "693a91f6-7b2c-4bc4-97a0-0ec2a1fa5aaa"
OK = {"errcode": 0, "errmsg": "ok"}


def answer(errcode: int, errmsg: str = "x") -> dict:
    return {"errcode": errcode, "errmsg": errmsg}


# --- classification: HTTP and transport rules shared with the webhook channel, then the robot's errcodes

CASES = [
    *(c for c in kit.http_status_cases(lambda status, headers: (status, None, None, headers),
                                       max_retry_after=MAX_RETRY_AFTER) if not c.id.startswith("http-2")),
    *kit.aiohttp_transport_cases(lambda exc: (None, None, exc, {})),
    kit.Case("ok", (200, OK, None), Outcome.DELIVERED, "wecom.0", None),
    kit.Case("rate-limited", (200, answer(45009, "api freq out of limit"), None), Outcome.RETRY, "wecom.45009",
             60.0),
    kit.Case("concurrency-limited", (200, answer(45033), None), Outcome.RETRY, "wecom.45033", 60.0),
    kit.Case("system-busy", (200, answer(-1, "system busy"), None), Outcome.RETRY, "wecom.-1", 5.0),
    kit.Case("version-conflict", (200, answer(6000), None), Outcome.RETRY, "wecom.6000", 5.0),
    kit.Case("invalid-webhook", (200, answer(93000), None), Outcome.FAILED, "wecom.93000", None),
    kit.Case("robot-disabled", (200, answer(93004), None), Outcome.FAILED, "wecom.93004", None),
    kit.Case("not-in-group", (200, answer(93008), None), Outcome.FAILED, "wecom.93008", None),
    kit.Case("group-dissolved", (200, answer(49008), None), Outcome.FAILED, "wecom.49008", None),
    kit.Case("bad-msgtype", (200, answer(40008), None), Outcome.FAILED, "wecom.40008", None),
    kit.Case("bad-parameter", (200, answer(40058), None), Outcome.FAILED, "wecom.40058", None),
    kit.Case("empty-content", (200, answer(44004), None), Outcome.FAILED, "wecom.44004", None),
    kit.Case("too-large", (200, answer(45002), None), Outcome.FAILED, "wecom.45002", None),
    kit.Case("unknown-errcode", (200, answer(90001), None), Outcome.FAILED, "wecom.90001", None),
    kit.Case("no-json", (200, None, None), Outcome.RETRY, "wecom.no_answer", None),
    kit.Case("no-errcode", (200, {"errmsg": "?"}, None), Outcome.RETRY, "wecom.no_answer", None),
    kit.Case("errcode-not-int", (200, {"errcode": "0"}, None), Outcome.RETRY, "wecom.no_answer", None),
    kit.Case("errcode-bool", (200, {"errcode": False}, None), Outcome.RETRY, "wecom.no_answer", None),
    kit.Case("http-500-with-errcode", (500, OK, None), Outcome.RETRY, "http.500", None),
]


@pytest.mark.parametrize("case", CASES, ids=kit.case_id)
def test_classify(case):
    kit.check_case(classify, case, max_retry_after=MAX_RETRY_AFTER)


def test_the_table_is_the_code_list_and_operators_are_called_for_lost_robots():
    assert {c for c, (o, _, _) in ERRCODES.items() if o is Outcome.RETRY} == {-1, 6000, 45009, 45033}
    for errcode in (93000, 93004, 93008, 49008):
        assert classify(200, answer(errcode), None).operator
    assert not classify(200, answer(40058), None).operator
    assert classify(200, answer(45009), None, rate_limited_retry=3).retry_after == 3


# --- rendering


def recipient(*, language: str = "zh-CN", mentions: tuple[str, ...] = ("+8613800001001",),
              address: str = KEY) -> Recipient:
    return Recipient(kind="group", id="421126100201", address=address, language=language, mentions=mentions)


@pytest.fixture
def channel():
    return WecomChannel(WecomConfig(enabled=True))


def test_renders_for_zh_and_en(channel):
    rendered = kit.check_languages(channel, lambda lang: kit.sample_message(recipient(language=lang)))
    zh, en = rendered["zh-CN"], rendered["en"]
    assert zh.text.startswith("【红色预警】暴雨红色预警") and "长沙市气象台" in zh.text and "防御指引" in zh.text
    assert en.text.startswith("[RED warning] Red rainstorm warning")
    body = json.loads(zh.body)
    assert body == {"msgtype": "text", "text": {"content": zh.text, "mentioned_mobile_list": ["13800001001"]}}
    assert check_message(body) is None  # what the robot takes


def test_drills_are_marked(channel):
    kit.check_drill_marking(channel, lambda alert: kit.sample_message(recipient(), alert=alert))
    zh = channel.render(kit.sample_message(recipient(), alert=kit.sample_alert(status=Status.EXERCISE)))
    en = channel.render(kit.sample_message(recipient(language="en"), alert=kit.sample_alert(status=Status.TEST)))
    assert zh.text.startswith("【演练】") and en.text.startswith("[EXERCISE]")


def test_update_and_cancel(channel):
    update = channel.render(kit.sample_message(recipient(), alert=kit.sample_alert(msg_type=MsgType.UPDATE)))
    cancel = channel.render(kit.sample_message(recipient(), alert=kit.sample_alert(msg_type=MsgType.CANCEL)))
    assert update.text.startswith("【更新】") and cancel.text.startswith("【解除】")
    assert "转告" not in cancel.text


def test_mentions_are_mobiles_as_wecom_knows_them():
    assert mentions_of(("+8613800001001", "+867131234567", "+8613800001001", "+447911123456")) == [
        "13800001001", "+447911123456"]  # the landline cannot be mentioned; duplicates once
    body = json.loads(WecomChannel(WecomConfig()).render(kit.sample_message(recipient(mentions=()))).body)
    assert "mentioned_mobile_list" not in body["text"]


def test_long_text_fits_the_robot():
    text = "暴" * 1000  # 3,000 bytes
    cut = fit(text)
    assert len(cut.encode("utf-8")) <= TEXT_MAX_BYTES and cut.endswith("…") and fit("短") == "短"


# --- sending to the simulator


@pytest.fixture
async def sim():
    s = WecomSim({KEY})
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def sending(sim):
    ch = WecomChannel(WecomConfig(enabled=True, base_url=sim.base_url, timeout_seconds=2,
                                  rate_limited_retry_seconds=60))
    yield ch
    await ch.close()


async def post(channel: WecomChannel, **kwargs):
    message = kit.sample_message(recipient(**kwargs))
    return await channel.send(message, channel.render(message))


async def test_delivered_with_the_mentions(sending, sim):
    result = await post(sending, mentions=("+8613800001001", "+8613800001002"))
    assert (result.outcome, result.code) == (Outcome.DELIVERED, "wecom.0")
    [posted] = sim.received(KEY)
    assert posted.msgtype == "text" and posted.content.startswith("【红色预警】")
    assert posted.mentioned_mobile_list == ("13800001001", "13800001002")


async def test_45009_is_retried_after_a_minute(sending, sim):
    sim.fail_next(KEY, 45009)
    result = await post(sending)
    assert (result.outcome, result.code, result.retry_after) == (Outcome.RETRY, "wecom.45009", 60)
    assert sim.received() == []
    assert (await post(sending)).outcome is Outcome.DELIVERED


async def test_the_robot_limit_is_20_a_minute(sending, sim):
    now = [1000.0]
    sim.clock = lambda: now[0]
    results = [await post(sending) for _ in range(21)]
    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 20 + [Outcome.RETRY]
    assert results[-1].code == "wecom.45009"
    now[0] += 60.5
    assert (await post(sending)).outcome is Outcome.DELIVERED


async def test_an_unknown_key_fails_for_an_operator_and_is_not_logged_whole(sending, sim, caplog):
    caplog.set_level("DEBUG", logger="warnd_channels.wecom")
    other = "0000aaaa-1111-2222-3333-444455556666"
    result = await post(sending, address=other)
    assert (result.outcome, result.code, result.operator) == (Outcome.FAILED, "wecom.93000", True)
    [record] = [r for r in caplog.records if r.name == "warnd_channels.wecom"]
    assert record.group == "…6666" and other not in json.dumps(record.__dict__, default=str)


class Trouble(kit.TroubleServer):
    """The kit's trouble server, answering the robot's path the way `mode` says."""

    mode = "ok"

    async def _answer(self, target, writer):  # noqa: ANN001
        await super()._answer("/" + self.mode, writer)


async def test_send_never_raises():
    async with Trouble(delay=2.0) as trouble:
        channel = WecomChannel(WecomConfig(base_url=trouble.base_url, timeout_seconds=0.5))
        results = {}
        try:
            for behaviour in ("ok", "status/500", "status/410", "slow", "redirect", "drop", "reset", "garbage",
                              "huge"):
                trouble.mode = behaviour
                [results[behaviour]] = await kit.check_send_never_raises(channel, [kit.sample_message(recipient())])
        finally:
            await channel.close()
    assert results["ok"].code == "wecom.no_answer"  # a 200 that is not the robot's answer: tried again
    assert results["status/500"].outcome is Outcome.RETRY and results["status/410"].outcome is Outcome.FAILED
    assert results["slow"].code == "timeout" and results["redirect"].outcome is Outcome.FAILED
    assert all(results[k].outcome is Outcome.RETRY for k in ("drop", "reset", "garbage", "huge"))


# --- the spec and the registry


def test_spec_and_config():
    spec = SPECS["wecom"]
    assert (spec.audience, spec.address, spec.dedupes, spec.public) == (Audience.GROUP, "group", False, False)
    config = load_config(wecom={"enabled": True, "base_url": "http://127.0.0.1:9/"})
    section = config.channel("wecom")
    assert isinstance(section, WecomConfig) and section.base_url == "http://127.0.0.1:9"
    assert section.per_number.minute == 20 and not load_config().channel("wecom").enabled
    assert isinstance(build_channels(config)["wecom"], WecomChannel)
    with pytest.raises(Exception, match="base_url"):
        load_config(wecom={"base_url": "qyapi.weixin.qq.com"})
