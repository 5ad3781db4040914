"""A warning's report as JSON, CSV and XLSX; a drill's says 演练 and carries its evaluation.

The three forms come from one report (warnd/store/reports.py) laid out once as
sections (`sections`): the CSV writes them one after another, each with a
bilingual header row; the workbook puts each on its own sheet. Every text cell
is written as rollups_api writes its CSV (`_cell`): a name or number that starts
like a formula is kept as text, in both files. CSV is UTF-8 with a BOM so Excel
reads the Chinese. Read as rollups are (`_readable`); phones only with CONTACTS.
"""
from __future__ import annotations

import asyncio
import csv
import io
import re
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web
from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from warnd.domain.authority import Right
from warnd.domain.errors import WarndError
from warnd.domain.report import Targets
from warnd.http.keys import NODE
from warnd.http.responses import json_ok
from warnd.http.rollups_api import NOT_WOKEN_COLUMNS, _cell, _readable
from warnd.store.reports import ReportStore

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MET = {True: "达成 met", False: "未达成 missed"}


@dataclass(frozen=True)
class Section:
    sheet: str  # the workbook sheet's name (at most 31 characters)
    title: str  # Chinese first, then English
    columns: tuple[tuple[str, str], ...]  # (key, bilingual header)
    rows: list[dict]


async def _report(request: web.Request) -> dict:
    scope, warning_id = await _readable(request)
    node = request.app[NODE]
    t = node.config.console.drill_targets
    found = await ReportStore(node.db).report(warning_id, node.clock.now(), scope.can(Right.CONTACTS),
                                              Targets(t.reach_minutes, t.complete_minutes))
    if found is None:
        raise WarndError("warning.not_found")
    return found


async def report_json(request: web.Request) -> web.Response:
    return json_ok(await _report(request), headers={"Cache-Control": "no-store"})


async def report_csv(request: web.Request) -> web.Response:
    found = await _report(request)
    body = await asyncio.to_thread(render_csv, found)
    return _download(body, "text/csv; charset=utf-8", _file_name(found, "csv"))


async def report_xlsx(request: web.Request) -> web.Response:
    found = await _report(request)
    body = await asyncio.to_thread(render_xlsx, found)
    return _download(body, XLSX, _file_name(found, "xlsx"))


def _download(body: bytes, content_type: str, names: tuple[str, str]) -> web.Response:
    ascii_name, full_name = names
    return web.Response(body=body, headers={
        "Content-Type": content_type, "Cache-Control": "no-store",
        "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(full_name)}"})


def _file_name(report: dict, ext: str) -> tuple[str, str]:
    """An ASCII name for old clients and the full one (RFC 6266 filename*): the identifier, and
    for a drill "drill" / 演练 — a drill's file is never mistaken for a real warning's."""
    w = report["warning"]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", w["identifier"])[:80].strip("._") or str(w["id"])
    if report["is_drill"]:
        return f"warnd-drill-report-{safe}.{ext}", f"演练报告-{safe}.{ext}"
    return f"warnd-report-{safe}.{ext}", f"预警报告-{safe}.{ext}"


def title_of(report: dict) -> str:
    w = report["warning"]
    kind = "【演练 DRILL】演练评估报告 Drill report" if report["is_drill"] else "预警报告 Warning report"
    return f"{kind} · {w['identifier']} · {w['headline'] or w['event']}"


def sections(report: dict) -> list[Section]:
    """The report as tables, in the order a reader goes through it."""
    w, s = report["warning"], report["summary"]
    release, c, t = s["release"], s["counts"], s["time_to"]
    facts = [("identifier", "标识 Identifier", w["identifier"]), ("event", "事件 Event", w["event"]),
             ("headline", "标题 Headline", w["headline"]), ("level", "级别 Level", f"{w['level_zh']} {w['level']}"),
             ("status", "状态 Status", ("演练 " if report["is_drill"] else "") + w["status"]),
             ("msg_type", "消息类型 Message type", w["msg_type"]), ("state", "当前状态 State", w["state"]),
             ("department", "发布单位 Department", w["department"]), ("sent", "发送时间 Sent", w["sent"]),
             ("submitted_at", "提交时间 Submitted", release["submitted_at"]),
             ("approved_at", "签发时间 Approved", release["approved_at"]),
             ("published_at", "发布时间 Published", release["published_at"]),
             ("first_sent_at", "首条发出 First sent", release["first_sent_at"]),
             ("grids", "网格数 Grids", c["total"]), ("confirmed", "已确认 Confirmed", c["confirmed"]),
             ("covered", "已入户覆盖 Covered", c["covered"]), ("not_woken", "未叫醒 Not woken", c["not_woken"]),
             ("uncovered", "未覆盖（喇叭） Uncovered", c["uncovered"]), ("open", "未落实 Open", c["open"]),
             ("percent", "覆盖率 % Coverage %", s["percent"]),
             ("p50", "50% 用时（秒） Time to 50 % (s)", t["50"]), ("p90", "90% 用时（秒） Time to 90 % (s)", t["90"]),
             ("p100", "100% 用时（秒） Time to 100 % (s)", t["100"]),
             ("moved_people", "转移人数 People moved", s["totals"]["moved_people"]),
             ("generated_at", "报告生成时间 Generated", report["generated_at"])]
    out = [Section("摘要 Summary", "摘要 Summary", (("item", "项目 Item"), ("value", "值 Value")),
                   [{"item": label, "value": value} for _, label, value in facts])]
    out.append(Section("覆盖曲线 Curve", "覆盖曲线 Coverage over time",
                       (("seconds", "发布后秒数 Seconds since publication"), ("percent", "覆盖率 % Coverage %")),
                       report["curve"]))
    out.append(Section("汇总 Roll-up", "乡镇、村汇总 Roll-up per township and village", (
        ("code", "区域编码 Region code"), ("name", "名称 Name"), ("kind", "层级 Kind"), ("grids", "网格 Grids"),
        ("confirmed", "已确认 Confirmed"), ("covered", "已入户覆盖 Covered"), ("open", "未落实 Open"),
        ("not_woken", "未叫醒 Not woken"), ("not_woken_ever", "曾未叫醒 Ever not woken"),
        ("uncovered", "未覆盖 Uncovered"), ("percent", "覆盖率 % Coverage %"),
        ("households", "入户户数 Households"), ("moved_people", "转移人数 People moved")),
        [{**r, "percent": None if r["reached_share"] is None else round(100 * r["reached_share"], 1),
          "households": r["households"]["total"]} for r in report["rollup"]["regions"]]))
    out.append(Section("未叫醒 Not woken", "未叫醒名单 Not woken", NOT_WOKEN_COLUMNS, report["not_woken"]))
    out.append(Section("升级 Rungs", "已触发的升级步骤 Rungs fired", (
        ("grid", "网格编码 Grid code"), ("grid_name", "网格 Grid"), ("ladder", "升级表 Ladder"),
        ("step", "步骤 Step"), ("action", "动作 Action"), ("due_at", "计划时间 Due"),
        ("fired_at", "触发时间 Fired"), ("state", "状态 State")), report["rungs"]))
    households = report["households"]
    rows = list(households["grids"])
    if households["total"]:
        rows.append({"grid": "合计 Total", **households["total"]})
    out.append(Section("入户 Households", "入户结果 Household outcomes", (
        ("grid", "网格编码 Grid code"), ("grid_name", "网格 Grid"), ("total", "户数 Households"),
        ("notified", "已通知 Told"), ("moved", "已转移 Moved"), ("not_home", "不在家 Not at home"),
        ("refused", "拒绝 Refused"), ("needs_help", "需帮助 Needs help"), ("unmarked", "未标记 Unmarked"),
        ("moved_people", "转移人数 People moved")), rows))
    if report["drill"] is not None:
        d = report["drill"]
        rows = [{"target_name": f"{r['name_zh']} / {r['name_en']}", "target": r["target"], "actual": r["actual"],
                 "unit": r["unit"], "met": MET[r["met"]]} for r in d["targets"]]
        rows.append({"target_name": "总体 Overall", "met": MET[d["met"]]})
        out.append(Section("演练评估 Drill evaluation", "演练评估 Drill evaluation", (
            ("target_name", "指标 Target"), ("target", "目标 Target value"), ("actual", "实际 Actual"),
            ("unit", "单位 Unit"), ("met", "结果 Result")), rows))
    return out


def render_csv(report: dict) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([_cell("", title_of(report))])
    for section in sections(report):
        writer.writerow([])
        writer.writerow([_cell("", section.title)])
        writer.writerow([header for _, header in section.columns])
        for row in section.rows:
            writer.writerow([_cell(key, row.get(key)) for key, _ in section.columns])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _xlsx_value(key: str, value: object) -> object:
    """Numbers stay numbers; everything else is text as the CSV writes it (never a formula)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return _cell(key, value)


def render_xlsx(report: dict) -> bytes:
    book = Workbook()
    book.remove(book.active)
    title = title_of(report)
    bold = Font(bold=True)
    for section in sections(report):
        sheet = book.create_sheet(section.sheet[:31])
        sheet.append([_cell("", title)])
        sheet.append([_cell("", section.title)])
        sheet.append([header for _, header in section.columns])
        for cell in (sheet["A1"], sheet["A2"], *sheet[3]):
            cell.font = bold
        for row in section.rows:
            sheet.append([_xlsx_value(key, row.get(key)) for key, _ in section.columns])
        sheet.freeze_panes = "A4"
        for n, (_, header) in enumerate(section.columns):
            sheet.column_dimensions[get_column_letter(n + 1)].width = max(12, min(40, len(header) + 4))
    book.properties.title = title
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/warnings/{id}/report", report_json),
            web.get("/api/v1/warnings/{id}/report.csv", report_csv),
            web.get("/api/v1/warnings/{id}/report.xlsx", report_xlsx)]
