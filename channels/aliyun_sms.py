"""SMS through Alibaba Cloud's SMS service (阿里云短信服务), with its official SDK.

Domestic SMS must use templates Aliyun approved: a delivery sends a template code and
the values of its variables (TemplateParam), never free text. `templates` in the
configuration names, per purpose (warning, door_ask, door_to_door, door_alarm; also
`<purpose>.<language>`, e.g. `warning.en`), the approved code and which warnd value
fills each variable. `render()` puts the code and values into the body, and the text as
the phone shows it (【签名】 + the template under templates/aliyun_sms/, filled with the
same values) into `Rendered.text`, with the segments Aliyun bills (70 characters, 67
each when longer, the signature counted) in the content type: the shared rate counts them.

Each send carries OutId "<delivery>.<attempt>", so a delivery report (SmsReport) settles
the attempt it is about. Reports and replies (SmsUp) arrive by Aliyun's HTTP push
(HTTP批量推送) at /providers/aliyun_sms/reports and /replies; the push is not signed,
so the URL configured at Aliyun carries a secret `?token=` (the `push_token`).

SDK traps handled here (alibabacloud_dysmsapi20170525 4.6, tea-openapi 0.4): it retries
when `retry_options` says so, with a blocking sleep (off: a repeated POST is a second
SMS); its own timeouts are per socket operation (ours, `timeout_seconds`, bounds the
whole call); a transport failure reaches us as an UnretryableException around a
RetryError whose message is all that is left, so the original is found on the chain;
it reads HTTP(S)_PROXY from the environment, also for the simulator's loopback URL.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import re
from collections.abc import Mapping
from typing import Literal

import aiohttp
from alibabacloud_dysmsapi20170525 import models as sms_models
from alibabacloud_dysmsapi20170525.client import Client as SmsClient
from alibabacloud_tea_openapi import utils_models as openapi_models
from darabonba.policy.retry import RetryOptions
from darabonba.runtime import RuntimeOptions
from pydantic import Field, model_validator
from Tea.exceptions import TeaException, UnretryableException

from warnd.config import ChannelConfig, PerNumber, Strict
from warnd.domain.errors import error
from warnd.domain.phones import normalise
from warnd.domain.sms_segments import LIMITS
from warnd.render import render as render_template
from warnd.render import warning_context

from .base import (Audience, ChannelSpec, Inbound, InboundKind, InboundRequest, InboundResponse, InboundSink,
                   Message, Outcome, Receipt, ReceiptState, Rendered, Reply, SendResult)

log = logging.getLogger("warnd_channels.aliyun_sms")
NAME = "aliyun_sms"
PURPOSES = ("warning", "door_ask", "door_to_door", "door_alarm")
TEMPLATE_OF = {"household": "warning"}  # other purposes a person may get, by the template they use
DETAIL_CHARS = 256
MAX_RETRY_AFTER = 600.0
CONNECT_SECONDS = 5.0  # the SDK's connect timeout, below ours: a refused connect is then known unsent
PUSH_OK = InboundResponse(200, json.dumps({"code": 0, "msg": "成功"}, ensure_ascii=False).encode(),
                          "application/json")

# --- configuration --------------------------------------------------------------------------

# The warnd values a template variable can take (see `values`).
VALUES = ("drill", "update", "level", "event", "headline", "area", "instruction", "sender", "short_code",
          "confirm", "link", "grid", "person", "phone", "address", "situation")
UNCUT = frozenset({"link"})  # a cut link leads nowhere: a link variable is approved with its own length


class AliyunTemplate(Strict):
    """An approved template: its code, and which warnd value fills each of its variables."""

    code: str = Field(min_length=1)  # SMS_123456789
    params: dict[str, str] = {}  # template variable → one of VALUES

    @model_validator(mode="after")
    def _known_values(self) -> AliyunTemplate:
        unknown = sorted(set(self.params.values()) - set(VALUES))
        if unknown:
            raise ValueError(f"unknown values {unknown}; known: {', '.join(VALUES)}")
        if "drill" not in self.params.values():  # a drill must say so on the phone
            raise ValueError("the template needs a variable filled with `drill` (【演练】 for exercises and tests)")
        return self


class AliyunSmsConfig(ChannelConfig):
    enabled: bool = False
    access_key_id: str = ""
    access_key_secret: str = ""
    sign_name: str = ""  # the approved signature (签名), without 【】
    endpoint: str = "dysmsapi.aliyuncs.com"  # host[:port]; a simulator's for tests
    protocol: Literal["https", "http"] = "https"
    templates: dict[str, AliyunTemplate] = {}  # purpose or "<purpose>.<language>" → template
    push_token: str = ""  # the secret in the push URLs configured at Aliyun (?token=…)
    param_max_chars: int = Field(35, ge=1)  # a variable's value is cut to this (isv.PARAM_LENGTH_LIMIT)
    # SendSms's per-account QPS was not verifiable here: a conservative rate (segments a second)
    rate_per_second: float = Field(200.0, gt=0)
    concurrency: int = Field(32, ge=1)
    refused_free_minutes: float = Field(60.0, ge=0)
    # Aliyun's flow control per number: notifications 50 a day per signature and template
    # (verification codes 1/min, 5/h, 10/day); as SmsConfig, room for a warning, its update,
    # door-to-door asks and a cancel.
    per_number: PerNumber = PerNumber(minute=5, hour=20, day=50)

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> AliyunSmsConfig:
        if not self.enabled:
            return self
        missing = [name for name in ("access_key_id", "access_key_secret", "sign_name") if not getattr(self, name)]
        if missing:
            raise ValueError(f"aliyun_sms is enabled but {', '.join(missing)} not set")
        if len(self.push_token) < 16:
            raise ValueError("push_token must be a secret of 16 characters or more (the push is not signed)")
        if "warning" not in self.templates:
            raise ValueError("templates.warning (an approved template code) is required")
        unknown = sorted(k for k in self.templates if k.split(".")[0] not in PURPOSES)
        if unknown:
            raise ValueError(f"templates for unknown purposes {unknown}; known: {', '.join(PURPOSES)}")
        return self


# --- classification: Aliyun's codes → what to do ---------------------------------------------

# code → (outcome, needs a person); anything else: by HTTP status, isp.* retried
CODES: dict[str, tuple[Outcome, bool]] = {
    "OK": (Outcome.SENT, False),
    # flow control and platform trouble: nothing was sent, later may work
    "isv.BUSINESS_LIMIT_CONTROL": (Outcome.RETRY, False),
    "Throttling.User": (Outcome.RETRY, False),
    "Throttling.Api": (Outcome.RETRY, False),
    "Throttling": (Outcome.RETRY, False),
    "ServiceUnavailable": (Outcome.RETRY, False),
    "InternalError": (Outcome.RETRY, False),
    "isp.SYSTEM_ERROR": (Outcome.RETRY, False),
    "isp.GATEWAY_ERROR": (Outcome.RETRY, False),
    # this number or this message can't be sent: escalation takes over
    "isv.MOBILE_NUMBER_ILLEGAL": (Outcome.FAILED, False),
    "isv.MOBILE_COUNT_OVER_LIMIT": (Outcome.FAILED, False),
    "isv.BLACK_KEY_CONTROL_LIMIT": (Outcome.FAILED, False),
    "isv.PARAM_LENGTH_LIMIT": (Outcome.FAILED, False),
    "isv.PARAM_NOT_SUPPORT_URL": (Outcome.FAILED, False),
    "isv.INVALID_PARAMETERS": (Outcome.FAILED, False),
    "isv.INVALID_JSON_PARAM": (Outcome.FAILED, False),
    "isv.TEMPLATE_MISSING_PARAMETERS": (Outcome.FAILED, False),
    "isv.SMS_TEMPLATE_ILLEGAL": (Outcome.FAILED, False),
    "isv.SMS_SIGNATURE_ILLEGAL": (Outcome.FAILED, False),
    "isv.SMS_SIGN_ILLEGAL": (Outcome.FAILED, False),
    # the account: nothing will go out until a person acts
    "InvalidAccessKeyId.NotFound": (Outcome.FAILED, True),
    "InvalidAccessKeyId.Inactive": (Outcome.FAILED, True),
    "SignatureDoesNotMatch": (Outcome.FAILED, True),
    "IncompleteSignature": (Outcome.FAILED, True),
    "Forbidden.RAM": (Outcome.FAILED, True),
    "isp.RAM_PERMISSION_DENY": (Outcome.FAILED, True),
    "isv.OUT_OF_SERVICE": (Outcome.FAILED, True),
    "isv.AMOUNT_NOT_ENOUGH": (Outcome.FAILED, True),
    "isv.PRODUCT_UN_SUBSCRIPT": (Outcome.FAILED, True),
    "isv.ACCOUNT_NOT_EXISTS": (Outcome.FAILED, True),
    "isv.ACCOUNT_ABNORMAL": (Outcome.FAILED, True),
    "isv.DAY_LIMIT_CONTROL": (Outcome.FAILED, True),  # the account's daily cap
}
RETRY_STATUSES = frozenset({408, 425, 429})
_UNSTABLE = re.compile(r"[^a-z0-9_.-]+")


def stable(code: str) -> str:
    """An Aliyun code as a stable, lower-case warnd code: isv.BUSINESS_LIMIT_CONTROL →
    aliyun.isv.business_limit_control, MK:0000 → aliyun.mk_0000."""
    return "aliyun." + (_UNSTABLE.sub("_", code.strip().lower()).strip("_.-") or "unknown")


def classify(status: int | None, code: str | None, *, retry_after: float | None = None, detail: str = "",
             biz_id: str | None = None) -> SendResult:
    """What one SendSms answer means: its HTTP status and Aliyun code (body or error)."""
    code = None if code in (None, "", "None") else code
    label = " ".join(p for p in (f"HTTP {status}" if status else "", code or "", detail) if p)[:DETAIL_CHARS]
    if code is None:
        if status is None:
            return SendResult(Outcome.RETRY, "error", detail="neither a status nor a code")
        if status in RETRY_STATUSES or 500 <= status < 600:
            return SendResult(Outcome.RETRY, f"http.{status}", retry_after=_cap(retry_after), detail=label)
        if 200 <= status < 300:  # an answer without a Code: we can't know what Aliyun did
            return SendResult(Outcome.UNCERTAIN, "aliyun.no_code", detail=label)
        return SendResult(Outcome.FAILED, f"http.{status}", detail=label)
    outcome, operator = CODES.get(code, (None, False))
    if outcome is None:
        retry = code.startswith("isp.") or status in RETRY_STATUSES or (status is not None and 500 <= status < 600)
        outcome = Outcome.RETRY if retry else Outcome.FAILED
    if outcome is Outcome.SENT:
        if not biz_id:
            return SendResult(Outcome.UNCERTAIN, "aliyun.no_biz_id", detail=label)
        return SendResult(Outcome.SENT, "aliyun.ok", provider_ref=biz_id)
    if outcome is Outcome.RETRY:
        return SendResult(outcome, stable(code), retry_after=_cap(retry_after), detail=label)
    if operator:
        label = f"Aliyun refused the account, operator action needed (check aliyun_sms credentials); {label}"
    return SendResult(outcome, stable(code), detail=label[:DETAIL_CHARS], operator=operator)


def _cap(seconds: float | None) -> float | None:
    return None if seconds is None else min(max(seconds, 0.0), MAX_RETRY_AFTER)


def classify_exception(exc: BaseException) -> SendResult:
    """An exception from the SDK or our timeout. Nothing sent → retry; maybe sent → uncertain."""
    if isinstance(exc, TeaException) and not isinstance(exc, UnretryableException) and exc.code is not None:
        status = getattr(exc, "status_code", None)
        retry_after = getattr(exc, "retry_after", None)  # x-acs-retry-after, milliseconds
        return classify(status, str(exc.code), retry_after=None if retry_after is None else retry_after / 1000,
                        detail=str(getattr(exc, "message", "") or ""))
    cause = _original(exc)
    detail = f"{type(cause).__name__}: {cause}"[:DETAIL_CHARS]
    if isinstance(cause, aiohttp.ConnectionTimeoutError):  # never connected
        return SendResult(Outcome.RETRY, "connect", detail=detail)
    if isinstance(cause, TimeoutError):  # ours or a read timeout: the request may have been taken
        return SendResult(Outcome.UNCERTAIN, "timeout", detail=detail)
    if isinstance(cause, aiohttp.ClientSSLError):
        return SendResult(Outcome.RETRY, "tls", detail=detail)
    if isinstance(cause, (aiohttp.ClientConnectorError, ConnectionRefusedError)):
        return SendResult(Outcome.RETRY, "connect", detail=detail)
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        return SendResult(Outcome.UNCERTAIN, "disconnected", detail=detail)
    if isinstance(cause, (aiohttp.ClientOSError, OSError)):
        return SendResult(Outcome.UNCERTAIN, "reset", detail=detail)
    if isinstance(cause, aiohttp.InvalidURL):  # the endpoint is wrong: nothing was sent
        return SendResult(Outcome.FAILED, "url", detail=detail, operator=True)
    if isinstance(cause, (aiohttp.ClientPayloadError, aiohttp.ClientResponseError, ValueError)):
        return SendResult(Outcome.UNCERTAIN, "protocol", detail=detail)
    return SendResult(Outcome.UNCERTAIN, "error", detail=detail)


def _original(exc: BaseException) -> BaseException:
    """Under the SDK's wrappers (UnretryableException → RetryError → the aiohttp error)."""
    seen = 0
    while seen < 8:
        seen += 1
        if isinstance(exc, UnretryableException) and exc.inner_exception is not None:
            exc = exc.inner_exception
        elif type(exc).__name__ == "RetryError" and (exc.__cause__ or exc.__context__) is not None:
            exc = exc.__cause__ or exc.__context__
        else:
            break
    return exc


# --- rendering --------------------------------------------------------------------------------

def segments(text: str) -> int:
    """SMS Aliyun bills for a domestic text: one up to 70 characters, else 67 each."""
    single, per_part = LIMITS["UCS-2"]
    chars = len(text.encode("utf-16-le")) // 2
    return 0 if chars == 0 else 1 if chars <= single else math.ceil(chars / per_part)


def values(message: Message, language: str) -> dict[str, str]:
    """Every warnd value a template variable may name, in the recipient's language."""
    c = warning_context(message.alert, message.level, language)
    about = message.about or {}
    zh = language.lower().startswith("zh")
    areas = c["info"].areas if c["info"] is not None else message.alert.areas  # the recipient's language
    update = {"Update": "【更新】" if zh else "[UPDATE] ", "Cancel": "【解除】" if zh else "[CANCELLED] "}
    confirm = ""
    if message.must_confirm:
        code = message.short_code
        confirm = (f"回复1确认{f'（或回复{code}）' if code else ''}" if zh
                   else f"Reply 1 to confirm{f' (or {code})' if code else ''}")
    if about.get("address"):
        situation = ("拒绝转移" if zh else "refuses to leave") if about.get("outcome") == "refused" else \
            ("需要帮助" if zh else "needs help")
    else:
        parts = [(about.get("refused", "0"), "户拒绝转移", " refusing to leave"),
                 (about.get("needs_help", "0"), "户需要帮助", " needing help")]
        situation = ("、" if zh else " and ").join(f"{n}{zh_s if zh else en_s}" for n, zh_s, en_s in parts
                                                   if n not in ("", "0"))
    return {"drill": ("【演练】" if zh else "[EXERCISE] ") if c["drill"] else "",
            "update": update.get(c["msg_type"], ""), "level": c["level_zh"] if zh else c["level_en"].capitalize(),
            "event": c["event"], "headline": c["headline"],
            "area": ("、" if zh else ", ").join(a.area_desc for a in areas),
            "instruction": c["instruction"], "sender": c["sender_name"], "short_code": message.short_code or "1",
            "confirm": confirm, "link": message.link, "grid": about.get("grid_name", ""),
            "person": about.get("person", ""), "phone": about.get("phone", ""),
            "address": about.get("address", ""), "situation": situation}


def _cut(value: str, chars: int) -> str:
    return value if len(value) <= chars else value[:chars - 1] + "…"


class AliyunSmsChannel:
    name = NAME

    def __init__(self, config: AliyunSmsConfig) -> None:
        self.config = config
        connect = min(CONNECT_SECONDS, config.timeout_seconds / 2)
        self.client = SmsClient(openapi_models.Config(
            access_key_id=config.access_key_id, access_key_secret=config.access_key_secret,
            endpoint=config.endpoint, protocol=config.protocol, region_id="cn-hangzhou",
            connect_timeout=int(connect * 1000), read_timeout=int(config.timeout_seconds * 1000),
            retry_options=RetryOptions({"retryable": False})))  # a repeated POST is a second SMS

    def template(self, purpose: str, language: str) -> tuple[str, AliyunTemplate | None]:
        """The purpose's name for templates, and its approved template for this language."""
        name = TEMPLATE_OF.get(purpose, purpose)
        name = name if name in PURPOSES else "warning"
        for key in (f"{name}.{language}", f"{name}.{language.split('-')[0]}", name):
            if key in self.config.templates:
                return name, self.config.templates[key]
        return name, None

    def render(self, message: Message) -> Rendered:
        language = message.recipient.language
        name, template = self.template(message.purpose, language)
        filled = {k: v if k in UNCUT else _cut(v, self.config.param_max_chars)
                  for k, v in values(message, language).items()}
        text = render_template(NAME, name, language, {**filled, "sign": self.config.sign_name})
        params = {var: filled[value] for var, value in template.params.items()} if template else {}
        body = {"TemplateCode": template.code if template else None,
                "TemplateParam": json.dumps(params, ensure_ascii=False, separators=(",", ":"))}
        n = segments(text)
        log.debug("aliyun sms rendered", extra={"delivery": message.delivery_id, "segments": n})
        return Rendered(json.dumps(body, ensure_ascii=False).encode("utf-8"),
                        f"application/json; charset=utf-8; segments={n}", text)

    async def send(self, message: Message, rendered: Rendered) -> SendResult:
        """SendSms once; never raises (cancellation still propagates)."""
        body = json.loads(rendered.body)
        if not body.get("TemplateCode"):
            return SendResult(Outcome.FAILED, "aliyun.no_template", operator=True,
                              detail=f"no approved template configured for {message.purpose!r} "
                                     f"(aliyun_sms.templates)")
        request = sms_models.SendSmsRequest(
            phone_numbers=provider_number(message.recipient.address), sign_name=self.config.sign_name,
            template_code=body["TemplateCode"], template_param=body["TemplateParam"],
            out_id=out_id(message.delivery_id, message.attempt))
        try:
            response = await asyncio.wait_for(
                self.client.send_sms_with_options_async(request, RuntimeOptions(autoretry=False)),
                self.config.timeout_seconds)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a result
            result = classify_exception(exc)
        else:
            answer = response.body
            result = classify(response.status_code, answer.code if answer else None,
                              detail=(answer.message or "") if answer else "",
                              biz_id=answer.biz_id if answer else None)
        log.log(logging.DEBUG if result.outcome is Outcome.SENT else logging.INFO, "aliyun sms send",
                extra={"delivery": message.delivery_id, "outcome": result.outcome.value, "code": result.code,
                       "biz_id": result.provider_ref})
        return result

    async def close(self) -> None:
        """Nothing held: the SDK opens a session per request."""


def out_id(delivery_id: int, attempt: int) -> str:
    return f"{delivery_id}.{attempt}"


def provider_number(e164: str) -> str:
    """How SendSms wants a number: a Chinese one as its 11 digits, others with their country code."""
    return e164[3:] if e164.startswith("+86") else e164.lstrip("+")


def e164(number: str) -> str:
    """A number as Aliyun pushes it (13800001001) in the directory's form (+8613800001001)."""
    try:
        return normalise(str(number))
    except ValueError:
        return str(number)


# --- inbound: Aliyun's HTTP push ------------------------------------------------------------

def check_token(config: AliyunSmsConfig, request: InboundRequest) -> None:
    token = request.query.get("token", "")
    if not config.push_token or not hmac.compare_digest(token.encode(), config.push_token.encode()):
        raise error("provider.bad_signature", "token", "the push URL's token is missing or wrong",
                    "推送地址中的 token 缺失或错误")


def _items(body: bytes, fields: tuple[str, ...]) -> list[dict]:
    """A push body: a JSON array of objects, each with `fields`."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise error("request.invalid", "body", "the push is not JSON", "推送内容不是 JSON") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(i, dict) for i in data):
        raise error("request.invalid", "body", "the push is not a JSON array of objects", "推送内容不是 JSON 对象数组")
    for n, item in enumerate(data):
        missing = [f for f in fields if f not in item]
        if missing:
            raise error("request.invalid", f"[{n}]", f"missing {', '.join(missing)}", f"缺少 {', '.join(missing)}")
    return data


def report_receipt(item: Mapping) -> tuple[int | None, int | None, Receipt]:
    """One SmsReport entry: the delivery and attempt its out_id names, and what it says."""
    delivery, _, attempt = str(item.get("out_id") or "").partition(".")
    ids = (int(delivery), int(attempt)) if delivery.isdigit() and attempt.isdigit() else (None, None)
    biz_id = str(item.get("biz_id") or "")
    success = item.get("success")
    if success is True or str(success).lower() == "true":
        return (*ids, Receipt(ReceiptState.DELIVERED, "aliyun.delivered", biz_id))
    err = str(item.get("err_code") or "failed")
    return (*ids, Receipt(ReceiptState.FAILED, stable(err), biz_id, str(item.get("err_msg") or "")[:DETAIL_CHARS]))


def up_reply(item: Mapping) -> Reply:
    """One SmsUp entry as a reply (applied once per sequence_id)."""
    return Reply(str(item.get("sequence_id")), e164(str(item.get("phone_number") or "")),
                 str(item.get("content") or ""))


async def reports(channel: AliyunSmsChannel, request: InboundRequest, sink: InboundSink) -> InboundResponse:
    check_token(channel.config, request)
    for item in _items(request.body, ("out_id", "success")):
        delivery_id, attempt, receipt = report_receipt(item)
        await sink.receipt(NAME, delivery_id, receipt, attempt)
    return PUSH_OK


async def replies(channel: AliyunSmsChannel, request: InboundRequest, sink: InboundSink) -> InboundResponse:
    """Nothing is texted back: an answer would need its own approved template."""
    check_token(channel.config, request)
    for item in _items(request.body, ("phone_number", "content", "sequence_id")):
        await sink.reply(NAME, up_reply(item))
    return PUSH_OK


SPEC = ChannelSpec(
    name=NAME, audience=Audience.PERSON, address="phone",
    dedupes=False,  # a second SMS is a real duplicate
    public=False, config_model=AliyunSmsConfig,
    build=lambda section, config, callback_url: AliyunSmsChannel(section),
    confirm_by_text=True, door_list=True,
    inbound={"reports": Inbound(InboundKind.RECEIPTS, reports),
             "replies": Inbound(InboundKind.REPLIES, replies)})
