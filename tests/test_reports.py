"""A warning's report over real HTTP (SQLite and PostgreSQL, a manual clock): JSON, CSV and
XLSX with the same figures; the coverage curve never falls and reaches 100 % once every grid is
confirmed; formula-looking names stay text in both files; a drill's report says 演练 in its
title and file name and evaluates each target, met and missed.

The county of test_rollups.py; its ladder leaves A and B confirmed, C covered, D open."""
from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from urllib.parse import unquote

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer
from factories import COUNTY, NO_APPROVAL, alert
from openpyxl import load_workbook
from test_pages import DOOR_MINUTES, Site, _path
from test_rollups import A, B, C, D, T1, T2, V1, V2, V3, _run_the_ladder, directory

from warnd.config import load_config
from warnd.domain.authority import Role, Scope, admin_scope
from warnd.domain.model import Level, Status
from warnd.engine.node import Node
from warnd.http.app import build_app
from warnd.http.rollups_api import NOT_WOKEN_COLUMNS
from warnd.ingest.capxml import alert_to_xml
from warnd.store.schema import deliveries

WALKER = '=HYPERLINK("http://x")'  # D's backup and walker: a spreadsheet would run it


@pytest.fixture
async def county(database, clock):
    config = load_config(None, database_url=database.url, public_base_url="https://warn.example.cn",
                         twilio={"from_number": "+15005550006", "api_base_url": "http://127.0.0.1:9"},
                         sms={"enabled": True}, voice={"enabled": True}, webhook={"enabled": False},
                         routing=[{"levels": ["red"], "channels": ["sms", "voice"], "roles": ["grid_responsible"]}],
                         approval=NO_APPROVAL, console={"drill_targets": {"reach_minutes": 5, "complete_minutes": 30}})
    node = Node(config, clock=clock)
    await node.directory.import_data(directory())
    await node.start(dispatch=False)
    client = TestClient(TestServer(build_app(node)))
    await client.start_server()
    site = Site(node, client, clock)
    site.admin = await node.tokens.create(admin_scope())
    yield site
    await client.close()
    await node.stop()


async def fetch(site: Site, path: str, token: str | None = None) -> tuple[int, dict, bytes]:
    headers = {"Authorization": f"Bearer {token or site.admin}"} if token != "" else {}
    async with site.client.get(path, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def report(site: Site, wid: int, token: str | None = None) -> dict:
    status, _, body = await fetch(site, f"/api/v1/warnings/{wid}/report", token)
    assert status == 200, body
    return json.loads(body)


def monotone(curve: list[dict]) -> bool:
    return all(a["seconds"] < b["seconds"] and a["percent"] <= b["percent"] for a, b in zip(curve, curve[1:]))


async def confirm_by_phone(site: Site, wid: int, grid: str) -> None:
    cid = next(g for g in (await site.node.coverage.report(wid))["grids"] if g["grid"] == grid)["confirmation_id"]
    async with site.client.post(f"/api/v1/warnings/{wid}/confirmations/{cid}", json={"reason": "来电确认"},
                                headers={"Authorization": f"Bearer {site.admin}"}) as resp:
        assert resp.status == 200


async def test_the_report_as_json(county):
    wid = await _run_the_ladder(county)
    found = await report(county, wid)
    assert found["is_drill"] is False and found["drill"] is None
    s = found["summary"]
    assert s["counts"] == {"confirmed": 2, "covered": 1, "open": 0, "not_woken": 1, "uncovered": 0, "total": 4}
    assert s["percent"] == 75.0 and s["time_to"]["100"] is None
    assert s["release"]["published_at"] == county.t0.isoformat() and s["totals"]["moved_people"] == 8
    assert monotone(found["curve"]) and found["curve"][0] == {"seconds": 0.0, "percent": 0.0}
    assert found["curve"][-1]["percent"] == 75.0
    assert [(r["code"], r["grids"]) for r in found["rollup"]["regions"]] == [(T1, 3), (V1, 2), (V2, 1), (T2, 1),
                                                                             (V3, 1)]
    assert [(n["grid"], n["state"]) for n in found["not_woken"]] == [(B, "confirmed"), (C, "covered"), (D, "open")]
    assert found["not_woken"][2]["phone"] == "+8613800000031"
    fired = {(r["grid"], r["action"]) for r in found["rungs"]}
    assert {(D, "notify"), (D, "door_to_door"), (C, "door_to_door")} <= fired and (A, "door_to_door") not in fired
    assert all(r["fired_at"] and r["state"] == "fired" for r in found["rungs"])
    h = found["households"]
    assert h["total"] == {"total": 3, "notified": 1, "moved": 1, "not_home": 1, "refused": 0, "needs_help": 0,
                          "unmarked": 0, "moved_people": 8}
    assert [(g["grid"], g["total"], g["reached"], g["moved_people"]) for g in h["grids"]] == [(C, 2, 2, 3),
                                                                                            (D, 1, 0, 5)]

    county.clock.advance(120)
    await confirm_by_phone(county, wid, D)
    found = await report(county, wid)
    assert found["summary"]["percent"] == 100.0 and monotone(found["curve"])
    done = (county.clock.now() - county.t0).total_seconds()
    assert found["curve"][-1] == {"seconds": done, "percent": 100.0} and found["summary"]["time_to"]["100"] == done

    viewer = await county.node.tokens.create(Scope("县应急局", ("*",), ("*",), Level.RED, Role.VIEWER))
    assert {n["phone"] for n in (await report(county, wid, viewer))["not_woken"]} == {None}
    other = await county.node.tokens.create(Scope("县水利局", ("*",), ("*",), Level.RED))
    for path in ("report", "report.csv", "report.xlsx"):
        assert (await fetch(county, f"/api/v1/warnings/{wid}/{path}", other))[0] == 404
        assert (await fetch(county, f"/api/v1/warnings/{wid}/{path}", ""))[0] == 401
        assert (await fetch(county, f"/api/v1/warnings/99999/{path}"))[0] == 404


async def test_the_report_as_csv(county):
    wid = await _run_the_ladder(county)
    status, headers, body = await fetch(county, f"/api/v1/warnings/{wid}/report.csv")
    assert status == 200 and headers["Content-Type"] == "text/csv; charset=utf-8"
    assert headers["Content-Disposition"].startswith('attachment; filename="warnd-report-W1.csv"; ')
    assert unquote(headers["Content-Disposition"].split("UTF-8''")[1]) == "预警报告-W1.csv"
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0] == ["预警报告 Warning report · W1 · 暴雨预警"] and "演练" not in body.decode("utf-8-sig")
    titles = [rows[i + 1][0] for i, r in enumerate(rows[:-1]) if r == []]
    assert titles == ["摘要 Summary", "覆盖曲线 Coverage over time", "乡镇、村汇总 Roll-up per township and village",
                      "未叫醒名单 Not woken", "已触发的升级步骤 Rungs fired", "入户结果 Household outcomes"]
    summary = {r[0]: r[1] for r in rows if len(r) == 2}
    assert summary["网格数 Grids"] == "4" and summary["覆盖率 % Coverage %"] == "75.0"
    assert summary["转移人数 People moved"] == "8" and summary["级别 Level"] == "红色 red"
    start = rows.index([h for _, h in NOT_WOKEN_COLUMNS])
    d_row = rows[start + 3]
    assert d_row[2] == D and d_row[5] == "'+8613800000031"  # kept as text
    assert d_row[7] == f"'{WALKER}、李乡长" and d_row[8] == f"'{WALKER}"
    assert not [cell for r in rows for cell in r if cell.startswith(("=", "+", "@"))]  # nothing a spreadsheet runs
    township = next(r for r in rows if r[:1] == [T2])
    assert township[1:5] == ["柳河乡", "township", "1", "0"]
    assert next(r for r in rows if r[:1] == ["合计 Total"])[2:4] == ["3", "1"]


async def test_the_report_as_xlsx(county):
    wid = await _run_the_ladder(county)
    status, headers, body = await fetch(county, f"/api/v1/warnings/{wid}/report.xlsx")
    assert status == 200
    assert headers["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert 'filename="warnd-report-W1.xlsx"' in headers["Content-Disposition"]
    book = load_workbook(io.BytesIO(body))
    assert book.sheetnames == ["摘要 Summary", "覆盖曲线 Curve", "汇总 Roll-up", "未叫醒 Not woken", "升级 Rungs",
                               "入户 Households"]
    summary = book["摘要 Summary"]
    assert summary["A1"].value == "预警报告 Warning report · W1 · 暴雨预警"
    values = {row[0]: row[1] for row in summary.iter_rows(min_row=4, values_only=True)}
    assert values["网格数 Grids"] == 4 and values["覆盖率 % Coverage %"] == 75.0  # numbers, not text
    curve = list(book["覆盖曲线 Curve"].iter_rows(min_row=4, values_only=True))
    assert curve[0] == (0.0, 0.0) and curve[-1][1] == 75.0
    not_woken = book["未叫醒 Not woken"]
    assert [c.value for c in not_woken[3]] == [h for _, h in NOT_WOKEN_COLUMNS]
    d_row = [c for c in not_woken[6]]
    assert d_row[2].value == D and d_row[8].value == f"'{WALKER}" and d_row[8].data_type == "s"
    assert all(c.data_type != "f" for sheet in book for row in sheet.iter_rows() for c in row)  # no formulas
    rollup = {row[0]: row for row in book["汇总 Roll-up"].iter_rows(min_row=4, values_only=True)}
    assert rollup[T1][3:7] == (3, 2, 1, 0) and rollup[V3][10] == 0.0


async def _drill(site: Site, identifier: str) -> int:
    xml = alert_to_xml(alert(identifier, codes=(COUNTY,), status=Status.EXERCISE)).encode()
    submitted, _ = await site.node.intake.submit(xml, "application/cap+xml", admin_scope())
    return submitted.warning_id


async def _sent(site: Site, wid: int, minutes: float) -> None:
    """As the dispatcher would record it: every send to a person accepted by the provider."""
    d = deliveries.c
    async with site.node.db.write() as conn:
        await conn.execute(sa.update(deliveries).where(d.warning_id == wid, d.recipient_kind == "person")
                           .values(state="sent", sent_at=site.t0 + timedelta(minutes=minutes)))


async def test_a_drill_that_met_its_targets(county):
    wid = await _drill(county, "DRILL-1")
    await _sent(county, wid, 1)
    county.clock.advance(120)
    for person in ("rA", "rB", "rC", "rD"):
        await county.post(_path(county.node.link_url("confirm", f"{wid}/{person}")))
    found = await report(county, wid)
    assert found["is_drill"] is True and found["warning"]["status"] == "Exercise"
    assert found["summary"]["percent"] == 100.0 and found["curve"][-1] == {"seconds": 120.0, "percent": 100.0}
    drill = found["drill"]
    assert drill["met"] is True
    assert [(t["key"], t["target"], t["actual"], t["met"]) for t in drill["targets"]] == [
        ("reach", 5, 1.0, True), ("before_last_rung", 4, 4, True), ("complete", 30, 2.0, True)]

    status, headers, body = await fetch(county, f"/api/v1/warnings/{wid}/report.xlsx")
    assert 'filename="warnd-drill-report-DRILL-1.xlsx"' in headers["Content-Disposition"]
    assert unquote(headers["Content-Disposition"].split("UTF-8''")[1]) == "演练报告-DRILL-1.xlsx"
    book = load_workbook(io.BytesIO(body))
    assert book.sheetnames[-1] == "演练评估 Drill evaluation"
    assert all(sheet["A1"].value.startswith("【演练 DRILL】") for sheet in book)
    rows = list(book["演练评估 Drill evaluation"].iter_rows(min_row=4, values_only=True))
    assert [r[-1] for r in rows] == ["达成 met"] * 4 and rows[0][1:4] == (5, 1.0, "minutes")
    status, headers, body = await fetch(county, f"/api/v1/warnings/{wid}/report.csv")
    text = body.decode("utf-8-sig")
    assert text.startswith("【演练 DRILL】演练评估报告 Drill report · DRILL-1") and "演练评估 Drill evaluation" in text
    assert 'filename="warnd-drill-report-DRILL-1.csv"' in headers["Content-Disposition"]


async def test_a_drill_that_missed_its_targets_says_by_how_much(county):
    wid = await _drill(county, "DRILL-2")  # nothing was sent: the dispatcher is off
    county.clock.advance(60)
    await county.post(_path(county.node.link_url("confirm", f"{wid}/rA")))
    await county.at(DOOR_MINUTES + 10)  # past every grid's last rung (the alarm at 15 min)
    await county.post(_path(county.node.link_url("confirm", f"{wid}/rB")))
    drill = (await report(county, wid))["drill"]
    assert drill["met"] is False
    reach, rung, complete = drill["targets"]
    assert (reach["actual"], reach["detail"]["never_reached"], reach["met"]) == (None, 4, False)
    assert (rung["target"], rung["actual"], rung["met"]) == (4, 1, False)  # only A before its last rung
    assert (complete["actual"], complete["met"]) == (None, False)
    body = (await fetch(county, f"/api/v1/warnings/{wid}/report.csv"))[2].decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(body)))
    overall = next(r for r in rows if r[:1] == ["总体 Overall"])
    assert overall[-1] == "未达成 missed" and sum(r[-1:] == ["未达成 missed"] for r in rows) == 4
