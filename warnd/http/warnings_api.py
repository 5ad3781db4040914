"""/api/v1/warnings: submit CAP (XML or JSON), read one, list with filters, approve or reject."""
from __future__ import annotations

from datetime import datetime

from aiohttp import web

from warnd.domain.authority import Right, Scope
from warnd.domain.errors import Problem, WarndError, error
from warnd.domain.confirmation import short_code
from warnd.domain.model import Level
from warnd.http.auth import scope_of
from warnd.http.keys import NODE
from warnd.http.params import whole_number
from warnd.http.responses import json_object, json_ok, read_body
from warnd.domain.sending import Audience, Message, Recipient
from warnd_channels.registry import SPECS


async def submit(request: web.Request) -> web.Response:
    node = request.app[NODE]
    scope = await scope_of(request)
    body = await read_body(request, node.config.max_body_bytes)
    submitted, parsed = await node.intake.submit(body, request.content_type, scope)
    warning = await node.queries.warning(submitted.warning_id, delivery_limit=0, with_confirmations=False)
    warning.pop("cap_xml", None)
    warning.pop("deliveries", None)
    status = 201 if submitted.created else 200
    location = f"/api/v1/warnings/{submitted.warning_id}"
    return json_ok({"created": submitted.created, "warning": warning}, status=status,
                             headers={"Location": location})


async def get_one(request: web.Request) -> web.Response:
    node = request.app[NODE]
    scope = await scope_of(request)
    warning = await node.queries.warning(whole_number(request.match_info["id"], "id"),
                                         delivery_limit=whole_number(request.query.get("deliveries", "500"), "deliveries"))
    if warning is None or not may_read(scope, warning["department"]):
        raise WarndError("warning.not_found")
    if request.headers.get("Accept", "").startswith(("application/cap+xml", "application/xml")):
        return web.Response(text=warning["cap_xml"], content_type="application/cap+xml")
    return json_ok(warning)


async def list_all(request: web.Request) -> web.Response:
    node = request.app[NODE]
    scope = await scope_of(request)
    q = request.query
    level = None
    if "level" in q:
        try:
            level = Level.parse(q["level"])
        except ValueError:
            raise error("request.invalid", "level", f"unknown level {q['level']}", f"未知级别 {q['level']}") from None
    since = None
    if "since" in q:
        try:
            since = datetime.fromisoformat(q["since"])
        except ValueError:
            raise error("request.invalid", "since", "since must be an ISO 8601 time with offset",
                        "since 须为带时区的 ISO 8601 时间") from None
        if since.tzinfo is None:
            raise error("request.invalid", "since", "since needs a time-zone offset", "since 须带时区")
    department = None if scope.can(Right.READ_ALL) else scope.department  # one's own, unless all
    items = await node.queries.warnings(status=q.get("status"), state=q.get("state"), level=level,
                                        department=department,
                                        event=q.get("event"), since=since,
                                        limit=min(whole_number(q.get("limit", "50"), "limit"), 500),
                                        offset=whole_number(q.get("offset", "0"), "offset"))
    return json_ok({"items": items})


def _default_preview(channels) -> str:  # noqa: ANN001
    """Without ?channel=: the first enabled channel to downstream systems, else the first enabled."""
    names = list(channels)
    return next((n for n in names if SPECS[n].audience is Audience.SUBSCRIBER), names[0] if names else "")


async def preview(request: web.Request) -> web.Response:
    """What a channel would send for this warning: text, and for SMS its segment count (its cost)."""
    node = request.app[NODE]
    scope = await scope_of(request)
    warning_id = whole_number(request.match_info["id"], "id")
    name = request.query.get("channel") or _default_preview(node.channels)
    channel = node.channels.get(name)
    if channel is None:
        raise error("request.invalid", "channel", f"channel {name} is not enabled", f"渠道 {name} 未启用")
    found = await node.queries.warning(warning_id, delivery_limit=0, with_confirmations=False)
    if found is None or not may_read(scope, found["department"]):
        raise WarndError("warning.not_found")
    cached = await node.alerts.get(warning_id)
    language = request.query.get("language", "zh-CN")
    recipient = Recipient("preview", "preview", "", language, request.query.get("format", "cap"))
    message = Message(0, warning_id, cached.alert, cached.cap_xml, Level.parse(found["level"]), recipient, 1,
                      node.clock.now(), request.query.get("confirm", "1") == "1", short_code(warning_id))
    rendered = channel.render(message)
    params = dict(p.strip().partition("=")[::2] for p in rendered.content_type.split(";")[1:])
    return json_ok({"channel": name, "language": language, "text": rendered.text,
                    "content_type": rendered.content_type, "bytes": len(rendered.body),
                    "segments": int(params["segments"]) if params.get("segments", "").isdigit() else None,
                    "encoding": params.get("encoding")})


async def approve(request: web.Request) -> web.Response:
    """签发: one approver's approval; the last one needed publishes (plans and sends)."""
    node = request.app[NODE]
    scope = await scope_of(request)
    decided = await node.intake.approve(whole_number(request.match_info["id"], "id"), scope)
    node.metrics.approvals.labels("approved").inc()
    return json_ok(decided_json(decided))


async def reject(request: web.Request) -> web.Response:
    """驳回, with a reason: the warning is never sent; its author sees why."""
    node = request.app[NODE]
    scope = await scope_of(request)
    body = await json_object(request)
    reason = str(body.get("reason") or "").strip()
    if not reason:
        raise WarndError("approval.reason_required", [Problem("reason", "say why the warning is rejected",
                                                              "请填写驳回原因")])
    decided = await node.intake.reject(whole_number(request.match_info["id"], "id"), scope, reason[:2000])
    node.metrics.approvals.labels("rejected").inc()
    return json_ok(decided_json(decided))


def decided_json(d) -> dict:  # noqa: ANN001 - a Decided
    return {"warning_id": d.warning_id, "state": d.state, "approvals": d.approvals, "needed": d.needed,
            "published": d.state in ("active", "expired")}


def may_read(scope: Scope, department: str | None) -> bool:
    """Departments and editors see their own warnings; roles with READ_ALL see every one."""
    return scope.can(Right.READ_ALL) or department == scope.department




def routes() -> list[web.RouteDef]:
    return [web.post("/api/v1/warnings", submit), web.get("/api/v1/warnings", list_all),
            web.get("/api/v1/warnings/{id}", get_one), web.get("/api/v1/warnings/{id}/preview", preview),
            web.post("/api/v1/warnings/{id}/approve", approve), web.post("/api/v1/warnings/{id}/reject", reject)]
