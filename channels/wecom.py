"""WeCom group robots (企业微信群机器人): a warning posted to a village's or township's group.

A region's group address in the directory is the robot's webhook **key** (the `key=`
of `https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY`; the importer keeps only
the key when given the whole URL). The endpoint is configuration (`wecom.base_url`), so
tests and a county's proxy point it elsewhere and directory data never picks a host. The
key is a secret — whoever has it can post to the group — and is never logged whole.

**Text, not markdown.** The robot's `markdown` messages can mention people only by
WeCom user id (`<@userid>`), which the directory does not hold; only `text` messages
carry `mentioned_mobile_list`, which mentions (and notifies) group members by the
mobile number on their WeCom profile. So one `text` message is sent per delivery, with
the grid responsible persons of the region mentioned by mobile (Chinese mobiles as their
11 digits; landlines cannot be mentioned and are left out). One message, not a markdown
one followed by a text one: under the robot's limit of 20 messages a minute, a second
message per warning would halve how many warnings a group can get, and split one
delivery's outcome in two. Text content is cut to the robot's 2,048 bytes.
(只有 text 消息可按手机号 @ 群成员，故发送 text 消息。)

**Outcomes.** The robot answers synchronously (`{"errcode": 0, "errmsg": "ok"}`): the
group has the message, so errcode 0 is DELIVERED. Other errcodes are classified by one
table (`ERRCODES`), read from WeCom's global error code list (企业微信全局错误码,
developer.work.weixin.qq.com/document/path/90313, as transcribed in WxJava's
`WxCpErrorMsgEnum`): 45009 (API frequency limit) and 45033 (concurrency limit) are
retried after `rate_limited_retry_seconds`, -1 (system busy) and 6000 soon; a removed or
stopped robot (93000, 93004, 93008) or a dissolved group (49008) fails and calls an
operator; a message the robot refuses (40008, 40058, 44004, 45002) fails. An errcode not
in the table fails: the robot answered, and retrying an answer we do not understand
would only repeat it.

**Transport failures are RETRY, also a timeout after the request went out.** Nobody
de-duplicates a group message (`dedupes=False`), and the robot has no way to ask what it
posted, so UNCERTAIN would leave the delivery to the last-resort resend at best. A group
that sees a warning twice has lost nothing; a village group that never saw it may have.
The dispatcher's handed mark still keeps a crash from re-sending blindly.

Limits: each robot takes 20 messages a minute (`per_number.minute`, keyed by the group's
address, i.e. per robot); `rate_per_second` is the channel's total across robots.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import aiohttp
from pydantic import Field, field_validator

from warnd.config import ChannelConfig, PerNumber
from warnd.domain.directory import redact
from warnd.domain.phones import national_mobile
from warnd.render import render as render_template
from warnd.render import warning_context

from .base import Audience, ChannelSpec, Message, Outcome, Rendered, SendResult
from .webhook import DETAIL_BYTES, USER_AGENT
from .webhook import classify as http_classify

log = logging.getLogger("warnd_channels.wecom")
JSON_CONTENT_TYPE = "application/json"
SEND_PATH = "/cgi-bin/webhook/send"
TEXT_MAX_BYTES = 2048  # the robot's limit for text content (markdown: 4096)
ANSWER_BYTES = 4096  # a longer answer is not the robot's JSON
ROBOT_PER_MINUTE = 20  # each robot: 20 messages a minute


class WecomConfig(ChannelConfig):
    """The `wecom:` section."""

    enabled: bool = False
    base_url: str = "https://qyapi.weixin.qq.com"  # the robot API; tests point it at warnd.sim.wecom
    proxy_url: str | None = None  # an HTTP proxy to reach it through (a county intranet's)
    # The total across every robot; each robot's own 20 a minute is `per_number`.
    rate_per_second: float = Field(10.0, gt=0)
    concurrency: int = Field(8, ge=1)
    per_number: PerNumber = PerNumber(minute=ROBOT_PER_MINUTE)
    # How long to wait after the robot said 45009/45033 (its per-minute limit): a minute.
    rate_limited_retry_seconds: float = Field(60.0, ge=0)
    busy_retry_seconds: float = Field(5.0, ge=0)  # after -1 (system busy) or 6000

    @field_validator("base_url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError("wecom.base_url must be an http(s) URL, e.g. https://qyapi.weixin.qq.com")
        return v.rstrip("/")


# errcode → (outcome, needs an operator, what it means). Retry waits come from the config.
RATE_LIMITED = frozenset({45009, 45033})
BUSY = frozenset({-1, 6000})
ERRCODES: dict[int, tuple[Outcome, bool, str]] = {
    0: (Outcome.DELIVERED, False, "ok"),
    -1: (Outcome.RETRY, False, "system busy (系统繁忙)"),
    6000: (Outcome.RETRY, False, "data version conflict (数据版本冲突)"),
    45009: (Outcome.RETRY, False, "API frequency limit: the robot's 20 a minute (接口调用超过限制)"),
    45033: (Outcome.RETRY, False, "API concurrency limit (接口并发调用超过限制)"),
    93000: (Outcome.FAILED, True, "invalid webhook URL, or the robot was removed from the group "
                                  "(机器人webhookurl不合法或者机器人已经被移除出群)"),
    93004: (Outcome.FAILED, True, "the robot is disabled (机器人被停用)"),
    93008: (Outcome.FAILED, True, "the robot is not in the group (不在群里)"),
    49008: (Outcome.FAILED, True, "the group was dissolved (群已经解散)"),
    40008: (Outcome.FAILED, False, "invalid msgtype (不合法的msgtype参数)"),
    40058: (Outcome.FAILED, False, "invalid parameter (不合法的参数)"),
    44004: (Outcome.FAILED, False, "empty text content (文本消息content参数为空)"),
    45002: (Outcome.FAILED, False, "message content too large (消息内容大小超过限制)"),
}


def classify(status: int | None, answer: Mapping[str, Any] | None, exc: BaseException | None,
             headers: Mapping[str, str] | None = None, *, rate_limited_retry: float = 60.0,
             busy_retry: float = 5.0) -> SendResult:
    """What one post's HTTP status, JSON answer or exception means for the delivery.

    `answer` is the robot's JSON object, None when there was none (or it was not JSON).
    Non-2xx statuses and transport failures follow the HTTP rules the webhook channel
    uses (429/5xx/timeouts retry, redirects and other 4xx fail).
    """
    if exc is not None or status is None or not 200 <= status < 300:
        return http_classify(status, exc, headers or {})
    if answer is None:
        return SendResult(Outcome.RETRY, "wecom.no_answer", detail=f"HTTP {status} without the robot's JSON answer")
    errcode = answer.get("errcode")
    if isinstance(errcode, bool) or not isinstance(errcode, int):
        return SendResult(Outcome.RETRY, "wecom.no_answer", detail=f"no errcode in the answer: {_short(answer)}")
    code = f"wecom.{errcode}"
    errmsg = str(answer.get("errmsg", ""))[:DETAIL_BYTES]
    known = ERRCODES.get(errcode)
    if known is None:
        return SendResult(Outcome.FAILED, code, detail=f"errcode {errcode} (not in warnd's table): {errmsg}")
    outcome, operator, meaning = known
    if outcome is Outcome.DELIVERED:
        return SendResult(Outcome.DELIVERED, code)
    retry_after = rate_limited_retry if errcode in RATE_LIMITED else busy_retry if errcode in BUSY else None
    return SendResult(outcome, code, retry_after=retry_after, detail=f"{meaning}: {errmsg}"[:DETAIL_BYTES],
                      operator=operator)


def _short(answer: Mapping[str, Any]) -> str:
    return json.dumps(answer, ensure_ascii=False)[:DETAIL_BYTES]


def mentions_of(phones: tuple[str, ...]) -> list[str]:
    """The mobiles to mention, as WeCom profiles hold them (11 digits for China); landlines left out."""
    out: list[str] = []
    for phone in phones:
        mobile = national_mobile(phone)
        if mobile is not None and mobile not in out:
            out.append(mobile)
    return out


def fit(text: str, limit: int = TEXT_MAX_BYTES) -> str:
    """`text` cut to `limit` UTF-8 bytes at a character boundary, marked with an ellipsis."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - len("…".encode("utf-8"))].decode("utf-8", "ignore") + "…"


class WecomChannel:
    name = "wecom"

    def __init__(self, config: WecomConfig) -> None:
        self.config = config
        self._url = config.base_url + SEND_PATH
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    def render(self, message: Message) -> Rendered:
        language = message.recipient.language
        context = warning_context(message.alert, message.level, language)
        text = fit(render_template("wecom", "text", language, context))
        body: dict[str, Any] = {"msgtype": "text", "text": {"content": text}}
        mentioned = mentions_of(message.recipient.mentions)
        if mentioned:
            body["text"]["mentioned_mobile_list"] = mentioned
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return Rendered(data, JSON_CONTENT_TYPE, text)

    async def send(self, message: Message, rendered: Rendered) -> SendResult:
        """POST once; never raises (cancellation still propagates)."""
        key = message.recipient.address
        try:
            if self._session is None:  # created lazily, inside the running loop
                self._session = aiohttp.ClientSession(timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar(),
                                                      connector=aiohttp.TCPConnector(limit=self.config.concurrency))
            async with self._session.post(self._url, params={"key": key}, data=rendered.body,
                                          headers={"content-type": JSON_CONTENT_TYPE, "user-agent": USER_AGENT},
                                          allow_redirects=False, proxy=self.config.proxy_url) as response:
                status = response.status
                answer = await _answer(response)
                result = classify(status, answer, None, response.headers,
                                  rate_limited_retry=self.config.rate_limited_retry_seconds,
                                  busy_retry=self.config.busy_retry_seconds)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a SendResult
            result = classify(None, None, exc)
        # the detail of a transport error may quote the URL: never the key whole
        result = replace(result, detail=result.detail.replace(key, redact(key))) if key else result
        log.log(logging.DEBUG if result.outcome is Outcome.DELIVERED else logging.INFO, "wecom send",
                extra={"delivery": message.delivery_id, "group": redact(key), "outcome": result.outcome.value,
                       "code": result.code, "mentions": len(message.recipient.mentions)})
        return result

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _answer(response: aiohttp.ClientResponse) -> dict[str, Any] | None:
    """The robot's JSON object, or None (no body, too long, not JSON)."""
    try:
        raw = await response.content.read(ANSWER_BYTES + 1)
    except (aiohttp.ClientError, OSError):
        return None
    if len(raw) > ANSWER_BYTES:
        return None
    try:
        answer = json.loads(raw)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


SPEC = ChannelSpec(
    name="wecom", audience=Audience.GROUP, address="group",
    dedupes=False,  # a second post is a second message in the group
    public=False,  # village and township cadres' groups, not public outlets: drills reach them, marked
    config_model=WecomConfig,
    build=lambda section, config, callback_url: WecomChannel(section))
