"""/api/v1/audit: read the audit log and check its hash chain (Right.AUDIT: administrators).

Entries come oldest first; a page ends with `next_after`, the cursor of the
next one (`after=`), so a reader never skips or repeats an entry while new
ones are appended.
"""
from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from warnd.domain.authority import Right, require
from warnd.domain.errors import error
from warnd.http.auth import scope_of
from warnd.http.keys import NODE
from warnd.http.params import MAX_INTEGER, whole_number
from warnd.http.responses import json_ok
from warnd.store import audit

LIMIT, MAX_LIMIT = 100, 1000


def _number(query: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
    text = query.get(name)
    return default if text is None else whole_number(text, name, low=low, high=high or MAX_INTEGER)


def filter_of(query: Mapping[str, str]) -> tuple[audit.Filter, int]:
    """The filter and page size a query asks for; an empty value is no filter."""
    text = {name: query.get(name) or None for name in ("actor", "action", "subject", "since", "until")}
    since = audit.parse_time(text["since"], "since") if text["since"] else None
    until = audit.parse_time(text["until"], "until") if text["until"] else None
    if since is not None and until is not None and since > until:
        raise error("request.invalid", "until", "until must not be before since", "until 不能早于 since")
    where = audit.Filter(actor=text["actor"], action=text["action"], subject=text["subject"], since=since,
                         until=until, after=_number(query, "after", 0, 0, None))
    return where, _number(query, "limit", LIMIT, 1, MAX_LIMIT)


async def list_entries(request: web.Request) -> web.Response:
    require(await scope_of(request), Right.AUDIT)
    where, limit = filter_of(request.query)
    found = await audit.entries(request.app[NODE].db, where, limit)
    return json_ok({"items": [e.json() for e in found],
                    "next_after": found[-1].id if len(found) == limit else None})


async def verify(request: web.Request) -> web.Response:
    require(await scope_of(request), Right.AUDIT)
    verdict = await audit.check(request.app[NODE].db)
    return json_ok({"intact": verdict.intact, "entries": verdict.entries,
                    "first_broken": verdict.first_broken.id if verdict.first_broken else None})


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/audit", list_entries), web.get("/api/v1/audit/verify", verify)]
