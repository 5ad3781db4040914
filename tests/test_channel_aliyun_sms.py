"""The Aliyun SMS channel: classification table, rendering, the real SDK against the
simulator, and the reports and replies Aliyun pushes."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import aiohttp
import pytest
from darabonba.exceptions import RetryError
from darabonba.exceptions import UnretryableException as DaraUnretryable
from darabonba.policy.retry import RetryPolicyContext
from pydantic import ValidationError

from warnd.config import load_config
from warnd.domain.errors import WarndError
from warnd.domain.model import MsgType, Status
from warnd.domain.sending import Answered, InboundRequest
from warnd.sim.aliyun import AliyunSimulator
from warnd_channels import conformance as kit
from warnd_channels.aliyun_sms import (MAX_RETRY_AFTER, SPEC, AliyunSmsChannel, AliyunSmsConfig, classify,
                                       classify_exception, replies, report_receipt, reports, segments, stable)
from warnd_channels.base import Outcome, ReceiptState, Recipient

KEY, SECRET, SIGN = "LTAI5tSimulatedKeyId", "simulated-access-key-secret", "县预警中心"
TOKEN = "push-token-0123456789abcdef"
GOOD = "+8613800001001"
PARAMS = {"drill": "drill", "update": "update", "level": "level", "event": "event", "area": "area",
          "confirm": "confirm"}
APPROVED = {"SMS_100": "${drill}${update}${level}${event}预警：${area}，请做好防范。${confirm}",
            "SMS_200": "${drill}${level}${event}预警：${grid}网格责任人${person}（${phone}）尚未确认。${confirm}",
            "SMS_300": "${drill}${level}${event}预警：请逐户通知并登记：${link}"}
TEMPLATES = {"warning": {"code": "SMS_100", "params": PARAMS},
             "door_ask": {"code": "SMS_200", "params": {"drill": "drill", "level": "level", "event": "event",
                                                        "grid": "grid", "person": "person", "phone": "phone",
                                                        "confirm": "confirm"}},
             "door_to_door": {"code": "SMS_300", "params": {"drill": "drill", "level": "level", "event": "event",
                                                            "link": "link"}}}


def config(endpoint: str = "127.0.0.1:9", **changes) -> AliyunSmsConfig:
    return AliyunSmsConfig(**{"enabled": True, "access_key_id": KEY, "access_key_secret": SECRET, "sign_name": SIGN,
                              "endpoint": endpoint, "protocol": "http", "push_token": TOKEN, "templates": TEMPLATES,
                              "timeout_seconds": 2.0, **changes})


def message(number: str = GOOD, *, language: str = "zh-CN", alert=None, delivery_id: int = 1, attempt: int = 1,
            **changes):
    msg = kit.sample_message(Recipient("person", "p-1", number, language), alert=alert, delivery_id=delivery_id,
                             attempt=attempt)
    return replace(msg, **changes)


# --- classification ------------------------------------------------------------------------------


def _classify(status, code, retry_after=None):  # noqa: ANN001, ANN202 - the kit passes positional args
    return classify(status, code, retry_after=retry_after, biz_id="900619746936498440^0")


def _http_rows() -> list[kit.Case]:
    """The kit's HTTP rules for an answer without an Aliyun code; Retry-After is Aliyun's
    x-acs-retry-after (the SDK's), so the header rows don't apply, and a 2xx without a Code
    says nothing about the SMS."""
    rows = kit.http_status_cases(lambda status, headers: (status, None), ok=Outcome.UNCERTAIN,
                                 max_retry_after=MAX_RETRY_AFTER)
    return [replace(r, code="aliyun.no_code") if r.outcome is Outcome.UNCERTAIN else r
            for r in rows if "retry-after" not in r.id]


def _code(id_: str, status: int, code: str, outcome: Outcome, expected: str | None = None,
          retry_after: float | None = None, given: float | None = None) -> kit.Case:
    return kit.Case(id_, (status, code, given if given is not None else retry_after), outcome,
                    expected or stable(code), retry_after)


CASES = [
    *_http_rows(),
    _code("ok", 200, "OK", Outcome.SENT, "aliyun.ok"),
    _code("flow-control", 200, "isv.BUSINESS_LIMIT_CONTROL", Outcome.RETRY, "aliyun.isv.business_limit_control"),
    _code("throttling-user", 400, "Throttling.User", Outcome.RETRY, "aliyun.throttling.user"),
    _code("throttling-429-retry-after", 429, "Throttling.User", Outcome.RETRY, retry_after=3.0),
    _code("throttling-capped", 429, "Throttling.User", Outcome.RETRY, retry_after=MAX_RETRY_AFTER, given=86400.0),
    _code("throttling-negative", 429, "Throttling.User", Outcome.RETRY, retry_after=0.0, given=-5.0),
    _code("isp-system", 200, "isp.SYSTEM_ERROR", Outcome.RETRY, "aliyun.isp.system_error"),
    _code("isp-unknown", 200, "isp.SOMETHING_NEW", Outcome.RETRY),
    _code("http-503-code", 503, "ServiceUnavailable", Outcome.RETRY, "aliyun.serviceunavailable"),
    _code("http-500-unknown-code", 500, "Whatever", Outcome.RETRY, "aliyun.whatever"),
    _code("number-illegal", 200, "isv.MOBILE_NUMBER_ILLEGAL", Outcome.FAILED, "aliyun.isv.mobile_number_illegal"),
    _code("number-count", 200, "isv.MOBILE_COUNT_OVER_LIMIT", Outcome.FAILED),
    _code("template-illegal", 200, "isv.SMS_TEMPLATE_ILLEGAL", Outcome.FAILED, "aliyun.isv.sms_template_illegal"),
    _code("sign-illegal", 200, "isv.SMS_SIGNATURE_ILLEGAL", Outcome.FAILED),
    _code("missing-params", 200, "isv.TEMPLATE_MISSING_PARAMETERS", Outcome.FAILED),
    _code("param-length", 200, "isv.PARAM_LENGTH_LIMIT", Outcome.FAILED),
    _code("url-param", 200, "isv.PARAM_NOT_SUPPORT_URL", Outcome.FAILED),
    _code("bad-json", 200, "isv.INVALID_JSON_PARAM", Outcome.FAILED),
    _code("blacklist", 200, "isv.BLACK_KEY_CONTROL_LIMIT", Outcome.FAILED),
    _code("unknown-isv", 200, "isv.SOMETHING_NEW", Outcome.FAILED),
    _code("key-not-found", 404, "InvalidAccessKeyId.NotFound", Outcome.FAILED, "aliyun.invalidaccesskeyid.notfound"),
    _code("bad-signature", 400, "SignatureDoesNotMatch", Outcome.FAILED, "aliyun.signaturedoesnotmatch"),
    _code("out-of-money", 200, "isv.AMOUNT_NOT_ENOUGH", Outcome.FAILED),
    _code("code-none-string", 500, "None", Outcome.RETRY, "http.500"),  # the SDK writes f"{None}"
    kit.Case("nothing", (None, None), Outcome.RETRY, "error", None),
    kit.Case("ok-without-biz-id", (200, "OK"), Outcome.UNCERTAIN, None, None),
]


@pytest.mark.parametrize("case", CASES, ids=kit.case_id)
def test_classify(case):
    if case.id == "ok-without-biz-id":
        return kit.check_case(lambda s, c: classify(s, c), case)
    kit.check_case(_classify, case, max_retry_after=MAX_RETRY_AFTER)


@pytest.mark.parametrize("code", ["InvalidAccessKeyId.NotFound", "SignatureDoesNotMatch", "isv.OUT_OF_SERVICE",
                                  "isv.AMOUNT_NOT_ENOUGH", "isp.RAM_PERMISSION_DENY"])
def test_account_problems_need_an_operator(code):
    result = classify(400, code)
    assert result.outcome is Outcome.FAILED and result.operator and "operator action needed" in result.detail


def test_a_number_or_template_problem_is_no_operator_alarm():
    assert not classify(200, "isv.MOBILE_NUMBER_ILLEGAL").operator
    assert not classify(200, "isv.SMS_TEMPLATE_ILLEGAL").operator


def _through_sdk(exc: BaseException) -> BaseException:
    """An exception the way tea-openapi hands it on: an IOError becomes a RetryError holding
    only its message (the original on the chain), all of it inside an UnretryableException."""
    inner = exc
    if isinstance(exc, OSError):
        try:
            try:
                raise exc
            except OSError as e:
                raise RetryError(str(e))  # noqa: B904 - what the SDK does
        except RetryError as wrapped:
            inner = wrapped
    return DaraUnretryable(RetryPolicyContext(retries_attempted=1, exception=inner))


# Where an SMS differs from a de-duplicating webhook: a request that may have gone out is UNCERTAIN.
_TRANSPORT = {"exc-timeout": (Outcome.UNCERTAIN, "timeout"), "exc-server-timeout": (Outcome.UNCERTAIN, "timeout"),
              "exc-connection-timeout": (Outcome.RETRY, "connect"), "exc-reset": (Outcome.UNCERTAIN, "reset"),
              "exc-reset-plain": (Outcome.UNCERTAIN, "reset"),
              "exc-disconnected": (Outcome.UNCERTAIN, "disconnected")}


def _transport_cases(wrap) -> list[kit.Case]:  # noqa: ANN001
    rows = kit.aiohttp_transport_cases(lambda exc: (wrap(exc),))
    out = [replace(r, id=f"{r.id}{'-sdk' if wrap is _through_sdk else ''}") for r in rows]
    return [replace(r, outcome=_TRANSPORT[row.id][0], code=_TRANSPORT[row.id][1]) if row.id in _TRANSPORT else r
            for r, row in zip(out, rows)]


TRANSPORT = [*_transport_cases(lambda exc: exc), *_transport_cases(_through_sdk),
             kit.Case("exc-bad-json", (ValueError("Expecting value"),), Outcome.UNCERTAIN, "protocol", None),
             kit.Case("exc-unexpected", (RuntimeError("bug"),), Outcome.UNCERTAIN, "error", None)]


@pytest.mark.parametrize("case", TRANSPORT, ids=kit.case_id)
def test_classify_exception(case):
    kit.check_case(classify_exception, case)


def test_stable_codes_are_lower_case_and_safe():
    for raw in ("isv.BUSINESS_LIMIT_CONTROL", "MK:0000", "IC:0015", "  ", "InvalidAccessKeyId.NotFound"):
        assert kit.CODE_RE.match(stable(raw)), raw
    assert stable("MK:0000") == "aliyun.mk_0000"


# --- configuration -----------------------------------------------------------------------------


def test_the_section_is_read_from_the_top_level_of_the_config(tmp_path):
    path = tmp_path / "warnd.yaml"
    path.write_text(json.dumps({"aliyun_sms": {"enabled": True, "access_key_id": KEY, "access_key_secret": SECRET,
                                               "sign_name": SIGN, "push_token": TOKEN, "templates": TEMPLATES,
                                               "per_number": {"minute": 2}}}))
    section = load_config(path).channel("aliyun_sms")
    assert isinstance(section, AliyunSmsConfig) and section.enabled
    assert section.templates["warning"].code == "SMS_100"
    assert (section.per_number.minute, section.per_number.hour, section.per_number.day) == (2, 20, 50)
    assert not load_config(None).channel("aliyun_sms").enabled


@pytest.mark.parametrize(("changes", "says"), [
    ({"access_key_secret": ""}, "access_key_secret"),
    ({"push_token": "short"}, "push_token"),
    ({"templates": {}}, "templates.warning"),
    ({"templates": {"warning": {"code": "SMS_1", "params": {"level": "level"}}}}, "drill"),
    ({"templates": {"warning": {"code": "SMS_1", "params": {"d": "drill", "x": "nonsense"}}}}, "nonsense"),
    ({"templates": {**TEMPLATES, "speech": {"code": "SMS_9", "params": {"d": "drill"}}}}, "speech"),
])
def test_an_incomplete_section_is_refused_at_load(changes, says):
    with pytest.raises(ValidationError, match=says):
        config(**changes)


def test_the_spec_declares_the_channel():
    assert (SPEC.name, SPEC.audience.value, SPEC.address, SPEC.dedupes, SPEC.public) == (
        "aliyun_sms", "person", "phone", False, False)
    assert SPEC.confirm_by_text and SPEC.door_list and not SPEC.callbacks
    assert {k: v.kind.value for k, v in SPEC.inbound.items()} == {"reports": "receipts", "replies": "replies"}
    assert isinstance(SPEC.build(config(), None, None), AliyunSmsChannel)


# --- rendering ------------------------------------------------------------------------------------


@pytest.fixture
def offline():
    return AliyunSmsChannel(config())


def _body(rendered) -> tuple[str, dict]:  # noqa: ANN001
    body = json.loads(rendered.body)
    return body["TemplateCode"], json.loads(body["TemplateParam"])


def test_render_languages(offline):
    out = kit.check_languages(offline, lambda lang: message(language=lang))
    assert out["zh-CN"].text == "【县预警中心】红色暴雨预警：岳麓区莲花镇，暴雨红色预警。"
    assert out["en"].text == "【县预警中心】Red Rainstorm warning for Lianhua Town, Yuelu District: Red rainstorm warning."
    code, params = _body(out["zh-CN"])
    assert code == "SMS_100" and params == {"drill": "", "update": "", "level": "红色", "event": "暴雨",
                                            "area": "岳麓区莲花镇", "confirm": ""}
    assert _body(out["en"])[1]["event"] == "Rainstorm"


def test_render_drill_marking(offline):
    kit.check_drill_marking(offline, lambda alert: message(alert=alert))
    drill = kit.sample_alert(status=Status.EXERCISE)
    assert offline.render(message(alert=drill)).text.startswith("【县预警中心】【演练】")
    assert _body(offline.render(message(alert=drill)))[1]["drill"] == "【演练】"  # on the phone, not only here
    assert _body(offline.render(message(alert=drill, language="en")))[1]["drill"] == "[EXERCISE] "


def test_render_confirmation_request(offline):
    rendered = offline.render(message(must_confirm=True, short_code="W1A"))
    assert rendered.text.endswith("回复1确认（或回复W1A）")
    assert _body(rendered)[1]["confirm"] == "回复1确认（或回复W1A）"
    assert "Reply 1 to confirm (or W1A)" in offline.render(message(language="en", must_confirm=True,
                                                                    short_code="W1A")).text


def test_render_update_and_cancel(offline):
    assert "【更新】" in offline.render(message(alert=kit.sample_alert(msg_type=MsgType.UPDATE))).text
    assert "[CANCELLED]" in offline.render(message(alert=kit.sample_alert(msg_type=MsgType.CANCEL),
                                                   language="en")).text


def test_a_door_ask_and_a_door_list_use_their_own_templates(offline):
    about = {"grid": "421126001001001", "grid_name": "河口村一组", "person": "张三", "phone": "+8613800000001"}
    ask = offline.render(message(purpose="door_ask", about=about, must_confirm=True))
    assert "河口村一组网格责任人张三（+8613800000001）尚未确认" in ask.text
    assert _body(ask)[0] == "SMS_200" and _body(ask)[1]["person"] == "张三"
    walk = offline.render(message(purpose="door_to_door", link="https://warnd.example/l/abc"))
    assert _body(walk) == ("SMS_300", {"drill": "", "level": "红色", "event": "暴雨",
                                       "link": "https://warnd.example/l/abc"})


def test_a_language_may_have_its_own_approved_template():
    channel = AliyunSmsChannel(config(templates={**TEMPLATES, "warning.en": {"code": "SMS_101", "params": PARAMS}}))
    assert _body(channel.render(message(language="en")))[0] == "SMS_101"
    assert _body(channel.render(message(language="zh-CN")))[0] == "SMS_100"


def test_values_are_cut_to_aliyuns_variable_length(offline):
    alert = kit.sample_alert()
    alert = replace(alert, infos=(replace(alert.infos[0], areas=(replace(alert.infos[0].areas[0],
                                                                         area_desc="很长的地名" * 20),)),))
    rendered = offline.render(message(alert=alert))
    area = _body(rendered)[1]["area"]
    assert len(area) == 35 and area.endswith("…") and area in rendered.text
    link = "https://warnd.example/l/" + "a" * 60
    assert _body(offline.render(message(purpose="door_to_door", link=link)))[1]["link"] == link  # never cut


def test_segments_are_counted_as_aliyun_bills_them(offline):
    assert segments("字" * 70) == 1 and segments("字" * 71) == 2 and segments("a" * 134) == 2
    assert segments("a" * 135) == 3 and segments("") == 0
    assert offline.render(message()).content_type.endswith("segments=1")
    long = offline.render(message(language="en", must_confirm=True, short_code="W1A"))
    assert long.content_type.endswith(f"segments={segments(long.text)}") and segments(long.text) == 2


async def test_a_purpose_without_a_template_fails_for_an_operator():
    channel = AliyunSmsChannel(config(templates={"warning": TEMPLATES["warning"]}))
    msg = message(purpose="door_alarm", about={"grid_name": "河口村一组", "address": "3号", "outcome": "refused"})
    rendered = kit.check_render(channel, msg)
    assert "河口村一组3号拒绝转移" in rendered.text
    result = await channel.send(msg, rendered)
    assert (result.outcome, result.code, result.operator) == (Outcome.FAILED, "aliyun.no_template", True)


# --- sending: the real SDK against the simulator ---------------------------------------------------


@pytest.fixture
async def sim():
    s = AliyunSimulator(KEY, SECRET, sign_names=(SIGN,), templates=APPROVED, report_after=0)
    await s.start()
    yield s
    await s.stop()


def channel_for(sim: AliyunSimulator, **changes) -> AliyunSmsChannel:
    return AliyunSmsChannel(config(sim.endpoint, **changes))


async def send(channel: AliyunSmsChannel, msg):  # noqa: ANN001, ANN201
    return await channel.send(msg, channel.render(msg))


async def test_send_ok(sim):
    channel = channel_for(sim)
    msg = message(delivery_id=42, attempt=3, must_confirm=True)
    result = await send(channel, msg)
    kit.check_result(result, "send")
    assert result.outcome is Outcome.SENT and result.code == "aliyun.ok"
    [record] = sim.messages
    assert (record.biz_id, record.phone, record.sign_name, record.template_code, record.out_id) == (
        result.provider_ref, "13800001001", SIGN, "SMS_100", "42.3")
    assert record.text == "【县预警中心】红色暴雨预警：岳麓区莲花镇，请做好防范。回复1确认"
    assert sim.stats.refused == 0 and sim.stats.requests == 1


async def test_many_sends_each_exactly_once(sim):
    channel = channel_for(sim)
    numbers = [f"+86139{i:08d}" for i in range(30)]
    results = await kit.check_send_never_raises(channel, [message(n, delivery_id=i) for i, n in enumerate(numbers)])
    assert {r.outcome for r in results} == {Outcome.SENT} and len({r.provider_ref for r in results}) == 30
    assert sorted(m.phone for m in sim.messages) == sorted(n[3:] for n in numbers)


async def test_a_wrong_secret_is_refused_by_the_signature_and_needs_an_operator(sim):
    result = await send(channel_for(sim, access_key_secret="not-the-secret"), message())
    assert (result.outcome, result.code, result.operator) == (Outcome.FAILED, "aliyun.signaturedoesnotmatch", True)
    result = await send(channel_for(sim, access_key_id="LTAIunknown"), message())
    assert (result.outcome, result.code, result.operator) == (
        Outcome.FAILED, "aliyun.invalidaccesskeyid.notfound", True)
    assert not sim.messages and sim.stats.refused == 2


async def test_flow_control_is_retried_later_and_the_sdk_never_repeats_a_post(sim):
    channel = channel_for(sim)
    sim.fail("isv.BUSINESS_LIMIT_CONTROL")
    result = await send(channel, message())
    assert (result.outcome, result.code) == (Outcome.RETRY, "aliyun.isv.business_limit_control")
    sim.fail("Throttling.User", status=429, retry_after_ms=3000)
    result = await send(channel, message())
    assert (result.outcome, result.code, result.retry_after) == (Outcome.RETRY, "aliyun.throttling.user", 3.0)
    sim.fail("InternalError", status=500)
    result = await send(channel, message())
    assert (result.outcome, result.code) == (Outcome.RETRY, "aliyun.internalerror")
    assert sim.stats.requests == 3 and not sim.messages  # one POST each
    assert (await send(channel, message())).outcome is Outcome.SENT


async def test_a_timeout_after_the_request_went_out_is_uncertain(sim):
    sim.delay = 1.0
    result = await send(channel_for(sim, timeout_seconds=0.3), message())
    assert (result.outcome, result.code) == (Outcome.UNCERTAIN, "timeout")
    assert sim.stats.requests == 1


async def test_a_refused_connection_is_retried():
    async with kit.TroubleServer() as trouble:
        endpoint = trouble.refused_url.split("//")[1].split("/")[0]
    result = await send(AliyunSmsChannel(config(endpoint)), message())
    assert (result.outcome, result.code) == (Outcome.RETRY, "connect")


@pytest.mark.parametrize(("changes", "code"), [
    ({"sign_name": "别人的签名"}, "aliyun.isv.sms_signature_illegal"),
    ({"templates": {"warning": {"code": "SMS_999", "params": PARAMS}}}, "aliyun.isv.sms_template_illegal"),
    ({"templates": {"warning": {"code": "SMS_100", "params": {"drill": "drill", "level": "level"}}}},
     "aliyun.isv.template_missing_parameters"),
])
async def test_sign_and_template_errors_fail(sim, changes, code):
    result = await send(channel_for(sim, **changes), message())
    assert (result.outcome, result.code, result.operator) == (Outcome.FAILED, code, False)


async def test_an_invalid_number_fails(sim):
    result = await send(channel_for(sim), message("+86123"))
    assert (result.outcome, result.code) == (Outcome.FAILED, "aliyun.isv.mobile_number_illegal")


# --- what Aliyun pushes: reports and replies -----------------------------------------------------


@dataclass
class Sink:
    receipts: list = field(default_factory=list)
    replies: list = field(default_factory=list)

    async def receipt(self, channel, delivery_id, receipt, attempt=None):  # noqa: ANN001, ANN201
        self.receipts.append((channel, delivery_id, attempt, receipt))
        return True

    async def reply(self, channel, reply):  # noqa: ANN001, ANN201
        self.replies.append((channel, reply))
        return Answered("已确认")


def push(body: bytes | str, token: str | None = TOKEN) -> InboundRequest:
    query = {} if token is None else {"token": token}
    return InboundRequest("POST", "https://warnd.example/providers/aliyun_sms/reports", query,
                          {"Content-Type": "application/json"}, {},
                          body.encode() if isinstance(body, str) else body, signed_delivery=lambda: (0, None))


REPORT = {"phone_number": "13800001001", "send_time": "2025-07-01 08:01:00", "report_time": "2025-07-01 08:01:05",
          "success": True, "err_code": "DELIVERED", "err_msg": "用户接收成功", "sms_size": "1",
          "biz_id": "932702304080415357^0", "out_id": "42.3"}
UP = {"phone_number": "13800001001", "send_time": "2025-07-01 08:02:00", "content": "1", "sign_name": SIGN,
      "dest_code": "1234", "sequence_id": 1234567}


def test_report_receipts():
    assert report_receipt(REPORT) == (42, 3, kit_receipt(ReceiptState.DELIVERED, "aliyun.delivered"))
    failed = report_receipt({**REPORT, "success": False, "err_code": "MK:0001", "err_msg": "停机"})
    assert failed == (42, 3, kit_receipt(ReceiptState.FAILED, "aliyun.mk_0001", "停机"))
    assert report_receipt({**REPORT, "success": "false"})[2].state is ReceiptState.FAILED
    assert report_receipt({**REPORT, "out_id": "not-ours"})[:2] == (None, None)
    assert report_receipt({**REPORT, "out_id": None})[:2] == (None, None)


def kit_receipt(state, code, detail=""):  # noqa: ANN001, ANN201
    from warnd_channels.base import Receipt
    return Receipt(state, code, REPORT["biz_id"], detail)


async def test_a_report_push_settles_each_attempt_and_answers_like_aliyun_wants(offline):
    sink = Sink()
    body = json.dumps([REPORT, {**REPORT, "out_id": "43.1", "success": False, "err_code": "IC:0015"}])
    answer = await reports(offline, push(body), sink)
    assert answer.status == 200 and json.loads(answer.body) == {"code": 0, "msg": "成功"}
    assert [(c, d, a, r.state, r.code) for c, d, a, r in sink.receipts] == [
        ("aliyun_sms", 42, 3, ReceiptState.DELIVERED, "aliyun.delivered"),
        ("aliyun_sms", 43, 1, ReceiptState.FAILED, "aliyun.ic_0015")]


async def test_a_reply_push_is_a_reply_from_the_e164_number(offline):
    sink = Sink()
    answer = await replies(offline, push(json.dumps([UP])), sink)
    assert json.loads(answer.body) == {"code": 0, "msg": "成功"}
    [(channel, reply)] = sink.replies
    assert (channel, reply.provider_ref, reply.from_address, reply.body) == ("aliyun_sms", "1234567", GOOD, "1")


@pytest.mark.parametrize("token", [None, "", "wrong-token-0123456789ab", TOKEN[:-1]])
async def test_a_push_without_the_token_is_refused_and_changes_nothing(offline, token):
    sink = Sink()
    for handler in (reports, replies):
        with pytest.raises(WarndError) as caught:
            await handler(offline, push(json.dumps([REPORT, UP]), token), sink)
        assert caught.value.code == "provider.bad_signature" and caught.value.status == 403
    assert not sink.receipts and not sink.replies


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe", b'"a string"', b"[1, 2]", b'[{"success": true}]',
                                  b'[{"content": "1"}]'])
async def test_a_malformed_push_is_a_clear_error(offline, body):
    sink = Sink()
    for handler in (reports, replies):
        with pytest.raises(WarndError) as caught:
            await handler(offline, push(body), sink)
        assert caught.value.code == "request.invalid" and caught.value.problems
    assert not sink.receipts and not sink.replies


async def test_the_simulator_pushes_what_the_handlers_read(offline):
    """The simulator's SmsReport and SmsUp bodies, through the channel's own handlers."""
    sink = Sink()
    received: list[tuple[str, bytes]] = []

    async def take(request: aiohttp.web.Request) -> aiohttp.web.Response:
        received.append((request.path, await request.read()))
        handler = reports if request.path.endswith("reports") else replies
        answer = await handler(offline, push(received[-1][1], request.query.get("token")), sink)
        return aiohttp.web.Response(status=answer.status, body=answer.body, content_type=answer.content_type)

    app = aiohttp.web.Application()
    app.router.add_post("/{kind}", take)
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    from warnd.sim.aliyun import Phone
    sim = AliyunSimulator(KEY, SECRET, sign_names=(SIGN,), templates=APPROVED, report_after=0,
                          report_url=f"http://{host}:{port}/reports?token={TOKEN}",
                          up_url=f"http://{host}:{port}/replies?token={TOKEN}",
                          phones={"13800001001": Phone(reply="1", reply_after=0)})
    await sim.start()
    try:
        channel = channel_for(sim)
        result = await send(channel, message(delivery_id=7, attempt=2))
        await sim.wait_idle()
    finally:
        await sim.stop()
        await runner.cleanup()
    [(_, delivery, attempt, receipt)] = sink.receipts
    assert (delivery, attempt, receipt.state, receipt.provider_ref) == (7, 2, ReceiptState.DELIVERED,
                                                                          result.provider_ref)
    [(_, reply)] = sink.replies
    assert (reply.from_address, reply.body) == (GOOD, "1")
    assert [status for _, _, status in sim.pushes] == [200, 200] and sim.stats.pushes_failed == 0


async def test_the_simulator_checks_the_signature_over_what_was_sent(sim):
    """A request the SDK signed, replayed as it was: its nonce is refused; with another
    nonce or another number, the signature no longer matches."""
    assert (await send(channel_for(sim), message())).outcome is Outcome.SENT
    [(path_qs, headers, body)] = sim.raw
    changed_nonce = {**headers, "x-acs-signature-nonce": headers["x-acs-signature-nonce"] + "0"}
    attempts = [(path_qs, headers), (path_qs, changed_nonce), (path_qs.replace("13800001001", "13800001002"), headers)]
    answers = []
    async with aiohttp.ClientSession() as http:
        for target, sent_headers in attempts:
            async with http.post(f"http://{sim.endpoint}{target}", data=body, headers=sent_headers) as answer:
                answers.append((answer.status, (await answer.json())["Code"]))
    assert answers == [(400, "SignatureNonceUsed"), (400, "SignatureDoesNotMatch"), (400, "SignatureDoesNotMatch")]
    assert len(sim.messages) == 1
