"""What people sent in: replies, key presses, link taps, operators' records — newest first.

The operator on duty reads here the replies warnd could not take as a confirmation
(`outcome` negative, question, ignored, not_asked, …), to call the person back.
Numbers are shown only to roles with the contacts right.
"""
from __future__ import annotations

from aiohttp import web

from warnd.domain.authority import Right, require
from warnd.domain.errors import error
from warnd.http.auth import scope_of
from warnd.http.keys import NODE
from warnd.http.params import whole_number
from warnd.http.responses import json_ok
from warnd.domain.sending import InboundKind
from warnd_channels.registry import SPECS

# What answers arrive by: channels that take replies or key presses, links, operators.
INBOUND_CHANNELS = (*(name for name, spec in SPECS.items()
                      if spec.takes(InboundKind.REPLIES) or spec.takes(InboundKind.KEY_PRESSES)),
                    "link", "operator")

LIMIT, MAX_LIMIT = 100, 1000


async def list_inbound(request: web.Request) -> web.Response:
    scope = await scope_of(request)
    require(scope, Right.OPERATE)
    q = request.query
    channel = q.get("channel") or None
    if channel is not None and channel not in INBOUND_CHANNELS:
        raise error("request.invalid", "channel", f"channel must be one of {', '.join(INBOUND_CHANNELS)}",
                    f"channel 须为 {'、'.join(INBOUND_CHANNELS)} 之一")
    before = whole_number(q["before"], "before") if "before" in q else None
    limit = whole_number(q["limit"], "limit", low=1, high=MAX_LIMIT) if "limit" in q else LIMIT
    rows = await request.app[NODE].answers.store.inbound(q.get("outcome") or None, channel, before, limit)
    contacts = scope.can(Right.CONTACTS)
    items = [{"id": r.id, "at": r.at.isoformat(), "channel": r.channel, "outcome": r.outcome,
              "body": r.body, "person_id": r.person_id, "delivery_id": r.delivery_id,
              "confirmation_ids": list(r.confirmation_ids or []),
              **({"from": r.from_address} if contacts else {})} for r in rows]
    return json_ok({"items": items, "next_before": rows[-1].id if len(rows) == limit else None})


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/inbound", list_inbound)]
