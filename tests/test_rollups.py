"""Roll-ups and lists (issue 11): coverage per village, township and county, the 未叫醒
list as JSON and CSV, and a grid's timeline — over real HTTP, on SQLite and PostgreSQL.

A red warning to a county of two townships, three villages and four grids runs its
ladder on a manual clock: one grid confirms at once, one late (after going on the
未叫醒 list), one is covered door to door (told + moved), one stays open with its
household not at home and its walker reporting by SMS."""
from __future__ import annotations

import csv
import io

import pytest
from aiohttp.test_utils import TestClient, TestServer
from factories import COUNTY, NO_APPROVAL
from test_pages import DOOR_MINUTES, Site, _item_ids, _path

from warnd.config import load_config
from warnd.domain.authority import Role, Scope, admin_scope
from warnd.domain.coverage import GridFacts, Place, enclosing, moved_people, rollup
from warnd.domain.directory import Household, Person, Region
from warnd.domain.households import Mark, Outcome, tally
from warnd.domain.model import Level
from warnd.engine.liaison import liaison_report
from warnd.engine.node import Node
from warnd.http.app import build_app
from warnd.ingest.directory import DirectoryData
from warnd.store.schema import call_lists, confirmations

T1, T2 = COUNTY + "100", COUNTY + "200"
V1, V2, V3 = T1 + "201", T1 + "202", T2 + "201"
A, B, C, D = V1 + "001", V1 + "002", V2 + "001", V3 + "001"  # confirmed · late · covered · open


# ---------------------------------------------------------------- pure

PLACES = {COUNTY: Place("示例县", "county", None), T1: Place("城关镇", "township", COUNTY),
          V1: Place("河口村", "village", T1), A: Place("一组", "grid", V1),
          # a grid the directory files under another village than its code says
          "421126100201009": Place("九组", "grid", V2), V2: Place("柳林村", "village", T1)}


def test_enclosing_follows_the_directory_then_the_code():
    assert enclosing(A, PLACES) == [A, V1, T1, COUNTY, "4211", "42"]
    assert enclosing("421126100201009", PLACES)[:2] == ["421126100201009", V2]
    assert enclosing(D, PLACES) == [D, V3, T2, COUNTY, "4211", "42"]  # not in the directory: by its shape
    loop = {"1": Place("x", "grid", "2"), "2": Place("y", "grid", "1")}
    assert enclosing("1", loop) == ["1", "2"]  # a loop ends the walk


def test_rollup_counts_each_grid_once_per_enclosing_region():
    households = tally([Mark(Outcome.TOLD), Mark(Outcome.MOVED, 3), Mark(Outcome.NOT_HOME), None])
    grids = [GridFacts(A, "confirmed"), GridFacts(B, "open", not_woken=True),
             GridFacts("421126100201009", "covered", households=households, moved_people=3),
             GridFacts(D, "confirmed", not_woken=True)]
    rows, total = rollup(grids, PLACES)
    by_code = {r["code"]: r for r in rows}
    assert list(by_code) == [COUNTY, T1, V1, V2, T2, V3]  # code order: a county before its townships
    county = by_code[COUNTY]
    assert (county["grids"], county["confirmed"], county["covered"], county["open"]) == (4, 2, 1, 1)
    assert (county["not_woken"], county["not_woken_ever"], county["moved_people"]) == (1, 2, 3)
    assert county["households"] == {"total": 4, "notified": 1, "moved": 1, "not_home": 1, "refused": 0,
                                    "needs_help": 0, "unmarked": 1}
    assert (by_code[V1]["grids"], by_code[V2]["grids"], by_code[V2]["covered"]) == (2, 1, 1)
    assert by_code[V3] == {**by_code[V3], "name": None, "kind": "village", "parent": T2, "grids": 1}
    assert by_code[T1]["parent"] == COUNTY and by_code[COUNTY]["reached_share"] == 0.75
    assert total == {k: v for k, v in county.items() if k not in ("code", "name", "kind", "parent")}
    villages, _ = rollup(grids, PLACES, ("village",))
    assert [r["code"] for r in villages] == [V1, V2, V3]
    assert moved_people(3, 20) == 20 and moved_people(7, 0) == 7


# ---------------------------------------------------------------- over HTTP

def directory() -> DirectoryData:
    regions = (Region(COUNTY, "示例县", "county"), Region(T1, "城关镇", "township", COUNTY),
               Region(T2, "柳河乡", "township", COUNTY), Region(V1, "河口村", "village", T1),
               Region(V2, "柳林村", "village", T1), Region(V3, "石桥村", "village", T2),
               Region(A, "一组", "grid", V1), Region(B, "二组", "grid", V1), Region(C, "一组", "grid", V2),
               Region(D, "一组", "grid", V3))
    people = [Person(f"r{g}", f"网格员{g}", code, ("grid_responsible",), f"+86138000000{n}1", backup=f"b{g}")
              for n, (g, code) in enumerate(zip("ABCD", (A, B, C, D)))]
    people += [Person(f"b{g}", f"后备{g}", code, ("liaison",), f"+86138000000{n}2")
               for n, (g, code) in enumerate(zip("ABC", (A, B, C)))]
    # a name a spreadsheet would run as a formula (CSV injection)
    people += [Person("bD", "=HYPERLINK(\"http://x\")", D, ("liaison",), "+8613800000032"),
               Person("duty1", "王镇长", T1, ("township_duty",), "+8613800000091"),
               Person("duty2", "李乡长", T2, ("township_duty",), "+8613800000092")]
    households = (Household("c1", C, "柳林村一组1号"), Household("c2", C, "柳林村一组2号", "+8613900000002"),
                  Household("d1", D, "石桥村一组1号", "+8613900000003"))
    return DirectoryData(regions=regions, people=tuple(people), households=households)


@pytest.fixture
async def county(database, clock):
    config = load_config(None, database_url=database.url, public_base_url="https://warn.example.cn",
                         twilio={"from_number": "+15005550006", "api_base_url": "http://127.0.0.1:9"},
                         sms={"enabled": True}, voice={"enabled": True}, webhook={"enabled": False},
                         routing=[{"levels": ["red"], "channels": ["sms", "voice"], "roles": ["grid_responsible"]}],
                         approval=NO_APPROVAL)
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


async def _run_the_ladder(site: Site) -> int:
    from factories import alert
    from warnd.ingest.capxml import alert_to_xml
    xml = alert_to_xml(alert("W1", codes=(COUNTY,))).encode()
    submitted, _ = await site.node.intake.submit(xml, "application/cap+xml", admin_scope())
    wid = submitted.warning_id
    assert sorted(c.grid for c in await site.rows(confirmations)) == [A, B, C, D]
    site.clock.advance(60)
    await site.post(_path(site.node.link_url("confirm", f"{wid}/rA")))
    await site.at(5.1)  # B, C, D go on the 未叫醒 list; their backups and the duty officers are asked
    await site.at(6)
    await site.post(_path(site.node.link_url("confirm", f"{wid}/rB")))  # late
    await site.at(DOOR_MINUTES + 0.1)
    lists = {cl.grid: cl.id for cl in await site.rows(call_lists)}
    assert sorted(lists) == [C, D]
    path = _path(site.node.link_url("call-list", str(lists[C])))
    c1, c2 = _item_ids((await site.page(path))[2])
    await site.post(f"{path}/items/{c1}", {"mark": "notified"})
    await site.post(f"{path}/items/{c2}", {"mark": "moved", "people": "3"})
    path = _path(site.node.link_url("call-list", str(lists[D])))
    (d1,) = _item_ids((await site.page(path))[2])
    await site.post(f"{path}/items/{d1}", {"mark": "not_home"})
    site.clock.advance(30)
    assert (await liaison_report(site.node.db, site.node.config, "+8613800000032", "已转移5人", "SM1",
                                 site.clock.now(), "sms")).recorded
    return wid


async def _get(site: Site, path: str, token: str | None = None) -> tuple[int, str, bytes]:
    headers = {"Authorization": f"Bearer {token or site.admin}"} if token != "" else {}
    async with site.client.get(path, headers=headers) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


async def test_coverage_rolls_up_per_village_township_and_county(county):
    import json
    wid = await _run_the_ladder(county)
    status, ctype, body = await _get(county, f"/api/v1/warnings/{wid}/rollup")
    assert status == 200 and ctype.startswith("application/json")
    report = json.loads(body)
    by_code = {r["code"]: r for r in report["regions"]}
    assert list(by_code) == [COUNTY, T1, V1, V2, T2, V3]
    shown = {code: (r["grids"], r["confirmed"], r["covered"], r["open"], r["not_woken"], r["not_woken_ever"],
                    r["moved_people"]) for code, r in by_code.items()}
    assert shown == {COUNTY: (4, 2, 1, 1, 1, 3, 8), T1: (3, 2, 1, 0, 0, 2, 3), V1: (2, 2, 0, 0, 0, 1, 0),
                     V2: (1, 0, 1, 0, 0, 1, 3), T2: (1, 0, 0, 1, 1, 1, 5), V3: (1, 0, 0, 1, 1, 1, 5)}
    assert by_code[T2]["name"] == "柳河乡" and by_code[V3]["parent"] == T2 and by_code[T1]["kind"] == "township"
    assert by_code[COUNTY]["households"] == {"total": 3, "notified": 1, "moved": 1, "not_home": 1, "refused": 0,
                                             "needs_help": 0, "unmarked": 0}
    assert report["total"]["grids"] == 4 and report["total"]["reached_share"] == 0.75
    status, _, body = await _get(county, f"/api/v1/warnings/{wid}/rollup?kind=township")
    assert [r["code"] for r in json.loads(body)["regions"]] == [T1, T2]
    for bad in ("?kind=grid", "?kind="):
        status, ctype, body = await _get(county, f"/api/v1/warnings/{wid}/rollup{bad}")
        assert status == 400 and ctype.startswith("application/problem+json") and b"kind" in body


async def test_the_not_woken_list_as_json_and_csv(county):
    import json
    wid = await _run_the_ladder(county)
    status, _, body = await _get(county, f"/api/v1/warnings/{wid}/not-woken")
    items = json.loads(body)["items"]
    assert status == 200 and [(i["grid"], i["state"]) for i in items] == [
        (B, "confirmed"), (C, "covered"), (D, "open")]
    d = items[2]
    assert (d["township"], d["village"], d["grid_name"], d["person_name"], d["phone"]) == (
        "柳河乡", "石桥村", "一组", "网格员D", "+8613800000031")
    walker = '=HYPERLINK("http://x")'
    assert d["sent_to_door"] == [walker, "李乡长"] and d["list_assignee"] == walker and d["woken_at"] is None
    assert items[0]["woken_at"] and items[0]["channel"] == "link"
    status, _, body = await _get(county, f"/api/v1/warnings/{wid}/not-woken?open=1")
    assert [i["grid"] for i in json.loads(body)["items"]] == [D]

    status, ctype, body = await _get(county, f"/api/v1/warnings/{wid}/not-woken.csv")
    assert status == 200 and ctype == "text/csv; charset=utf-8"
    assert body.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0][:6] == ["乡镇 Township", "村 Village", "网格编码 Grid code", "网格 Grid",
                           "责任人 Responsible person", "电话 Phone"]
    assert len(rows) == 4 and rows[3][:4] == ["柳河乡", "石桥村", D, "一组"]
    assert rows[3][5] == "'+8613800000031"  # kept as text: a spreadsheet would read "+…" as a formula
    assert rows[3][7] == f"'{walker}、李乡长" and rows[3][8] == f"'{walker}" and rows[3][9] == "未叫醒 open"

    viewer = await county.node.tokens.create(Scope("县应急局", ("*",), ("*",), Level.RED, Role.VIEWER))
    status, _, body = await _get(county, f"/api/v1/warnings/{wid}/not-woken", viewer)
    assert status == 200 and {i["phone"] for i in json.loads(body)["items"]} == {None}  # no contacts right
    other = await county.node.tokens.create(Scope("县水利局", ("*",), ("*",), Level.RED))
    for path in ("not-woken", "not-woken.csv", "rollup", f"grids/{D}/timeline"):
        status, ctype, _ = await _get(county, f"/api/v1/warnings/{wid}/{path}", other)
        assert status == 404 and ctype.startswith("application/problem+json"), path
        status, ctype, _ = await _get(county, f"/api/v1/warnings/{wid}/{path}", "")
        assert status == 401 and ctype.startswith("application/problem+json"), path
        status, _, _ = await _get(county, f"/api/v1/warnings/9999/{path}")
        assert status == 404, path
    status, _, body = await _get(county, f"/api/v1/warnings/{wid}/not-woken?open=yes")
    assert status == 400


async def test_a_grid_timeline_tells_its_story_in_order(county):
    import json
    wid = await _run_the_ladder(county)
    status, _, body = await _get(county, f"/api/v1/warnings/{wid}/grids/{D}/timeline")
    assert status == 200
    story = json.loads(body)
    assert (story["grid"], story["grid_name"], story["state"], story["warnings"]) == (D, "一组", "open", [wid])
    kinds = [e["event"] for e in story["events"]]
    assert kinds[0] == "required" and kinds.index("not_woken") < kinds.index("door.list") < kinds.index("door.mark")
    assert kinds.index("door.mark") < kinds.index("door.report")
    assert {"send.planned", "rung.fired"} <= set(kinds) and "confirmed" not in kinds
    times = [e["at"] for e in story["events"]]
    assert times == sorted(times)
    mark = next(e for e in story["events"] if e["event"] == "door.mark")
    assert (mark["mark"], mark["household_id"], mark["address"]) == ("not_home", "d1", "石桥村一组1号")
    report = next(e for e in story["events"] if e["event"] == "door.report")
    assert (report["moved_people"], report["person_id"]) == (5, "bD")
    answer = next(e for e in story["events"] if e["event"] == "answer")
    assert answer["outcome"] == "reported" and answer["body"] == "已转移5人"
    assert [r["action"] for r in story["ladder"]] == ["notify", "door_to_door", "alarm"]
    follow = [e for e in story["events"] if e["event"] == "send.planned" and e["purpose"] == "household"]
    assert {(e["channel"], e["recipient_id"]) for e in follow} == {("voice", "d1"), ("sms", "d1")}

    viewer = await county.node.tokens.create(Scope("县应急局", ("*",), ("*",), Level.RED, Role.VIEWER))
    status, _, body = await _get(county, f"/api/v1/warnings/{wid}/grids/{D}/timeline", viewer)
    hidden = json.loads(body)["events"]
    assert {e.get("address") for e in hidden if "address" in e} == {None}

    status, ctype, body = await _get(county, f"/api/v1/warnings/{wid}/grids/{COUNTY}999/timeline")
    assert status == 404 and json.loads(body)["code"] == "request.not_found"
    status, ctype, body = await _get(county, f"/api/v1/warnings/{wid}/grids/abc/timeline")
    assert status == 400 and json.loads(body)["code"] == "request.invalid"
