"""The roster refresh's result and the schedules' messages to people.

GET /api/v1/roster: a round of the roster refresh (the latest, or `?round=`), with everyone
who has not confirmed their number and why (no phone, no reply yet, no reply in time).
GET /api/v1/notices: the messages schedules wrote for people (the daily summary, the
roster's question), newest first. Both need the right to read every department's work
(READ_ALL); phone numbers only with CONTACTS.
"""
from __future__ import annotations

from aiohttp import web

from warnd.domain.authority import Right, require
from warnd.domain.errors import error
from warnd.http.auth import scope_of
from warnd.http.keys import NODE
from warnd.http.params import whole_number
from warnd.http.responses import json_ok

KINDS = ("summary", "roster")


async def roster(request: web.Request) -> web.Response:
    scope = await scope_of(request)
    require(scope, Right.READ_ALL)
    found = await request.app[NODE].schedules.roster_status(request.query.get("round") or None)
    if found is None:
        raise error("request.not_found", "round", "no such roster round (or none asked yet)",
                    "无该轮名册核对（或尚未核对）")
    if not scope.can(Right.CONTACTS):
        found["unconfirmed"] = [{**x, "phone": None} for x in found["unconfirmed"]]
    return json_ok(found, headers={"Cache-Control": "no-store"})


async def notices(request: web.Request) -> web.Response:
    scope = await scope_of(request)
    require(scope, Right.READ_ALL)
    kind = request.query.get("kind")
    if kind is not None and kind not in KINDS:
        raise error("request.invalid", "kind", f"kind is one of {', '.join(KINDS)}", f"kind 只能是 {'、'.join(KINDS)}")
    limit = whole_number(request.query.get("limit", "50"), "limit", low=1, high=500)
    node = request.app[NODE]
    rows = await node.schedules.roster_store.notices(kind, limit)
    if not scope.can(Right.CONTACTS):
        rows = [{**r, "address": None} for r in rows]
    return json_ok({"notices": rows}, headers={"Cache-Control": "no-store"})


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/roster", roster), web.get("/api/v1/notices", notices)]
