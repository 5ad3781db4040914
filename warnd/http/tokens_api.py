"""/api/v1/tokens: list, create, revoke and rotate API tokens (admins only; every change audited)."""
from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from warnd.domain.authority import Right, Role, Scope, require
from warnd.domain.errors import error
from warnd.domain.model import Level
from warnd.http.auth import scope_of
from warnd.http.keys import NODE
from warnd.http.params import whole_number
from warnd.http.responses import json_object, json_ok


async def _manager(request: web.Request) -> Scope:
    scope = await scope_of(request)
    require(scope, Right.MANAGE)
    return scope


async def list_tokens(request: web.Request) -> web.Response:
    await _manager(request)
    items = await request.app[NODE].tokens.list(include_revoked=request.query.get("revoked") == "1")
    return json_ok({"items": [t.json() for t in items]})


async def create_token(request: web.Request) -> web.Response:
    actor = await _manager(request)
    node = request.app[NODE]
    body = await json_object(request)
    scope = token_scope(body)
    token = await node.tokens.create(scope, actor=actor.who, label=_text(body, "label"),
                                     expires_at=_expiry(body, node.clock.now()))
    return json_ok({"token": token, "department": scope.department, "role": scope.role.value}, status=201)


async def revoke_token(request: web.Request) -> web.Response:
    actor = await _manager(request)
    revoked = await request.app[NODE].tokens.revoke(_id(request), actor=actor.who)
    return json_ok({"revoked": revoked})


async def rotate_token(request: web.Request) -> web.Response:
    actor = await _manager(request)
    node = request.app[NODE]
    body = await json_object(request) if request.can_read_body else {}
    token = await node.tokens.rotate(_id(request), actor=actor.who, expires_at=_expiry(body, node.clock.now()))
    return json_ok({"token": token}, status=201)


def token_scope(body: dict) -> Scope:
    """A department (system) token's scope from JSON; people get personal tokens through their account."""
    department = _text(body, "department")
    if not department:
        raise error("request.invalid", "department", "a token belongs to a department", "令牌须属于某个单位")
    role = body.get("role", "department")
    if role not in (Role.DEPARTMENT.value, Role.ADMIN.value):
        raise error("request.invalid", "role", "tokens are department or admin tokens; people use accounts",
                    "令牌只能是部门令牌或管理员令牌；个人请使用账户")
    try:
        level = Level.parse(str(body.get("max_level", "red")))
    except ValueError:
        raise error("request.invalid", "max_level", "unknown level", "未知级别") from None
    senders = _list(body, "senders", ())
    if role == Role.DEPARTMENT.value and not senders:
        raise error("request.invalid", "senders", "a department token issues as its CAP sender(s): name them",
                    "部门令牌须指定其 CAP 发送方（sender）")
    return Scope(department, _list(body, "events", ("*",)), _list(body, "regions", ("*",)), level, Role(role),
                 senders, bool(body.get("supersede", False)))


def _list(body: dict, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise error("request.invalid", key, f"{key} must be a list of strings", f"{key} 须为字符串列表")
    return tuple(v.strip() for v in value) or default


def _text(body: dict, key: str) -> str | None:
    value = body.get(key)
    return str(value).strip()[:200] if value is not None else None


def _expiry(body: dict, now):  # noqa: ANN001, ANN202 - datetime
    days = body.get("expires_days")
    if days is None:
        return None
    if not isinstance(days, (int, float)) or isinstance(days, bool) or not 0 < days <= 3650:
        raise error("request.invalid", "expires_days", "expires_days must be a number of days (0–3650]",
                    "expires_days 须为天数（0–3650]")
    return now + timedelta(days=days)


def _id(request: web.Request) -> int:
    return whole_number(request.match_info["id"], "id")


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/tokens", list_tokens), web.post("/api/v1/tokens", create_token),
            web.post("/api/v1/tokens/{id}/revoke", revoke_token), web.post("/api/v1/tokens/{id}/rotate", rotate_token)]
