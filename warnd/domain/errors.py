"""The error catalogue: stable codes shared by the API, the CLI, logs and metrics.

Every error a person can see has a code, an HTTP status, and a message in
zh-CN and English. Handlers raise `WarndError`; one place renders it as
application/problem+json (RFC 9457).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ErrorKind:
    code: str
    status: int
    title_en: str
    title_zh: str


def _kinds(*rows: tuple[str, int, str, str]) -> dict[str, ErrorKind]:
    return {code: ErrorKind(code, status, en, zh) for code, status, en, zh in rows}


CATALOGUE: dict[str, ErrorKind] = _kinds(
    ("cap.not_xml", 400, "Body is not well-formed XML", "请求体不是格式正确的 XML"),
    ("cap.forbidden_construct", 400, "DTDs, entities and processing of external resources are not allowed",
     "不允许 DTD、实体声明或外部资源"),
    ("cap.too_large", 413, "Message is larger than the configured limit", "消息超过配置的大小上限"),
    ("cap.unsupported_version", 400, "Not a CAP 1.2 or 1.1 alert", "不是 CAP 1.2 或 1.1 预警消息"),
    ("cap.schema", 400, "Message does not conform to the CAP schema", "消息不符合 CAP 模式"),
    ("cap.rule", 400, "Message breaks a CAP or warnd rule", "消息违反 CAP 或 warnd 规则"),
    ("cap.limit", 413, "Message asks for more than warnd accepts (points, areas, nesting…)",
     "消息超出受理上限（点数、区域数、嵌套层数等）"),
    ("cap.json", 400, "JSON body does not match the CAP structure", "JSON 请求体与 CAP 结构不符"),
    ("cap.unsupported_media_type", 415, "Send application/cap+xml, application/xml or application/json",
     "请使用 application/cap+xml、application/xml 或 application/json"),
    ("auth.missing", 401, "A department token is required", "需要部门令牌"),
    ("auth.invalid", 401, "The token is unknown or revoked", "令牌无效或已吊销"),
    ("auth.event_out_of_scope", 403, "Your department may not issue this event type", "本单位无权发布该类预警"),
    ("auth.region_out_of_scope", 403, "Your department may not issue warnings for this region",
     "本单位无权向该区域发布预警"),
    ("auth.level_out_of_scope", 403, "Your department may not issue warnings of this level",
     "本单位无权发布该级别预警"),
    ("auth.admin_required", 403, "This operation needs an administrator token", "该操作需要管理员令牌"),
    ("auth.forbidden", 403, "Your role may not do this", "您的角色无权执行此操作"),
    ("auth.sender_not_yours", 403, "This token may not issue as that CAP sender", "该令牌不能以此发送方身份发布"),
    ("auth.not_your_warning", 403, "That warning belongs to another department", "该预警属于其他单位"),
    ("auth.reason_required", 403, "Changing another department's warning needs a reason", "变更其他单位的预警须写明原因"),
    ("auth.identifier_taken", 403, "That sender and identifier belong to another department",
     "该发送方与标识已属于其他单位"),
    ("auth.shape_out_of_scope", 403, "A polygon or circle reaches outside your jurisdiction",
     "多边形或圆形区域超出本单位辖区"),
    ("auth.geocode_unknown", 403, "A geocode names no region warnd can check against your jurisdiction",
     "地理编码无法核对是否在本单位辖区内"),
    ("auth.expired", 401, "The token has expired", "令牌已过期"),
    ("auth.session_expired", 401, "The session has ended; log in again", "会话已结束，请重新登录"),
    ("auth.csrf", 403, "The CSRF token is missing or wrong", "CSRF 令牌缺失或错误"),
    ("auth.login_failed", 401, "Wrong name or password", "用户名或密码错误"),
    ("auth.locked", 429, "Too many failed logins; the account is locked for a while", "登录失败次数过多，账户暂时锁定"),
    ("approval.not_pending", 409, "The warning is not awaiting approval", "该预警不在待签发状态"),
    ("approval.own_warning", 403, "You may not approve a warning you submitted", "不能签发自己提交的预警"),
    ("approval.already_approved", 409, "You have already approved this warning", "您已签发过该预警"),
    ("approval.reason_required", 400, "Say why the warning is rejected", "请填写驳回原因"),
    ("directory.invalid_row", 400, "A directory row is invalid", "名录数据行无效"),
    ("directory.unknown_reference", 400, "A directory row refers to something that does not exist",
     "名录数据行引用了不存在的对象"),
    ("directory.unsafe_url", 400, "Webhook URL is not allowed (private, loopback or non-HTTP address)",
     "Webhook 地址不被允许（内网、回环或非 HTTP 地址）"),
    ("directory.not_found", 404, "No such directory entry", "名录中无此条目"),
    ("warning.not_found", 404, "No such warning", "无此预警"),
    ("link.invalid", 403, "This link is not valid", "链接无效"),
    ("link.expired", 410, "This link has expired", "链接已过期"),
    ("twilio.bad_signature", 403, "Request signature does not verify", "请求签名校验失败"),
    ("provider.bad_signature", 403, "The provider request does not authenticate", "供应商请求校验失败"),
    ("request.invalid", 400, "The request is invalid", "请求无效"),
    ("request.not_found", 404, "No such resource", "资源不存在"),
    ("request.encoding", 415, "Compressed request bodies are not accepted", "不接受压缩的请求体"),
    ("request.method_not_allowed", 405, "Method not allowed here", "不允许此请求方法"),
    ("live.busy", 503, "Too many live views are open; try again shortly", "同时打开的实时视图过多，请稍后再试"),
    ("internal", 500, "Internal error; the request was not applied", "内部错误，请求未生效"),
    # CAP feeds warnd polls (warnd/feeds/): recorded per poll and per entry, shown in GET /api/v1/feeds
    ("feed.unreachable", 502, "The feed could not be reached", "无法连接订阅源"),
    ("feed.http_status", 502, "The feed answered with an error status", "订阅源返回错误状态"),
    ("feed.too_large", 413, "The feed index or a message in it is larger than the configured limit",
     "订阅源索引或其中的消息超过配置的大小上限"),
    ("feed.not_index", 400, "The feed is not a readable Atom or RSS index", "订阅源不是可读的 Atom 或 RSS 索引"),
    ("feed.link_refused", 400, "An entry links to CAP on a host the feed may not use", "条目链接到不允许的主机"),
    ("feed.bad_signature", 403, "The CAP message's XML signature is missing or does not verify",
     "CAP 消息的 XML 签名缺失或校验失败"),
    # operators' mistakes the `warnd` command reports (warnd/exits.py has their exit codes)
    ("config.invalid", 400, "The configuration is invalid: correct the keys named below",
     "配置无效：请修改下列配置项"),
    ("config.not_ready", 400, "Routing or an escalation ladder can reach nobody: enable a channel or opt out",
     "路由或升级梯队无法通知任何人：请启用渠道，或明确声明允许"),
)


MAX_PROBLEMS = 20  # listed in one error; the rest are counted


@dataclass(frozen=True)
class Problem:
    """One specific finding: which field, and what is wrong with it."""

    field: str
    detail_en: str
    detail_zh: str


@dataclass
class WarndError(Exception):
    """An error with a catalogue code; `problems` name the offending fields."""

    code: str
    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.code not in CATALOGUE:
            raise KeyError(f"unknown error code {self.code}")
        if len(self.problems) > MAX_PROBLEMS:  # a bounded answer to an unbounded mistake
            more = len(self.problems) - MAX_PROBLEMS
            self.problems = self.problems[:MAX_PROBLEMS] + [
                Problem("…", f"and {more} more problems of the same message", f"另有 {more} 处问题")]
        super().__init__(self.code)

    @property
    def kind(self) -> ErrorKind:
        return CATALOGUE[self.code]

    @property
    def status(self) -> int:
        return self.kind.status

    def __str__(self) -> str:
        lines = [f"{self.code}: {self.kind.title_en} / {self.kind.title_zh}"]
        lines += [f"  {p.field}: {p.detail_en} / {p.detail_zh}" for p in self.problems]
        return "\n".join(lines)


def error(code: str, field: str, detail_en: str, detail_zh: str) -> WarndError:
    """Shorthand for the common case of one problem."""
    return WarndError(code, [Problem(field, detail_en, detail_zh)])
