"""Roll-ups and lists of a warning: coverage per village / township / county, the 未叫醒
(not woken) list as JSON and CSV, and one grid's timeline.

Read as the coverage report is: a department sees its own warnings, roles with
read_all every one (`may_read`); anyone else is told there is no such warning.
Phone numbers and household addresses only with the contacts right.
"""
from __future__ import annotations

import csv
import io

from aiohttp import web

from warnd.domain.authority import Right, Scope
from warnd.domain.coverage import ROLLUP_KINDS
from warnd.domain.errors import WarndError, error
from warnd.http.auth import scope_of
from warnd.http.keys import NODE
from warnd.http.params import whole_number
from warnd.http.responses import json_ok
from warnd.http.warnings_api import may_read
from warnd.store.coverage import CoverageStore
from warnd.store.timeline import TimelineStore

# The 未叫醒 list's columns: key, header (Chinese first, then English, for one header row Excel shows whole).
NOT_WOKEN_COLUMNS = (
    ("township", "乡镇 Township"), ("village", "村 Village"), ("grid", "网格编码 Grid code"),
    ("grid_name", "网格 Grid"), ("person_name", "责任人 Responsible person"), ("phone", "电话 Phone"),
    ("not_woken_at", "列入未叫醒时间 Not woken since"), ("sent_to_door", "已派上门 Sent to the door"),
    ("list_assignee", "入户负责人 Door-to-door walker"), ("state", "状态 State"),
    ("woken_at", "叫醒时间 Woken at"), ("confirmed_by", "确认人 Confirmed by"), ("channel", "方式 Channel"),
)
STATE_NAMES = {"open": "未叫醒 open", "confirmed": "已确认 confirmed", "covered": "已入户覆盖 covered",
               "closed": "已结束 closed"}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a cell a spreadsheet would run as a formula


async def _readable(request: web.Request) -> tuple[Scope, int]:
    """The caller and the warning id, if the caller may read that warning (404 otherwise)."""
    scope = await scope_of(request)
    warning_id = whole_number(request.match_info["id"], "id")
    found = await request.app[NODE].queries.department_of(warning_id)
    if found is None or not may_read(scope, found[0]):
        raise WarndError("warning.not_found")
    return scope, warning_id


async def rollup(request: web.Request) -> web.Response:
    _, warning_id = await _readable(request)
    kind = request.query.get("kind")
    if kind is not None and kind not in ROLLUP_KINDS:
        raise error("request.invalid", "kind", f"kind must be one of {', '.join(ROLLUP_KINDS)}",
                    "kind 须为 county（县）、township（乡镇）或 village（村）")
    report = await CoverageStore(request.app[NODE].db).rollup(warning_id, (kind,) if kind else ROLLUP_KINDS)
    if report is None:
        raise WarndError("warning.not_found")
    return json_ok(report)


async def _not_woken(request: web.Request) -> tuple[int, list[dict]]:
    scope, warning_id = await _readable(request)
    only_open = request.query.get("open", "0")
    if only_open not in ("0", "1"):
        raise error("request.invalid", "open", "open must be 0 or 1", "open 须为 0 或 1")
    rows = await CoverageStore(request.app[NODE].db).not_woken(warning_id, only_open == "1")
    if rows is None:
        raise WarndError("warning.not_found")
    if not scope.can(Right.CONTACTS):
        rows = [{**r, "phone": None} for r in rows]
    return warning_id, rows


async def not_woken(request: web.Request) -> web.Response:
    warning_id, rows = await _not_woken(request)
    return json_ok({"warning_id": warning_id, "items": rows})


async def not_woken_csv(request: web.Request) -> web.Response:
    """UTF-8 with a BOM (Excel then reads the Chinese right), one bilingual header row."""
    warning_id, rows = await _not_woken(request)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([header for _, header in NOT_WOKEN_COLUMNS])
    for r in rows:
        writer.writerow([_cell(key, r.get(key)) for key, _ in NOT_WOKEN_COLUMNS])
    return web.Response(body=("\ufeff" + out.getvalue()).encode("utf-8"),
                        headers={"Content-Type": "text/csv; charset=utf-8",
                                 "Content-Disposition": f'attachment; filename="not-woken-{warning_id}.csv"',
                                 "Cache-Control": "no-store"})


def _cell(key: str, value: object) -> str:
    if value is None:
        return ""
    if key == "sent_to_door":
        value = "、".join(str(v) for v in value)  # type: ignore[union-attr] - a list of names
    elif key == "state":
        value = STATE_NAMES.get(str(value), value)
    text = str(value)
    # A name or number starting like a formula ("+86…", "=…") is kept as text, not run (CSV injection).
    return "'" + text if text.startswith(FORMULA_START) else text


async def timeline(request: web.Request) -> web.Response:
    scope, warning_id = await _readable(request)
    grid = request.match_info["grid"]
    if not grid.isascii() or not grid.isdigit() or len(grid) > 32:
        raise error("request.invalid", "grid", "grid must be a region code (digits, at most 32)",
                    "grid 须为区域编码（数字，最多 32 位）")
    found = await TimelineStore(request.app[NODE].db).grid(warning_id, grid, scope.can(Right.CONTACTS))
    if found is None:
        raise error("request.not_found", "grid", "this warning asks nothing of that grid", "该预警没有此网格的叫应要求")
    return json_ok(found)


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/warnings/{id}/rollup", rollup),
            web.get("/api/v1/warnings/{id}/not-woken", not_woken),
            web.get("/api/v1/warnings/{id}/not-woken.csv", not_woken_csv),
            web.get("/api/v1/warnings/{id}/grids/{grid}/timeline", timeline)]
