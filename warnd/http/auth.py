"""Who is asking: a Bearer token (a department's, or a person's own), or a console session cookie.

A cookie rides along on every request the browser makes, even one another
site makes it send; SameSite=Strict stops most of that, and a change made
through a session must also carry the session's CSRF token in a header,
which no other site can read or set.
"""
from __future__ import annotations

import hmac

from aiohttp import web

from warnd.domain.authority import Scope, require_admin
from warnd.domain.errors import WarndError
from warnd.http.keys import NODE

SESSION_COOKIE = "warnd_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def principal_of(request: web.Request) -> tuple[Scope, str | None]:
    """The scope, and the session's CSRF token when a console session authenticated it (else None)."""
    node = request.app[NODE]
    header = request.headers.get("Authorization")
    if header is not None or SESSION_COOKIE not in request.cookies:
        if not (header or "").lower().startswith("bearer "):
            raise WarndError("auth.missing")
        scope = await node.tokens.lookup(header[7:].strip())
        if scope is None:
            raise WarndError("auth.invalid")
        return scope, None
    found = await node.users.session(request.cookies[SESSION_COOKIE])
    if found is None:
        raise WarndError("auth.session_expired")
    scope, csrf = found
    if request.method not in SAFE_METHODS:
        given = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(given.encode(), csrf.encode()):
            raise WarndError("auth.csrf")
    return scope, csrf


async def scope_of(request: web.Request) -> Scope:
    return (await principal_of(request))[0]


async def admin_of(request: web.Request) -> Scope:
    scope = await scope_of(request)
    require_admin(scope)
    return scope
