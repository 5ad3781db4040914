"""WeCom end to end: a village's group robot in the directory, a red warning posted to the group.

A real node (SQLite and PostgreSQL) behind its real HTTP routes, the directory imported
through the API, the channel's aiohttp client against the robot simulator. The node's
clock is manual, so the wait after a 45009 is the test's to give; waits for the
dispatcher are bounded polls, never sleeps.
"""
from __future__ import annotations

import asyncio
import json

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer
from factories import COUNTY, NO_APPROVAL, TOWNSHIP, VILLAGE, alert
from test_engine import until

from warnd.clock import ManualClock
from warnd.config import load_config
from warnd.domain.authority import Role, Scope, admin_scope
from warnd.domain.errors import WarndError
from warnd.domain.model import Level
from warnd.engine.node import Node
from warnd.http.app import build_app
from warnd.ingest.capxml import alert_to_xml
from warnd.ingest.directory import load_directory
from warnd.sim.wecom import WecomSim
from warnd.store.migrate import upgrade
from warnd.store.schema import deliveries

VILLAGE_KEY = "5f0c3b1e-9a1d-4c55-8d2e-7a6b5c4d3e2f"
TOWNSHIP_KEY = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
GRID_1, GRID_2 = VILLAGE + "001", VILLAGE + "002"
XML = "application/cap+xml"


def directory_yaml(sim: WecomSim) -> str:
    """The village's robot given as the webhook URL its group owner copies; the township's as its key."""
    return f"""
regions:
  - {{code: "{COUNTY}", name: 示例县}}
  - {{code: "{TOWNSHIP}", name: 城关镇, groups: {{wecom: "{TOWNSHIP_KEY}"}}}}
  - {{code: "{VILLAGE}", name: 河口村, groups: {{wecom: "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={VILLAGE_KEY}"}}}}
  - {{code: "{GRID_1}", name: 一组}}
  - {{code: "{GRID_2}", name: 二组}}
people:
  - {{id: g1, name: 王小红, region: "{GRID_1}", roles: [grid_responsible], phone: "138 0000 1001"}}
  - {{id: g2, name: 李大山, region: "{GRID_2}", roles: [grid_responsible], phone: "+8613800001002"}}
  - {{id: head, name: 陈德明, region: "{VILLAGE}", roles: [village_head], phone: "13800000101"}}
  - {{id: duty, name: 吴海燕, region: "{TOWNSHIP}", roles: [township_duty], phone: "0713-1234567"}}
"""


class Rig:
    def __init__(self, node: Node, client: TestClient, sim: WecomSim, clock: ManualClock, admin: str) -> None:
        self.node, self.client, self.sim, self.clock, self.admin = node, client, sim, clock, admin

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin}"}

    async def submit(self, identifier: str) -> int:
        xml = alert_to_xml(alert(identifier, codes=(VILLAGE,))).encode()
        return (await self.node.intake.submit(xml, XML, admin_scope()))[0].warning_id

    async def group_sends(self, warning_id: int) -> list:
        d = deliveries.c
        async with self.node.db.read() as conn:
            return (await conn.execute(sa.select(deliveries).where(d.warning_id == warning_id, d.channel == "wecom")
                                       .order_by(d.id))).all()


@pytest.fixture
async def rig(db_url):
    sim = WecomSim({VILLAGE_KEY, TOWNSHIP_KEY})
    await sim.start()
    await asyncio.to_thread(upgrade, db_url)
    clock = ManualClock()
    config = load_config(
        None, database_url=db_url, webhook={"enabled": False}, dispatcher={"poll_seconds": 0.05},
        wecom={"enabled": True, "base_url": sim.base_url, "timeout_seconds": 2},
        routing=[{"levels": ["red"], "channels": ["wecom"], "roles": ["grid_responsible"]}],
        approval=NO_APPROVAL)
    node = Node(config, clock=clock)
    await node.start()
    admin = await node.tokens.create(Scope("预警中心", ("*",), ("*",), Level.RED, Role.ADMIN, ("*",)))
    client = TestClient(TestServer(build_app(node)))
    await client.start_server()
    rig = Rig(node, client, sim, clock, admin)
    resp = await client.post("/api/v1/directory/import", data=directory_yaml(sim).encode(),
                             headers=rig.auth | {"Content-Type": "application/yaml"})
    assert resp.status == 200, await resp.text()
    yield rig
    await client.close()
    await node.stop()
    await sim.stop()


async def test_a_red_warning_reaches_the_village_group_mentioning_its_grid_people(rig):
    wid = await rig.submit("W-WECOM-1")

    async def delivered():
        rows = await rig.group_sends(wid)
        return rows and all(r.state == "delivered" for r in rows) and rows

    [row] = await until(delivered)  # the village's group; the township is not a target region
    assert (row.recipient_kind, row.recipient_id, row.address) == ("group", VILLAGE, VILLAGE_KEY)
    [posted] = rig.sim.received(VILLAGE_KEY)
    assert posted.msgtype == "text" and posted.content.startswith("【红色预警】暴雨预警")
    assert "县气象局" in posted.content and "转移到安全地带" in posted.content
    assert posted.mentioned_mobile_list == ("13800001001", "13800001002")  # the grid responsible persons
    assert rig.sim.received(TOWNSHIP_KEY) == []


async def test_a_45009_is_tried_again_a_minute_later_and_delivered(rig):
    rig.sim.fail_next(VILLAGE_KEY, 45009)
    wid = await rig.submit("W-WECOM-2")

    async def waiting():
        rows = await rig.group_sends(wid)
        return rows and rows[0].state == "pending" and rows[0].attempts == 1 and rows[0]

    row = await until(waiting)
    assert row.last_code == "wecom.45009"
    assert (row.next_attempt_at - rig.clock.now()).total_seconds() == pytest.approx(60, abs=2)
    assert rig.sim.received() == [] and rig.sim.stats.requests == 1
    await asyncio.sleep(0.2)  # the dispatcher polls every 0.05 s: nothing is due before the minute
    assert rig.sim.stats.requests == 1

    rig.clock.advance(61)
    rig.node.dispatcher.wake()

    async def delivered():
        rows = await rig.group_sends(wid)
        return rows[0].state == "delivered" and rows[0]

    row = await until(delivered)
    assert row.attempts == 2 and len(rig.sim.received(VILLAGE_KEY)) == 1


async def test_the_directory_api_shows_group_keys_redacted(rig):
    resp = await rig.client.get(f"/api/v1/directory/regions/{VILLAGE}", headers=rig.auth)
    text = await resp.text()
    assert resp.status == 200 and VILLAGE_KEY not in text
    assert json.loads(text)["groups"] == {"wecom": "…" + VILLAGE_KEY[-4:]}
    listed = await (await rig.client.get("/api/v1/directory/regions", headers=rig.auth)).text()
    assert VILLAGE_KEY not in listed and TOWNSHIP_KEY not in listed
    stored = await rig.node.directory.get_region(VILLAGE)
    assert stored.groups == {"wecom": VILLAGE_KEY}  # the key, not the URL it was given as

    resp = await rig.client.put(f"/api/v1/directory/regions/{VILLAGE}", headers=rig.auth, json={
        "name": "河口村", "groups": {"wecom": "…" + VILLAGE_KEY[-4:]}})  # a redacted key written back
    problem = await resp.json(content_type=None)
    assert resp.status == 400 and [e["field"] for e in problem["errors"]] == ["groups"]
    assert (await rig.node.directory.get_region(VILLAGE)).groups == {"wecom": VILLAGE_KEY}


async def test_bad_groups_and_phones_are_reported_with_their_row(rig):
    bad = f"""
regions:
  - {{code: "{VILLAGE}", name: 河口村, groups: {{wechat: "{VILLAGE_KEY}"}}}}
  - {{code: "{GRID_1}", name: 一组, groups: {{wecom: "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"}}}}
people:
  - {{id: g1, name: 王小红, region: "{GRID_1}", roles: [grid_responsible], phone: "+8613800000"}}
"""
    resp = await rig.client.post("/api/v1/directory/import", data=bad.encode(),
                                 headers=rig.auth | {"Content-Type": "application/yaml"})
    problem = await resp.json(content_type=None)
    assert resp.status == 400
    assert [e["field"] for e in problem["errors"]] == ["import.yaml:3.groups", "import.yaml:4.groups",
                                                       "import.yaml:6.phone"]


def test_groups_in_a_regions_csv(tmp_path):
    (tmp_path / "regions.csv").write_text(
        "code,name,groups\n"
        f"{COUNTY},示例县,\n"
        f"{VILLAGE},河口村,wecom={VILLAGE_KEY}\n"
        f"{TOWNSHIP},城关镇,wecom\n", encoding="utf-8")
    with pytest.raises(WarndError) as caught:
        load_directory([tmp_path / "regions.csv"])
    assert [p.field for p in caught.value.problems] == ["regions.csv:4.groups"]
    (tmp_path / "regions.csv").write_text(
        f"code,name,groups\n{VILLAGE},河口村,wecom=https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={VILLAGE_KEY}\n",
        encoding="utf-8")
    [region] = load_directory([tmp_path / "regions.csv"]).regions
    assert region.groups == {"wecom": VILLAGE_KEY}
