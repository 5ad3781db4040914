"""The console's compose and approval API over real HTTP, on SQLite and PostgreSQL: settings for the
caller, the region tree with its households and people, the dry-run preview (the same checks and
the same plan as submitting, nothing written) and the approval queue (the same rule as approving)."""
from __future__ import annotations

import re

import json
import pytest
import sqlalchemy as sa
from aiohttp import CookieJar
from aiohttp.test_utils import TestClient, TestServer
from factories import COUNTY, GRIDS, SENDER, T0, TOWNSHIP, VILLAGE, alert

from warnd.clock import ManualClock
from warnd.config import load_config
from warnd.domain.authority import admin_scope
from warnd.domain.directory import Household, Person, Region
from warnd.domain.model import MsgType, Reference
from warnd.domain.sms_segments import segment_info
from warnd.engine.node import Node
from warnd.http.app import build_app
from warnd.ingest.capjson import alert_to_dict
from warnd.ingest.directory import DirectoryData
from warnd.store.migrate import upgrade
from warnd.store.schema import approvals, audit, confirmations, deliveries, rungs, warnings

PASSWORD = "correct horse battery"
OTHER_TOWNSHIP = COUNTY + "101"
VILLAGE2 = TOWNSHIP + "202"
TABLES = (warnings, deliveries, confirmations, audit, approvals, rungs)
TEMPLATE = {"hazard": "山洪", "level": "red", "event": "山洪", "headline": "山洪红色预警"}


def directory() -> DirectoryData:
    g1, g2 = GRIDS
    g3 = VILLAGE2 + "001"
    return DirectoryData(
        regions=(Region(COUNTY, "示例县", "county"), Region(TOWNSHIP, "城关镇", "township", COUNTY),
                 Region(OTHER_TOWNSHIP, "河东乡", "township", COUNTY),
                 Region(VILLAGE, "河口村", "village", TOWNSHIP, ((30.0, 114.0), (30.0, 114.1), (30.1, 114.1),
                                                               (30.0, 114.0))),
                 Region(VILLAGE2, "石桥村", "village", TOWNSHIP),
                 Region(g1, "一组", "grid", VILLAGE), Region(g2, "二组", "grid", VILLAGE),
                 Region(g3, "石桥一组", "grid", VILLAGE2)),
        people=(Person("resp1", "张三", g1, ("grid_responsible",), "+8613800000001", backup="back1"),
                Person("back1", "李四", g1, ("liaison",), "+8613800000002"),
                Person("resp2", "王五", g2, ("grid_responsible",), "+8613800000003"),
                Person("resp3", "赵六", g3, ("grid_responsible",), "+8613800000004"),
                Person("duty", "镇值班", TOWNSHIP, ("township_duty",), "+8613800000009")),
        households=tuple(Household(f"h{i}", g, f"{g} {i}号", None) for i, g in
                         enumerate((g1, g1, g1, g2, g3), start=1)))


class Centre:
    """A node on a real HTTP server with people logged in by token, and one by cookie."""

    def __init__(self, node: Node, client: TestClient, tokens: dict[str, str]) -> None:
        self.node, self.client, self.tokens = node, client, tokens

    async def call(self, who: str, method: str, path: str, **kw) -> tuple[int, dict]:  # noqa: ANN003
        headers = {"Authorization": f"Bearer {self.tokens[who]}", **kw.pop("headers", {})}
        async with self.client.request(method, path, headers=headers, **kw) as resp:
            return resp.status, await resp.json(content_type=None)

    async def draft(self, who: str, data: dict, path: str = "/api/v1/drafts/preview") -> tuple[int, dict]:
        return await self.call(who, "POST", path, data=json.dumps(data, ensure_ascii=False).encode(),
                               headers={"Content-Type": "application/json"})

    async def counts(self) -> dict[str, int]:
        async with self.node.db.read() as conn:
            return {t.name: (await conn.execute(sa.select(sa.func.count()).select_from(t))).scalar_one()
                    for t in TABLES}


def cap(identifier: str, **kw) -> dict:  # noqa: ANN003
    return alert_to_dict(alert(identifier, **kw))


@pytest.fixture
async def centre(db_url):
    upgrade(db_url)
    config = load_config(None, database_url=db_url, public_base_url="https://warn.example.cn",
                         twilio={"from_number": "+15005550006", "api_base_url": "http://127.0.0.1:9"},
                         sms={"enabled": True, "rate_per_second": 2.0}, voice={"enabled": True, "rate_per_second": 0.5},
                         webhook={"enabled": False}, accounts={"cookie_secure": False},
                         routing=[{"levels": ["red", "orange"], "channels": ["sms", "voice"],
                                   "roles": ["grid_responsible", "liaison"]}],
                         console={"templates": {"县气象局": [dict(TEMPLATE, event="暴雨", hazard="暴雨")],
                                                "*": [TEMPLATE], "县水利局": [dict(TEMPLATE, headline="水利")]}})
    node = Node(config, clock=ManualClock(T0))
    await node.start(dispatch=False)
    await node.directory.import_data(directory())
    tokens = {}
    for name, role, department, regions in (
            ("editor", "editor", "县气象局", ["*"]), ("east", "editor", "县气象局", [OTHER_TOWNSHIP]),
            ("chief", "admin", "县预警中心", ["*"]), ("wang", "approver", "县预警中心", ["*"]),
            ("li", "approver", "县预警中心", ["*"]), ("far", "approver", "县预警中心", [OTHER_TOWNSHIP])):
        await node.users.create(name, role, department, PASSWORD, senders=[SENDER], regions=regions,
                                events=["暴雨", "山洪"])
        tokens[name] = await node.tokens.create(admin_scope(), user_name=name)
    client = TestClient(TestServer(build_app(node)), cookie_jar=CookieJar(unsafe=True))
    await client.start_server()
    yield Centre(node, client, tokens)
    await client.close()
    await node.stop()


async def test_settings_are_the_callers_by_session_cookie(centre):
    resp = await centre.client.post("/api/v1/session", json={"name": "editor", "password": PASSWORD})
    assert resp.status == 200
    async with centre.client.get("/api/v1/console/settings") as resp:  # the cookie alone: a GET needs no CSRF
        assert resp.status == 200
        body = await resp.json()
    assert body["user"] == {"name": "editor", "role": "editor", "department": "县气象局", "rights": ["submit"]}
    assert (body["department"], body["senders"], body["events"], body["max_level"]) == \
        ("县气象局", [SENDER], ["暴雨", "山洪"], "red")
    assert [c["name"] for c in body["channels"]] == ["sms", "voice"]  # enabled only
    assert body["channels"][1] == {"name": "voice", "rate_per_second": 0.5, "concurrency": 16, "public": False}
    assert body["approvals"] == {"red": 2, "orange": 1, "yellow": 0, "blue": 0}
    assert body["publishes_at_once"] == {"red": False, "orange": False, "yellow": True, "blue": True}
    assert body["green_channel"] is False and body["approvals_cancel"] == 0
    # the department's templates, then everyone's: never another department's
    assert [(t["department"], t["headline"]) for t in body["templates"]] == [("县气象局", "山洪红色预警"),
                                                                            ("*", "山洪红色预警")]
    assert body["templates"][0]["event"] == "暴雨" and body["templates"][0]["expires_hours"] == 6.0
    assert body["timezone"] == "Asia/Shanghai" and body["tile_url"] is None
    assert body["drill_targets"] == {"reach_minutes": 10.0, "complete_minutes": 60.0}
    centre.client.session.cookie_jar.clear()
    async with centre.client.get("/api/v1/console/settings") as resp:
        assert resp.status == 401


async def test_green_channel_publishes_at_once_as_submit_does(db_url):
    upgrade(db_url)
    node = Node(load_config(None, database_url=db_url, approval={"green_channel": ["县气象局"]}), clock=ManualClock(T0))
    await node.start(dispatch=False)
    await node.directory.import_data(directory())
    await node.users.create("editor", "editor", "县气象局", PASSWORD, senders=[SENDER])
    token = await node.tokens.create(admin_scope(), user_name="editor")
    client = TestClient(TestServer(build_app(node)))
    await client.start_server()
    try:
        headers = {"Authorization": f"Bearer {token}"}
        async with client.get("/api/v1/console/settings", headers=headers) as resp:
            body = await resp.json()
        assert body["green_channel"] is True and set(body["approvals"].values()) == {0}
        assert all(body["publishes_at_once"].values())
        data = json.dumps(cap("G1", codes=(TOWNSHIP,))).encode()
        headers["Content-Type"] = "application/json"
        async with client.post("/api/v1/drafts/preview", data=data, headers=headers) as resp:
            preview = await resp.json()
        assert (preview["approvals_needed"], preview["publishes_at_once"]) == (0, True)
        async with client.post("/api/v1/warnings", data=data, headers=headers) as resp:
            assert (await resp.json())["warning"]["state"] == "active"  # what the preview said
    finally:
        await client.close()
        await node.stop()


async def test_regions_carry_outlines_and_what_lies_in_or_below_them(centre):
    status, body = await centre.call("wang", "GET", "/api/v1/console/regions")
    assert status == 200
    by = {r["code"]: r for r in body["items"]}
    assert len(by) == 8
    assert (by[COUNTY]["households"], by[COUNTY]["people"]) == (5, 5)
    assert (by[TOWNSHIP]["households"], by[TOWNSHIP]["people"]) == (5, 5)  # the duty officer answers for it
    assert (by[VILLAGE]["households"], by[VILLAGE]["people"]) == (4, 3)
    assert (by[GRIDS[0]]["households"], by[GRIDS[0]]["people"]) == (3, 2)
    assert (by[OTHER_TOWNSHIP]["households"], by[OTHER_TOWNSHIP]["people"]) == (0, 0)
    assert by[VILLAGE]["polygon"] == [[30.0, 114.0], [30.0, 114.1], [30.1, 114.1], [30.0, 114.0]]
    assert by[VILLAGE2]["polygon"] is None
    assert {k: by[GRIDS[0]][k] for k in ("name", "kind", "parent")} == {"name": "一组", "kind": "grid",
                                                                        "parent": VILLAGE}
    async with centre.client.get("/api/v1/console/regions") as resp:
        assert resp.status == 401


async def test_a_red_draft_for_a_township_is_planned_and_estimated_and_nothing_is_written(centre):
    before = await centre.counts()
    status, body = await centre.draft("editor", cap("D1", codes=(TOWNSHIP,)))
    assert status == 200, body
    assert await centre.counts() == before  # no warning, delivery, confirmation, rung, approval or audit row
    assert (body["level"], body["status"], body["msg_type"]) == ("red", "Actual", "Alert")
    assert body["targets"] == [TOWNSHIP]
    assert set(body["regions"]) == {TOWNSHIP, VILLAGE, VILLAGE2, *GRIDS, VILLAGE2 + "001"}
    assert (body["grids"], body["households"], body["confirmations"]) == (3, 5, 3)
    assert (body["approvals_needed"], body["publishes_at_once"]) == (2, False)
    sms, voice = body["channels"]
    # grid responsible people and the liaison; the township duty officer is not routed
    assert (sms["channel"], sms["recipients"], voice["channel"], voice["recipients"]) == ("sms", 4, "voice", 4)
    assert sms["must_confirm"] is True and "回复1确认" in sms["text"] and "https://warn.example.cn/c/" in sms["text"]
    # the sample's link is as long as a real one (the same segments) but signs nothing: shown on
    # an operator's screen, it must not confirm the grid of the next warning's responsible person
    link = re.search(r"https://warn\.example\.cn/c/(\S+)", sms["text"]).group(1)
    assert set(link) == {"x"} and len(link) > 20
    info = segment_info(sms["text"])
    assert (sms["segments"], sms["encoding"]) == (info.segments, "UCS-2") and info.segments >= 2
    # three who must confirm get the long text; the liaison a shorter one
    assert info.segments * 3 < sms["messages"] <= info.segments * 4
    assert sms["seconds"] == sms["messages"] / 2.0 and sms["rate_per_second"] == 2.0
    assert (voice["segments"], voice["messages"], voice["seconds"]) == (1, 4, 8.0)  # 4 calls ÷ 0.5/s
    assert "暴雨预警" in voice["text"] and voice["encoding"] is None
    assert body["first_wave_seconds"] == max(sms["seconds"], voice["seconds"])
    # the plan the preview showed is the one submitting makes
    status, created = await centre.draft("editor", cap("D1", codes=(TOWNSHIP,)), "/api/v1/warnings")
    assert status == 201 and created["warning"]["state"] == "awaiting"
    for who in ("wang", "li"):
        await centre.call(who, "POST", f"/api/v1/warnings/{created['warning']['id']}/approve")
    async with centre.node.db.read() as conn:
        planned = dict((await conn.execute(sa.select(deliveries.c.channel, sa.func.count())
                                           .group_by(deliveries.c.channel))).all())
        grids = (await conn.execute(sa.select(sa.func.count()).select_from(confirmations))).scalar_one()
    assert planned == {"sms": 4, "voice": 4} and grids == 3
    # previewing it again names the stored warning: submitting would return it unchanged
    status, again = await centre.draft("editor", cap("D1", codes=(TOWNSHIP,)))
    assert status == 200 and again["existing_warning_id"] == created["warning"]["id"]


async def test_an_invalid_draft_gets_the_problem_submitting_it_gets(centre):
    before = await centre.counts()
    structure = cap("X1", codes=(TOWNSHIP,))
    structure["info"][0]["headline"] = 5
    structure["info"][0]["urgency"] = ["Immediate"]
    content = cap("X2", codes=(TOWNSHIP,))
    content["info"][0]["severity"] = "Terrible"
    for data, code, field in ((structure, "cap.json", "info[0].headline"),
                              (content, "cap.schema", "/alert/info/severity")):
        s1, previewed = await centre.draft("editor", data)
        s2, submitted = await centre.draft("editor", data, "/api/v1/warnings")
        assert (s1, s2, previewed["code"]) == (400, 400, code)
        assert field in [e["field"] for e in previewed["errors"]]
        assert {k: v for k, v in previewed.items() if k != "instance"} == \
            {k: v for k, v in submitted.items() if k != "instance"}
    async with centre.client.post("/api/v1/drafts/preview", data=b"x" * (centre.node.config.max_body_bytes + 1),
                                  headers={"Authorization": f"Bearer {centre.tokens['editor']}",
                                           "Content-Type": "application/json"}) as resp:
        assert (resp.status, (await resp.json(content_type=None))["code"]) == (413, "cap.too_large")
    assert await centre.counts() == before


async def test_a_region_limited_user_is_refused_as_submit_refuses_and_nothing_is_recorded(centre):
    data = cap("E1", codes=(TOWNSHIP,))
    before = await centre.counts()
    s1, previewed = await centre.draft("east", data)
    assert (s1, previewed["code"]) == (403, "auth.region_out_of_scope")
    assert await centre.counts() == before  # a dry run leaves no trace, not even the refusal
    s2, submitted = await centre.draft("east", data, "/api/v1/warnings")
    assert s2 == 403 and previewed["errors"] == submitted["errors"] and previewed["code"] == submitted["code"]
    after = await centre.counts()
    assert after["audit_log"] == before["audit_log"] + 1 and after["warnings"] == before["warnings"]  # submit's refusal
    status, body = await centre.draft("east", cap("E2", codes=(OTHER_TOWNSHIP,)))
    assert status == 200 and (body["grids"], body["confirmations"]) == (0, 1)  # its own jurisdiction
    status, body = await centre.draft("wang", data)  # an approver may not submit: nor preview
    assert (status, body["code"]) == (403, "auth.forbidden")


async def test_the_queue_shows_a_two_person_red_and_who_may_approve_it(centre):
    _, first = await centre.draft("chief", cap("Q1", codes=(TOWNSHIP,)), "/api/v1/warnings")
    centre.node.clock.advance(60)
    _, orange = await centre.draft("editor", cap("Q2", severity="Severe"), "/api/v1/warnings")
    red, amber = first["warning"]["id"], orange["warning"]["id"]
    centre.node.clock.advance(60)
    status, _ = await centre.call("wang", "POST", f"/api/v1/warnings/{red}/approve")
    assert status == 200
    centre.node.clock.advance(30)

    async def queue(who: str) -> dict[int, dict]:
        status, body = await centre.call(who, "GET", "/api/v1/approvals")
        assert status == 200, body
        return {item["warning_id"]: item for item in body["items"]}

    seen = await queue("li")
    assert list(seen) == [red, amber]  # oldest first
    item = seen[red]
    assert (item["level"], item["needed"], item["two_person"], item["submitted_by"]) == ("red", 2, True, "user:chief")
    assert [a["by"] for a in item["approvals"]] == ["wang"]
    assert item["submitted_at"] == T0.isoformat() and item["waiting_seconds"] == 150
    assert (item["may_approve"], item["why_not"]) == (True, None)
    assert (seen[amber]["two_person"], seen[amber]["needed"], seen[amber]["may_approve"]) == (False, 1, True)
    mine = (await queue("chief"))[red]
    assert mine["may_approve"] is False and mine["why_not"]["code"] == "approval.own_warning"
    assert mine["why_not"]["zh"] == "不能签发自己提交的预警"
    done = (await queue("wang"))[red]
    assert done["may_approve"] is False and done["why_not"]["code"] == "approval.already_approved"
    assert (await queue("far"))[red]["why_not"]["code"] == "auth.region_out_of_scope"
    editor = await queue("editor")  # no READ_ALL: their own department's, and no right to approve
    assert list(editor) == [amber] and editor[amber]["why_not"]["code"] == "auth.forbidden"
    # what the queue said is what approving does
    status, body = await centre.call("chief", "POST", f"/api/v1/warnings/{red}/approve")
    assert (status, body["code"]) == (403, "approval.own_warning")
    status, body = await centre.call("far", "POST", f"/api/v1/warnings/{red}/approve")
    assert (status, body["code"]) == (403, "auth.region_out_of_scope")
    status, body = await centre.call("li", "POST", f"/api/v1/warnings/{red}/approve")
    assert status == 200 and body["state"] == "active"
    assert list(await queue("li")) == [amber]


async def test_update_and_cancel_previews_see_what_the_earlier_version_left(centre):
    _, created = await centre.draft("editor", cap("U1", codes=(TOWNSHIP,)), "/api/v1/warnings")
    wid = created["warning"]["id"]
    for who in ("wang", "li"):
        await centre.call(who, "POST", f"/api/v1/warnings/{wid}/approve")
    async with centre.node.db.write() as conn:  # the first wave went out; grid 一组 confirmed
        await conn.execute(sa.update(deliveries).where(deliveries.c.channel == "sms").values(state="delivered"))
        await conn.execute(sa.update(confirmations).where(confirmations.c.grid == GRIDS[0])
                           .values(state="confirmed", confirmed_at=T0, confirmed_by="resp1"))
    ref = (Reference(SENDER, "U1", T0.isoformat()),)
    before = await centre.counts()
    status, cancel = await centre.draft("editor", cap("U2", codes=(TOWNSHIP,), msg_type=MsgType.CANCEL,
                                                      references=ref))
    assert status == 200, cancel
    assert (cancel["msg_type"], cancel["approvals_needed"], cancel["publishes_at_once"]) == ("Cancel", 0, True)
    sms, voice = cancel["channels"]
    assert (sms["recipients"], voice["recipients"]) == (4, 0)  # those who may hold the warning: the texted
    assert "解除" in sms["text"]
    status, update = await centre.draft("editor", cap("U3", codes=(TOWNSHIP,), msg_type=MsgType.UPDATE,
                                                      references=ref))
    assert status == 200 and (update["confirmations"], update["carried"]) == (3, 1)  # 一组 stays confirmed
    assert await centre.counts() == before
