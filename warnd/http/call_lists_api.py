"""/api/v1/warnings/{id}/call-lists: door-to-door progress per grid, household by household."""
from __future__ import annotations

from aiohttp import web

from warnd.domain.errors import WarndError
from warnd.domain.authority import Right
from warnd.http.auth import scope_of
from warnd.http.keys import NODE
from warnd.http.params import whole_number
from warnd.http.responses import json_ok
from warnd.http.warnings_api import may_read
from warnd.store.call_lists import CallList, CallListStore


def _iso(at) -> str | None:  # noqa: ANN001 - datetime | None
    return at.isoformat() if at else None


def call_list_json(cl: CallList, contacts: bool = True) -> dict:
    """A door-to-door list; addresses and vulnerability only for roles that may see contacts."""
    tally = cl.tally
    return {"id": cl.id, "grid": cl.grid, "assignee_id": cl.assignee_id, "created_at": _iso(cl.created_at),
            "completed_at": _iso(cl.completed_at), "total": cl.total, "marked": cl.marked,
            "reached": tally.reached, "moved_people": tally.moved_people, "by_mark": cl.by_mark,
            "households": [{"household_id": i.household_id, "address": i.address if contacts else None,
                            "vulnerable": i.vulnerable if contacts else None,
                            "mark": i.mark, "marked_at": _iso(i.marked_at), "people": i.people,
                            "note": (i.note or None) if contacts else None} for i in cl.items]}


async def list_for_warning(request: web.Request) -> web.Response:
    node = request.app[NODE]
    scope = await scope_of(request)
    warning_id = whole_number(request.match_info["id"], "id")
    store = CallListStore(node.db)
    found = await node.queries.department_of(warning_id)
    if found is None or not may_read(scope, found[0]):
        raise WarndError("warning.not_found")
    contacts = scope.can(Right.CONTACTS)
    return json_ok({"items": [call_list_json(cl, contacts) for cl in await store.for_warning(warning_id)]})


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/warnings/{id}/call-lists", list_for_warning)]
