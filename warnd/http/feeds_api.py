"""GET /api/v1/feeds: each configured CAP feed and how its polls go (operators and admins).

The OPERATE right reads it: the people on duty act on a feed that fails. Credentials
and headers are never shown; the URL holds none (the configuration refuses them there).
"""
from __future__ import annotations

from datetime import datetime

from aiohttp import web

from warnd.domain.authority import Right, require
from warnd.http.auth import scope_of
from warnd.http.keys import NODE
from warnd.http.responses import json_ok


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def list_feeds(request: web.Request) -> web.Response:
    require(await scope_of(request), Right.OPERATE)
    node = request.app[NODE]
    statuses = await node.feeds.store.statuses()
    items = []
    for feed in node.config.feeds:
        s = statuses.get(feed.name, {})
        code = s.get("last_error_code")
        items.append({
            "name": feed.name, "url": feed.url, "department": feed.department,
            "interval_seconds": feed.interval_seconds, "signed": feed.signed,
            "last_poll_at": _time(s.get("last_poll_at")), "last_success_at": _time(s.get("last_success_at")),
            "last_new_alert_at": _time(s.get("last_new_alert_at")),
            "last_error": {"code": code, "detail": s.get("last_error_detail")} if code else None,
            "consecutive_failures": s.get("consecutive_failures", 0),
            "next_poll_at": _time(s.get("next_poll_at")),
            "alarm": s.get("alarmed_at") is not None, "alarmed_at": _time(s.get("alarmed_at")),
            "etag": s.get("etag"), "last_modified": s.get("last_modified"),
            "entries": {"applied": s.get("applied", 0), "duplicates": s.get("duplicates", 0),
                        "refused": s.get("refused", 0)},
        })
    return json_ok({"items": items})


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/feeds", list_feeds)]
