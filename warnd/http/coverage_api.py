"""Coverage, operator-recorded confirmations, and operator alarms."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from aiohttp import web

from warnd.domain.errors import WarndError, error
from warnd.domain.authority import Right, require
from warnd.http.auth import scope_of
from warnd.http.warnings_api import may_read
from warnd.http.keys import NODE
from warnd.http.params import whole_number
from warnd.http.responses import json_object, json_ok
from warnd.store import audit
from warnd.store.database import Database
from warnd.store.schema import alarms, confirmations


async def coverage(request: web.Request) -> web.Response:
    scope = await scope_of(request)
    node = request.app[NODE]
    found = await node.queries.department_of(_id(request, "id"))
    if found is None or not may_read(scope, found[0]):
        raise WarndError("warning.not_found")
    report = await node.coverage.report(_id(request, "id"))
    if report is None:
        raise WarndError("warning.not_found")
    return json_ok(report)


async def record_confirmation(request: web.Request) -> web.Response:
    """An operator records a confirmation received by phone, with a reason (audited)."""
    scope = await scope_of(request)
    require(scope, Right.OPERATE)
    node = request.app[NODE]
    body = await json_object(request)
    reason = str(body.get("reason") or "").strip()
    if not reason:
        raise error("request.invalid", "reason", "say why you record this confirmation (e.g. who phoned)",
                    "请填写代为确认的原因（例如谁来电确认）")
    cid = _id(request, "confirmation_id")
    async with node.db.read() as conn:
        row = (await conn.execute(sa.select(confirmations.c.warning_id).where(confirmations.c.id == cid))).first()
    if row is None or row.warning_id != _id(request, "id"):
        raise error("request.not_found", "confirmation_id", "no such confirmation requirement", "无此叫应要求")
    changed = await node.answers.operator_confirm(cid, body.get("person_id"), scope.who, reason)
    return json_ok({"confirmed": bool(changed)})


async def list_alarms(request: web.Request) -> web.Response:
    require(await scope_of(request), Right.READ_ALL)
    node = request.app[NODE]
    q = sa.select(alarms).order_by(alarms.c.id.desc()).limit(500)
    if request.query.get("open") == "1":
        q = q.where(alarms.c.acknowledged_at.is_(None))
    async with node.db.read() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(q)]
    for r in rows:
        for k in ("at", "acknowledged_at"):
            r[k] = r[k].isoformat() if r[k] else None
    return json_ok({"items": rows})


async def acknowledge_alarm(request: web.Request) -> web.Response:
    """确认告警: one action, by the operator on duty (or an admin); audited."""
    scope = await scope_of(request)
    require(scope, Right.OPERATE)
    node = request.app[NODE]
    acknowledged = await _acknowledge(node.db, _id(request, "id"), node.clock.now(), scope.who, scope.who)
    return json_ok({"acknowledged": acknowledged})


async def _acknowledge(db: Database, alarm_id: int, now: datetime, department: str, actor: str) -> bool:
    """Acknowledge an open alarm and audit it, in one transaction; False if it was not open."""
    a = alarms.c
    async with db.write() as conn:
        row = (await conn.execute(sa.update(alarms).where(a.id == alarm_id, a.acknowledged_at.is_(None))
                                  .values(acknowledged_at=now, acknowledged_by=department)
                                  .returning(a.code, a.warning_id, a.grid))).first()
        if row is not None:
            await audit.append(conn, db, now, actor, "alarm.acknowledge", f"alarm:{alarm_id}",
                               {"code": row.code, "warning_id": row.warning_id, "grid": row.grid})
    return row is not None


def _id(request: web.Request, name: str) -> int:
    return whole_number(request.match_info[name], name)


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/warnings/{id}/coverage", coverage),
            web.post("/api/v1/warnings/{id}/confirmations/{confirmation_id}", record_confirmation),
            web.get("/api/v1/alarms", list_alarms),
            web.post("/api/v1/alarms/{id}/acknowledge", acknowledge_alarm)]
