"""/api/v1/session (console login, who am I, logout) and /api/v1/users (accounts; Right.MANAGE).

The session id travels only in an HttpOnly cookie, out of reach of page
scripts; the CSRF token is handed to the console in the login answer (and
again by GET, after a reload) for it to send back as X-CSRF-Token.
"""
from __future__ import annotations

from aiohttp import web

from warnd.domain.authority import Right, Scope, require
from warnd.domain.errors import error
from warnd.http.auth import SESSION_COOKIE, principal_of, scope_of
from warnd.http.keys import NODE
from warnd.http.responses import json_object, json_ok

STRING_LISTS = ("senders", "events", "regions")


def _me(scope: Scope, csrf: str | None) -> dict:
    return {"user": scope.user, "role": scope.role.value, "department": scope.department, "csrf_token": csrf}


def _text(body: dict, key: str, *, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise error("request.invalid", key, f"{key} must be a non-empty string", f"{key} 须为非空字符串")
    return value


def _secure(request: web.Request) -> bool:
    config = request.app[NODE].config
    if config.accounts.cookie_secure is not None:
        return config.accounts.cookie_secure
    return config.public_base_url.lower().startswith("https://")


async def login(request: web.Request) -> web.Response:
    # JSON only: a cross-site HTML form cannot send it, so no other site can log a browser in
    if request.content_type != "application/json":
        raise error("request.invalid", "Content-Type", "send the login as application/json",
                    "登录请求须为 application/json")
    body = await json_object(request)
    name, password = _text(body, "name"), _text(body, "password")
    users = request.app[NODE].users
    scope = await users.authenticate(name, password, request.remote)
    session_id, csrf = await users.start_session(name)
    response = json_ok(_me(scope, csrf))
    response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="Strict", path="/",
                        secure=_secure(request),
                        max_age=int(request.app[NODE].config.accounts.max_hours * 3600))
    return response


async def whoami(request: web.Request) -> web.Response:
    scope, csrf = await principal_of(request)
    return json_ok(_me(scope, csrf))


async def logout(request: web.Request) -> web.Response:
    scope, csrf = await principal_of(request)  # a cookie session, with its CSRF token
    if csrf is None:
        raise error("request.invalid", "Authorization", "a token has no session to end; revoke it instead",
                    "令牌没有会话可结束，请吊销令牌")
    await request.app[NODE].users.end_session(request.cookies[SESSION_COOKIE], scope.who)
    response = web.Response(status=204)
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def list_users(request: web.Request) -> web.Response:
    require(await scope_of(request), Right.MANAGE)
    return json_ok({"items": [u.json() for u in await request.app[NODE].users.list()]})


async def create_user(request: web.Request) -> web.Response:
    scope = await scope_of(request)
    require(scope, Right.MANAGE)
    body = await json_object(request)
    lists = {}
    for key in STRING_LISTS:
        if key in body:
            value = body[key]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise error("request.invalid", key, f"{key} must be a list of strings", f"{key} 须为字符串列表")
            lists[key] = value
    supersede = body.get("supersede", False)
    if not isinstance(supersede, bool):
        raise error("request.invalid", "supersede", "supersede must be true or false", "supersede 须为 true 或 false")
    max_level = body.get("max_level", "red")
    if not isinstance(max_level, str):
        raise error("request.invalid", "max_level", "max_level is a level name such as red",
                    "max_level 须为级别名称，如 red")
    info = await request.app[NODE].users.create(
        _text(body, "name"), _text(body, "role"), _text(body, "department", required=False),
        _text(body, "password"), max_level=max_level, supersede=supersede,
        display_name=_text(body, "display_name", required=False), actor=scope.who, **lists)
    return json_ok(info.json(), status=201)


async def disable_user(request: web.Request) -> web.Response:
    scope = await scope_of(request)
    require(scope, Right.MANAGE)
    name = request.match_info["name"]
    changed = await request.app[NODE].users.disable(name, scope.who)
    return json_ok({"name": name, "disabled": True, "changed": changed})


def routes() -> list[web.RouteDef]:
    return [web.post("/api/v1/session", login), web.get("/api/v1/session", whoami),
            web.delete("/api/v1/session", logout),
            web.get("/api/v1/users", list_users), web.post("/api/v1/users", create_user),
            web.post("/api/v1/users/{name}/disable", disable_user)]
