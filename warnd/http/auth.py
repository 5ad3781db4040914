"""Bearer tokens → the department's scope."""
from __future__ import annotations

from aiohttp import web

from warnd.domain.authority import Scope, require_admin
from warnd.domain.errors import WarndError
from warnd.http.keys import NODE


async def scope_of(request: web.Request) -> Scope:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        raise WarndError("auth.missing")
    scope = await request.app[NODE].tokens.lookup(header[7:].strip())
    if scope is None:
        raise WarndError("auth.invalid")
    return scope


async def admin_of(request: web.Request) -> Scope:
    scope = await scope_of(request)
    require_admin(scope)
    return scope
