"""What the console's compose and approval pages ask the server (any logged-in principal).

GET  /api/v1/console/settings  the caller's channels, approvals per level, templates, map and drill settings
GET  /api/v1/console/regions   every directory region with its outline and its households and people
POST /api/v1/drafts/preview    a dry run of POST /api/v1/warnings: the same checks, the plan, an
                               estimate of the first wave per channel; nothing is stored
GET  /api/v1/approvals         the warnings waiting for 签发, oldest first, and whether the caller may approve

The rules are the engine's, not copies: the preview runs `Intake.check` (what submit
runs) and the planner, the approval queue asks `Intake.approval_refusal` (what approve
enforces), the approvals needed come from `Intake.approvals_needed`.
"""
from __future__ import annotations

import asyncio
import weakref
from collections import defaultdict
from datetime import datetime

import sqlalchemy as sa
from aiohttp import web

from warnd.domain.authority import Right, Scope
from warnd.domain.confirmation import short_code
from warnd.domain.errors import WarndError, error
from warnd.domain.estimate import ChannelEstimate, Group, estimate, first_wave_seconds
from warnd.domain.model import Level, MsgType
from warnd.domain.planning import PlannedDelivery
from warnd.engine.intake import Preview
from warnd.engine.node import Node
from warnd.http.auth import scope_of
from warnd.http.keys import NODE
from warnd.http.responses import read_body, json_ok
from warnd.http.warnings_api import may_read
from warnd.store.schema import approvals, households, people, warnings
from warnd.domain.sending import AUDIENCE_KIND, Message, Recipient
from warnd_channels.registry import SPECS

CHUNK = 500  # values per IN (…) list
MAX_QUEUE = 200  # approval queue rows in one answer
MAX_PREVIEWS = 4  # dry runs planned at once per node; more wait their turn
SAMPLE_LANGUAGE = "zh-CN"
_previews: weakref.WeakKeyDictionary[Node, asyncio.Semaphore] = weakref.WeakKeyDictionary()


# ------------------------------------------------------------------ settings

async def settings(request: web.Request) -> web.Response:
    node = request.app[NODE]
    scope = await scope_of(request)
    config = node.config
    needed = {level.label: node.intake.approvals_needed(scope.department, MsgType.ALERT, level)
              for level in sorted(Level, reverse=True)}
    templates = [dict(t.model_dump(), department=dept, allowed=_may_issue(scope, t.event, Level.parse(t.level)))
                 for dept in dict.fromkeys((scope.department, "*"))
                 for t in config.console.templates.get(dept, [])]
    return json_ok({
        "user": {"name": scope.user, "role": scope.role.value, "department": scope.department,
                 "rights": sorted(r.value for r in Right if scope.can(r))},
        "department": scope.department,
        "senders": list(scope.senders),
        "events": list(scope.events),
        "regions": list(scope.regions),
        "max_level": scope.max_level.label,
        "channels": [{"name": name, "rate_per_second": config.channel(name).rate_per_second,
                      "concurrency": config.channel(name).concurrency, "public": config.channel(name).public}
                     for name in sorted(node.channels)],
        "approvals": needed,
        "approvals_cancel": node.intake.approvals_needed(scope.department, MsgType.CANCEL, Level.RED),
        "publishes_at_once": {label: n == 0 for label, n in needed.items()},
        "green_channel": scope.department in config.approval.green_channel,
        "templates": templates,
        "timezone": config.display_timezone,
        "tile_url": config.console.tile_url,
        "tile_attribution": config.console.tile_attribution,
        "drill_targets": config.console.drill_targets.model_dump(),
    })


def _may_issue(scope: Scope, event: str, level: Level) -> bool:
    return ("*" in scope.events or event in scope.events) and level <= scope.max_level


# ------------------------------------------------------------------ regions

async def regions(request: web.Request) -> web.Response:
    """Every region, and the households and people in it or below it (two GROUP BY queries)."""
    node = request.app[NODE]
    await scope_of(request)
    found = await node.directory.list_regions()
    async with node.db.read() as conn:
        homes = dict((await conn.execute(sa.select(households.c.grid, sa.func.count())
                                         .group_by(households.c.grid))).all())
        persons = dict((await conn.execute(sa.select(people.c.region, sa.func.count())
                                           .group_by(people.c.region))).all())
    parents = {r.code: r.parent for r in found}
    totals = {r.code: [0, 0] for r in found}
    for column, counts in ((0, homes), (1, persons)):
        for code, n in counts.items():
            seen: set[str] = set()
            current: str | None = code
            while current in totals and current not in seen:  # up the directory's own parent links
                totals[current][column] += n
                seen.add(current)
                current = parents[current]
    return json_ok({"items": [
        {"code": r.code, "name": r.name, "kind": r.kind, "parent": r.parent,
         "polygon": [list(p) for p in r.polygon] if r.polygon else None,
         "households": totals[r.code][0], "people": totals[r.code][1]} for r in found]})


# ------------------------------------------------------------------ preview (dry run)

async def preview(request: web.Request) -> web.Response:
    node = request.app[NODE]
    scope = await scope_of(request)
    body = await read_body(request, node.config.max_body_bytes)  # submit's limit, submit's error
    gate = _previews.setdefault(node, asyncio.Semaphore(MAX_PREVIEWS))
    async with gate:
        result = await node.intake.preview(body, request.content_type, scope)
        return json_ok(await _preview_json(node, scope, result))


async def _preview_json(node: Node, scope: Scope, result: Preview) -> dict:
    checked, plan = result.checked, result.plan
    alert = checked.parsed.alert
    existing = await _existing(node, scope, alert.sender, alert.identifier)
    area = sorted(checked.targets.regions)
    grids = [c for c, r in checked.targets.regions.items() if r.kind == "grid"]
    next_id = existing or await _next_warning_id(node)
    confirmers = {c.person_id for c in plan.confirmations if not c.carried and c.person_id}
    if node.config.confirmation.backups_confirm_first_wave:
        confirmers |= {c.backup_id for c in plan.confirmations if not c.carried and c.backup_id}
    by_channel: dict[str, list[PlannedDelivery]] = defaultdict(list)
    for d in plan.deliveries:
        by_channel[d.channel].append(d)
    channels = [_channel_json(node, name, by_channel.get(name, []), checked, next_id, confirmers)
                for name in sorted(node.channels)]
    info = alert.info_for(SAMPLE_LANGUAGE)
    return {
        "identifier": alert.identifier, "sender": alert.sender,
        "event": info.event if info else "", "headline": info.headline if info else None,
        "level": checked.level.label, "level_zh": checked.level.zh,
        "status": alert.status.value, "msg_type": alert.msg_type.value,
        "targets": list(checked.targets.codes), "regions": list(plan.regions),
        "grids": len(grids), "households": await _households_in(node, area),
        "confirmations": len(plan.confirmations),
        "carried": sum(1 for c in plan.confirmations if c.carried),
        "deliveries": len(plan.deliveries),
        "channels": [c for c, _ in channels],
        "first_wave_seconds": first_wave_seconds(e for _, e in channels),
        "approvals_needed": checked.needed, "publishes_at_once": checked.needed == 0,
        "existing_warning_id": existing,
        "notes": [{"code": n.code, "field": n.field, "en": n.message_en, "zh": n.message_zh}
                  for n in checked.parsed.notes] + [{"code": "plan", "field": None, "en": n, "zh": n}
                                                    for n in plan.notes],
    }


def _channel_json(node: Node, name: str, planned: list[PlannedDelivery], checked, next_id: int,  # noqa: ANN001
                  confirmers: set[str]) -> tuple[dict, ChannelEstimate]:
    """Recipients, a zh-CN sample and the first-wave estimate of one channel.

    SMS recipients get texts of different length (a language, 回复1确认 and a signed link
    for those who must confirm): one render per (language, must confirm), counted per group."""
    channel, spec = node.channels[name], SPECS[name]
    texts = spec.confirm_by_text  # texts people read: by language, link, and counted in segments
    rate = node.config.channel(name).rate_per_second

    def render(recipient: Recipient, must_confirm: bool):  # noqa: ANN202 - a Rendered
        link = ""
        if must_confirm and texts and node.config.channel(name).confirm_link:
            link = _unsigned(node.link_url("confirm", f"{next_id}/{recipient.id}"))
        # A negative id of its own: never a real warning's, so no channel's render cache
        # (keyed by warning) hands back another draft's text.
        message = Message(0, -next(_draft_ids), checked.parsed.alert, checked.parsed.cap_xml, checked.level,
                          recipient, 1, node.clock.now(), must_confirm, short_code(next_id), link=link)
        return channel.render(message)

    groups: dict[tuple[str, bool], list[PlannedDelivery]] = defaultdict(list)
    for d in planned:
        must = d.recipient.kind == "person" and d.recipient.id in confirmers
        groups[(d.recipient.language if texts else "", must)].append(d)
    counted = []
    for (_, must), members in groups.items():
        segments = _segments(render(members[0].recipient, must)) if texts else 1
        counted.append(Group(len(members), segments))
    sample_must = any(must for (_, must) in groups)
    sample = next((d.recipient for d in planned if d.recipient.language == SAMPLE_LANGUAGE
                   and (d.recipient.kind == "person" and d.recipient.id in confirmers) == sample_must), None)
    if sample is None:
        sample = Recipient(AUDIENCE_KIND[spec.audience].value, "preview", "preview", SAMPLE_LANGUAGE)
    sample = Recipient(sample.kind, sample.id, sample.address, SAMPLE_LANGUAGE, sample.format)
    shown = render(sample, sample_must)
    result = estimate(name, counted, rate)
    segments = 1 if not texts else result.segments if planned else _segments(shown)
    return ({"channel": name, "recipients": result.recipients, "segments": segments,
             "encoding": _params(shown.content_type).get("encoding") if texts else None,
             "messages": result.messages,
             "rate_per_second": rate, "seconds": result.seconds,
             "text": shown.text, "content_type": shown.content_type, "must_confirm": sample_must}, result)


def _counter():  # noqa: ANN202
    n = 0
    while True:
        n += 1
        yield n


_draft_ids = _counter()


def _params(content_type: str) -> dict[str, str]:
    return dict(p.strip().partition("=")[::2] for p in content_type.split(";")[1:])


def _segments(rendered) -> int:  # noqa: ANN001 - a Rendered
    value = _params(rendered.content_type).get("segments", "")
    return int(value) if value.isdigit() else 1


async def _existing(node: Node, scope: Scope, sender: str, identifier: str) -> int | None:
    """The stored warning of this sender and identifier: submitting again returns it unchanged
    (or is refused, if another department's), exactly as POST /api/v1/warnings would."""
    w = warnings.c
    async with node.db.read() as conn:
        row = (await conn.execute(sa.select(w.id, w.department)
                                  .where(w.sender == sender, w.identifier == identifier))).first()
    if row is None:
        return None
    if row.department != scope.department:
        raise error("auth.identifier_taken", "identifier", f"{sender},{identifier} is a warning of another "
                    "department", f"{sender},{identifier} 是其他单位的预警")
    return row.id


def _unsigned(link: str) -> str:
    """The link with its token blanked to as many x's: the same length (so the same segments),
    but nothing that would confirm anyone if the preview were copied or shown on a screen."""
    base, _, token = link.rpartition("/")
    return f"{base}/{'x' * len(token)}"


async def _next_warning_id(node: Node) -> int:
    """A likely id for the warning (its reply code and link are in the SMS: they count)."""
    async with node.db.read() as conn:
        return ((await conn.execute(sa.select(sa.func.max(warnings.c.id)))).scalar() or 0) + 1


async def _households_in(node: Node, codes: list[str]) -> int:
    total = 0
    async with node.db.read() as conn:
        for i in range(0, len(codes), CHUNK):
            total += (await conn.execute(sa.select(sa.func.count()).select_from(households)
                                         .where(households.c.grid.in_(codes[i:i + CHUNK])))).scalar_one()
    return total


# ------------------------------------------------------------------ approval queue

async def approval_queue(request: web.Request) -> web.Response:
    node = request.app[NODE]
    scope = await scope_of(request)
    w, a = warnings.c, approvals.c
    limited = "*" not in scope.regions  # then each warning's area is resolved: its CAP is needed
    columns = [w.id, w.identifier, w.sender, w.headline, w.event, w.level, w.status, w.msg_type, w.department,
               w.submitted_by, w.created_at, w.approvals_needed, w.expires] + ([w.cap_xml] if limited else [])
    query = sa.select(*columns).where(w.state == "awaiting").order_by(w.created_at, w.id).limit(MAX_QUEUE)
    if not scope.can(Right.READ_ALL):
        query = query.where(w.department == scope.department)
    async with node.db.read() as conn:
        rows = (await conn.execute(query)).all()
        given: dict[int, list[dict]] = defaultdict(list)
        ids = [r.id for r in rows]
        for i in range(0, len(ids), CHUNK):
            for row in await conn.execute(sa.select(a.warning_id, a.approver, a.at)
                                          .where(a.warning_id.in_(ids[i:i + CHUNK]), a.decision == "approved")
                                          .order_by(a.id)):
                given[row.warning_id].append({"by": row.approver, "at": row.at.isoformat()})
    now = node.clock.now()
    items = []
    for r in rows:
        if not may_read(scope, r.department):
            continue
        done = given.get(r.id, [])
        refusal = await node.intake.approval_refusal(scope, r.cap_xml if limited else "", r.submitted_by,
                                                     {x["by"] for x in done})
        level = Level(r.level)
        items.append({
            "warning_id": r.id, "identifier": r.identifier, "sender": r.sender, "headline": r.headline,
            "event": r.event, "level": level.label, "level_zh": level.zh, "status": r.status,
            "msg_type": r.msg_type, "department": r.department, "submitted_by": r.submitted_by,
            "submitted_at": r.created_at.isoformat(), "waiting_seconds": _seconds(now, r.created_at),
            "expires": r.expires.isoformat() if r.expires else None,
            "approvals": done, "needed": r.approvals_needed, "two_person": r.approvals_needed >= 2,
            "may_approve": refusal is None, "why_not": None if refusal is None else _why(refusal)})
    return json_ok({"items": items})


def _seconds(now: datetime, then: datetime) -> float:
    return max(0.0, (now - then).total_seconds())


def _why(err: WarndError) -> dict:
    kind = err.kind
    detail = err.problems[0] if err.problems else None
    return {"code": err.code, "zh": detail.detail_zh if detail else kind.title_zh,
            "en": detail.detail_en if detail else kind.title_en}


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/console/settings", settings), web.get("/api/v1/console/regions", regions),
            web.post("/api/v1/drafts/preview", preview), web.get("/api/v1/approvals", approval_queue)]
