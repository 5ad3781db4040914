"""The pages people reach by signed links, over real HTTP: a red warning's ladder
makes a door-to-door list; telling or moving every household through its page
covers the grid and skips the rest of the ladder (household outcomes that do not
cover, their follow-ups and alarms: test_households.py); confirmation links confirm only on POST;
forged, expired and wrong-purpose links get a clear page and change nothing.
SQLite and PostgreSQL, a manual clock, no sleeps."""
from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer
from factories import COUNTY, GRIDS, NO_APPROVAL, TOWNSHIP, VILLAGE, alert

from warnd.config import load_config
from warnd.domain.authority import Scope, admin_scope
from warnd.domain.directory import Household, Person, Region
from warnd.domain.model import Level, MsgType, Reference, Status
from warnd.engine.node import Node
from warnd.http.app import build_app
from warnd.ingest.capxml import alert_to_xml
from warnd.ingest.directory import DirectoryData
from warnd.store.schema import alarms, call_list_items, call_lists, confirmations, inbound, rungs

XML = "application/cap+xml"
G = GRIDS[0]
DOOR_MINUTES, ALARM_MINUTES = 10, 15  # the default red ladder


def directory() -> DirectoryData:
    return DirectoryData(
        regions=(Region(COUNTY, "示例县", "county"), Region(TOWNSHIP, "城关镇", "township", COUNTY),
                 Region(VILLAGE, "河口村", "village", TOWNSHIP), Region(G, "一组", "grid", VILLAGE)),
        people=(Person("resp", "张三", G, ("grid_responsible",), "+8613800000001", backup="back"),
                Person("back", "李四", G, ("liaison",), "+8613800000002"),
                Person("duty", "王镇长", TOWNSHIP, ("township_duty",), "+8613800000009")),
        households=(Household("h1", G, "河口村一组1号", "+8613900000001"),
                    Household("h2", G, "河口村一组2号（独居老人）", None, vulnerable=True),
                    Household("h3", G, "河口村一组3号", "+8613900000003")))


class Site:
    """A node on a real HTTP server, and what the tests ask of it."""

    def __init__(self, node: Node, client: TestClient, clock) -> None:  # noqa: ANN001
        self.node, self.client, self.clock = node, client, clock
        self.t0 = clock.now()

    async def submit(self, identifier: str = "W1", **kw) -> int:  # noqa: ANN003
        xml = alert_to_xml(alert(identifier, codes=(VILLAGE,), **kw)).encode()
        submitted, _ = await self.node.intake.submit(xml, XML, admin_scope())
        return submitted.warning_id

    async def at(self, minutes: float) -> None:
        self.clock._now = self.t0 + timedelta(minutes=minutes)
        await self.node.escalate()

    async def rows(self, table, *where) -> list:  # noqa: ANN001
        async with self.node.db.read() as conn:
            return (await conn.execute(sa.select(table).where(*where).order_by(table.c.id))).all()

    async def door_list(self) -> tuple[int, str]:
        """Run the ladder to its door-to-door rung; the list's id and its page's path."""
        await self.at(DOOR_MINUTES + 0.1)
        (cl,) = await self.rows(call_lists)
        return cl.id, _path(self.node.link_url("call-list", str(cl.id)))

    async def page(self, path: str, **kw) -> tuple[int, str, str]:  # noqa: ANN003
        async with self.client.get(path, **kw) as resp:
            return resp.status, resp.content_type, await resp.text()

    async def post(self, path: str, data: dict | None = None, **kw) -> tuple[int, str, str, str]:  # noqa: ANN003
        async with self.client.post(path, data=data or {}, allow_redirects=False, **kw) as resp:
            return resp.status, resp.content_type, resp.headers.get("Location", ""), await resp.text()


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def _addresses(html: str) -> list[str]:
    return re.findall(r'<p class="addr">(?:<span class="tag">[^<]*</span>)?\d+\. ([^<]+)</p>', html)


def _item_ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<li class="hh[^"]*" id="i(\d+)"', html)]


@pytest.fixture
async def site(database, clock):
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
    yield Site(node, client, clock)
    await client.close()
    await node.stop()


async def test_door_to_door_list_completed_through_its_page_covers_the_grid(site):
    wid = await site.submit()
    list_id, path = await site.door_list()
    status, ctype, html = await site.page(path)
    assert (status, ctype) == (200, "text/html")
    assert _addresses(html) == ["河口村一组2号（独居老人）", "河口村一组1号", "河口村一组3号"]
    assert html.index("重点") < html.index("河口村一组1号")
    assert 'href="tel:+8613900000001"' in html and "已落实 0/3" in html and "已标记 0/3" in html
    assert "李四" in html and "一组" in html
    assert "红色预警" in html and "暴雨预警" in html and "本网格已全部入户通知" not in html
    items = _item_ids(html)
    # five outcomes a household: three buttons, moved with its head count, needs help with a note
    assert len(items) == 3 and html.count('name="mark"') == 15 and html.count('name="people"') == 3
    assert html.count('name="note"') == 3

    for item, mark in zip(items, [{"mark": "notified"}, {"mark": "moved", "people": "4"}, {"mark": "notified"}]):
        if item == items[-1]:  # re-marking: the latest wins, with its time
            site.clock.advance(30)
            status, *_ = await site.post(f"{path}/items/{items[0]}", {"mark": "moved", "people": "2"})
            assert status == 303
        status, _, location, _ = await site.post(f"{path}/items/{item}", mark)
        assert status == 303 and location == f"{path}#i{item}"

    status, _, html = await site.page(path)
    assert "已落实 3/3" in html and "已标记 3/3" in html and "本网格已全部入户通知" in html
    assert "已通知 1" in html and "已转移 2（6人）" in html and "不在家 0" in html
    # times in Beijing time (display_timezone), not the server's UTC
    assert site.clock.now().astimezone(ZoneInfo("Asia/Shanghai")).strftime("%m-%d %H:%M") in html
    (conf,) = await site.rows(confirmations)
    assert conf.state == "covered" and conf.covered_at == site.clock.now()
    (cl,) = await site.rows(call_lists)
    assert cl.completed_at == site.clock.now()
    marks = {r.id: (r.mark, r.people, r.marked_at) for r in await site.rows(call_list_items)}
    assert marks[items[0]] == ("moved", 2, site.clock.now())
    pending = await site.rows(rungs, rungs.c.confirmation_id == conf.id, rungs.c.state == "pending")
    assert pending == []
    await site.at(ALARM_MINUTES + 5)  # the 15-minute alarm rung never fires
    assert await site.rows(alarms) == []
    assert [r.state for r in await site.rows(rungs, rungs.c.action == "alarm")] == ["skipped"]

    admin = await site.node.tokens.create(admin_scope())
    async with site.client.get(f"/api/v1/warnings/{wid}/call-lists",
                               headers={"Authorization": f"Bearer {admin}"}) as resp:
        assert resp.status == 200
        body = await resp.json()
    (entry,) = body["items"]
    assert entry["id"] == list_id and entry["grid"] == G and entry["assignee_id"] == "back"
    assert (entry["total"], entry["marked"]) == (3, 3) and entry["completed_at"]
    assert entry["by_mark"] == {"notified": 1, "moved": 2, "not_home": 0, "refused": 0, "needs_help": 0}
    assert [h["household_id"] for h in entry["households"]] == ["h2", "h1", "h3"]
    assert entry["households"][0]["vulnerable"] is True
    assert (entry["reached"], entry["moved_people"]) == (3, 6)
    assert [h["people"] for h in entry["households"]] == [2, 4, None]
    async with site.client.get(f"/api/v1/warnings/{wid}/call-lists") as resp:
        assert resp.status == 401
    async with site.client.get("/api/v1/warnings/999/call-lists",
                               headers={"Authorization": f"Bearer {admin}"}) as resp:
        assert resp.status == 404 and resp.content_type == "application/problem+json"


async def test_english_and_partial_progress(site):
    await site.submit()
    _, path = await site.door_list()
    status, _, html = await site.page(path, headers={"Accept-Language": "en-US,en;q=0.9"})
    assert status == 200 and "Door-to-door list" in html and "Reached 0/3" in html and 'lang="en"' in html
    items = _item_ids(html)
    status, _, location, _ = await site.post(f"{path}/items/{items[1]}?lang=en", {"mark": "not_home"})
    assert status == 303 and location == f"{path}?lang=en#i{items[1]}"
    _, _, html = await site.page(f"{path}?lang=en")
    assert "Reached 0/3" in html and "Marked 1/3" in html and "Not at home" in html and "Revisit" in html
    assert "All households reached" not in html and "People moved" in html and "Needs help" in html
    _, _, html = await site.page(path)  # zh-CN by default
    assert "已落实 0/3" in html and "已标记 1/3" in html and "待回访" in html and 'lang="zh-CN"' in html
    (conf,) = await site.rows(confirmations)
    assert conf.state == "open"


async def test_forged_expired_and_wrong_purpose_links_change_nothing(site):
    await site.submit()
    list_id, path = await site.door_list()
    items = _item_ids((await site.page(path))[2])
    before = await site.rows(call_list_items)

    value, expiry, mac = path.rsplit("/", 1)[1].split(".")
    forged = f"/d/{value}.{int(expiry) + 86400}.{mac}"  # a longer life, same signature
    other = f"/d/{list_id + 1}.{expiry}.{mac}"  # another list
    for bad in (forged, other, "/d/garbage", "/d/1.0.AAAA"):
        status, ctype, html = await site.page(bad)
        assert (status, ctype) == (403, "text/html") and "链接无效" in html, bad
        status, ctype, _, html = await site.post(f"{bad}/items/{items[0]}", {"mark": "notified"})
        assert (status, ctype) == (403, "text/html") and "未做任何更改" in html, bad
    status, _, html = await site.page(forged, headers={"Accept-Language": "en"})
    assert status == 403 and "Invalid link" in html

    confirm_path = _path(site.node.link_url("confirm", "1/resp"))
    status, _, html = await site.page("/d/" + confirm_path.rsplit("/", 1)[1])  # a confirmation token on /d/
    assert status == 403 and "链接无效" in html

    status, _, html = await site.page(_path(site.node.link_url("call-list", "999")))
    assert status == 404 and "未找到" in html

    status, _, _, html = await site.post(f"{path}/items/{items[0]}", {"mark": "burnt"})
    assert status == 400 and "操作无效" in html
    for people in ("", "0", "abc", "201", "-3", "1e2", "٣"):  # moved needs a head count of 1…200
        status, _, _, html = await site.post(f"{path}/items/{items[0]}", {"mark": "moved", "people": people})
        assert status == 400 and "人数无效" in html, people
    status, _, _, html = await site.post(f"{path}/items/99999", {"mark": "notified"})
    assert status == 404

    site.clock.advance(timedelta(days=site.node.config.link_days, minutes=1).total_seconds())
    status, ctype, html = await site.page(path)
    assert (status, ctype) == (410, "text/html") and "链接已过期" in html
    status, _, _, html = await site.post(f"{path}/items/{items[0]}", {"mark": "notified"})
    assert status == 410 and "未做任何更改" in html
    assert await site.rows(call_list_items) == before
    assert [c.state for c in await site.rows(confirmations)] == ["open"]


async def test_a_list_whose_warning_ended_refuses_marks(site):
    await site.submit()
    _, path = await site.door_list()
    items = _item_ids((await site.page(path))[2])
    ref = (Reference("dept@example.cn", "W1", "2026-07-01T00:00:00+00:00"),)
    await site.submit("W1-cancel", msg_type=MsgType.CANCEL, references=ref)
    status, _, html = await site.page(path)
    assert status == 200 and "该预警已解除或失效" in html and 'name="mark"' not in html
    status, ctype, _, html = await site.post(f"{path}/items/{items[0]}", {"mark": "notified"})
    assert (status, ctype) == (409, "text/html") and "预警已结束" in html
    assert all(r.mark is None for r in await site.rows(call_list_items))


async def test_confirmation_link_confirms_on_post_only(site):
    wid = await site.submit()
    path = _path(site.node.link_url("confirm", f"{wid}/resp"))
    for _ in range(2):  # link scanners prefetch: a GET never confirms
        status, ctype, html = await site.page(path)
        assert (status, ctype) == (200, "text/html")
        assert "确认收到" in html and f'action="{path}"' in html and "转移到安全地带" in html
    (conf,) = await site.rows(confirmations)
    assert conf.state == "open"

    site.clock.advance(60)
    status, _, _, html = await site.post(path)
    assert status == 200 and "已确认" in html and "此前已确认" not in html
    (conf,) = await site.rows(confirmations)
    assert (conf.state, conf.channel, conf.confirmed_by, conf.late) == ("confirmed", "link", "resp", False)
    assert conf.confirmed_at == site.clock.now()
    status, _, _, html = await site.post(path)
    assert status == 200 and "此前已确认" in html
    assert [r.outcome for r in await site.rows(inbound)] == ["confirmed", "repeated"]
    status, _, html = await site.page(path)
    assert "此前已确认" in html and 'method="post"' not in html
    status, _, _, html = await site.post(path + "?lang=en")
    assert "Already confirmed" in html

    # The rest of the ladder is skipped: no door-to-door list, no alarm.
    await site.at(ALARM_MINUTES + 5)
    assert await site.rows(call_lists) == [] and await site.rows(alarms) == []


async def test_confirmation_link_refuses_other_tokens(site):
    wid = await site.submit()
    list_id, list_path = await site.door_list()
    status, ctype, html = await site.page("/c/" + list_path.rsplit("/", 1)[1])  # a call-list token on /c/
    assert (status, ctype) == (403, "text/html") and "链接无效" in html
    status, *_ = await site.post("/c/" + list_path.rsplit("/", 1)[1])
    assert status == 403
    status, _, html = await site.page(_path(site.node.link_url("confirm", "999/resp")))
    assert status == 404
    path = _path(site.node.link_url("confirm", f"{wid}/resp"))
    site.clock.advance(timedelta(days=site.node.config.link_days, minutes=1).total_seconds())
    status, _, _, html = await site.post(path)
    assert status == 410 and "链接已过期" in html
    (conf,) = await site.rows(confirmations)
    assert conf.state == "open" and await site.rows(inbound) == []


async def test_drill_is_marked_on_the_confirmation_page(site):
    wid = await site.submit("D1", status=Status.EXERCISE)
    status, _, html = await site.page(_path(site.node.link_url("confirm", f"{wid}/resp")))
    assert status == 200 and "演练" in html
    status, _, html = await site.page(_path(site.node.link_url("confirm", f"{wid}/resp")) + "?lang=en")
    assert "EXERCISE" in html


async def test_pages_tell_browsers_to_keep_the_link_private(site):
    wid = await site.submit()
    async with site.client.get(_path(site.node.link_url("confirm", f"{wid}/resp"))) as resp:
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert resp.headers["Cache-Control"] == "no-store"
        assert "form-action 'self'" in resp.headers["Content-Security-Policy"]


async def test_a_backups_link_says_no_confirmation_is_needed_until_a_rung_asks_them(site):
    wid = await site.submit()
    path = _path(site.node.link_url("confirm", f"{wid}/back"))
    status, _, html = await site.page(path)
    assert status == 200 and "暂不需要您确认" in html and 'method="post"' not in html and "此前已确认" not in html
    status, _, html = await site.page(path + "?lang=en")
    assert "No confirmation needed from you yet" in html
