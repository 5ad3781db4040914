"""制作 → 审核 → 签发 → 发布 through the API, on SQLite and PostgreSQL: a held warning plans and
sends nothing; approvers are distinct people other than the author; the last one publishes."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer
from factories import T0, VILLAGE, alert

from warnd.clock import ManualClock
from warnd.config import load_config
from warnd.domain.authority import admin_scope
from warnd.domain.model import MsgType, Reference
from warnd.engine.node import Node
from warnd.http.app import build_app
from warnd.ingest.capxml import alert_to_xml
from warnd.ingest.directory import DirectoryData
from warnd.domain.directory import Region, Subscriber
from warnd.store.migrate import upgrade
from warnd.store.schema import alarms, audit, confirmations, deliveries
from warnd.store import audit as audit_log

SENDER = "dept@example.cn"
PASSWORD = "correct horse battery"


class Desk:
    """A warning centre: an editor, two approvers, an operator, on one node."""

    def __init__(self, node: Node, client: TestClient, tokens: dict[str, str]) -> None:
        self.node, self.client, self.tokens = node, client, tokens

    async def call(self, who: str, method: str, path: str, **kw) -> tuple[int, dict]:
        resp = await self.client.request(method, path, headers={"Authorization": f"Bearer {self.tokens[who]}"}, **kw)
        return resp.status, await resp.json(content_type=None)

    async def submit(self, who: str, cap) -> tuple[int, dict]:  # noqa: ANN001 - an Alert
        resp = await self.client.post("/api/v1/warnings", data=alert_to_xml(cap).encode(),
                                      headers={"Authorization": f"Bearer {self.tokens[who]}",
                                               "Content-Type": "application/cap+xml"})
        return resp.status, await resp.json(content_type=None)

    async def count(self, table, *where) -> int:  # noqa: ANN001
        async with self.node.db.read() as conn:
            return (await conn.execute(sa.select(sa.func.count()).select_from(table).where(*where))).scalar_one()


@pytest.fixture
async def desk(db_url):
    upgrade(db_url)
    clock = ManualClock(T0)
    node = Node(load_config(None, database_url=db_url, webhook={"allow_private_urls": True}), clock=clock)
    await node.start(dispatch=False)
    await node.directory.import_data(DirectoryData(
        regions=(Region(VILLAGE, "河口村", "village"),),
        subscribers=(Subscriber("tv", "http://127.0.0.1:9/tv", "whsec_" + "A" * 32),)))
    tokens = {}
    for name, role, department in (("editor", "editor", "县气象局"), ("wang", "approver", "县预警中心"),
                                   ("li", "approver", "县预警中心"), ("duty", "operator", "县预警中心")):
        await node.users.create(name, role, department, PASSWORD, senders=[SENDER])
        tokens[name] = await node.tokens.create(admin_scope(), user_name=name)
    tokens["admin"] = await node.tokens.create(admin_scope())
    client = TestClient(TestServer(build_app(node)))
    await client.start_server()
    yield Desk(node, client, tokens)
    await client.close()
    await node.stop()


async def test_red_needs_two_distinct_approvers_other_than_the_author(desk):
    status, body = await desk.submit("editor", alert("R1"))
    assert status == 201 and body["warning"]["state"] == "awaiting", body
    wid = body["warning"]["id"]
    held = deliveries.c.warning_id == wid
    assert await desk.count(deliveries, held) == 0 and await desk.count(confirmations,
                                                                        confirmations.c.warning_id == wid) == 0
    status, body = await desk.call("editor", "POST", f"/api/v1/warnings/{wid}/approve")
    assert (status, body["code"]) == (403, "auth.forbidden")  # an editor has no right to approve
    status, body = await desk.call("wang", "POST", f"/api/v1/warnings/{wid}/approve")
    assert status == 200 and body == {"warning_id": wid, "state": "awaiting", "approvals": 1, "needed": 2,
                                      "published": False}
    assert await desk.count(deliveries, held) == 0
    status, body = await desk.call("wang", "POST", f"/api/v1/warnings/{wid}/approve")
    assert (status, body["code"]) == (409, "approval.already_approved")
    desk.node.clock.set(T0 + timedelta(minutes=3))
    status, body = await desk.call("li", "POST", f"/api/v1/warnings/{wid}/approve")
    assert status == 200 and body["state"] == "active" and body["published"] is True
    assert await desk.count(deliveries, held) == 1
    _, warning = await desk.call("duty", "GET", f"/api/v1/warnings/{wid}")
    assert warning["submitted_by"] == "user:editor"
    assert [(a["approver"], a["decision"]) for a in warning["approvals"]] == [("wang", "approved"), ("li", "approved")]
    assert warning["created_at"] < warning["approved_at"] == warning["published_at"]
    status, body = await desk.call("li", "POST", f"/api/v1/warnings/{wid}/approve")
    assert (status, body["code"]) == (409, "approval.not_pending")
    _, report = await desk.call("duty", "GET", f"/api/v1/warnings/{wid}/coverage")
    assert report["release"]["approval_seconds"] == 180 and report["release"]["approvals_needed"] == 2
    assert report["release"]["published_at"] == warning["published_at"]
    actions = [r.action for r in (await _audit(desk))]
    assert ["warning.alert", "warning.approve", "warning.approve", "warning.publish"] == \
        [a for a in actions if a.startswith("warning.")]
    assert await audit_log.verify(desk.node.db) is None


async def test_nobody_approves_their_own_warning(desk):
    status, body = await desk.submit("wang", alert("R2"))  # an approver without the right to submit
    assert (status, body["code"]) == (403, "auth.forbidden")
    status, body = await desk.submit("duty", alert("R3"))
    wid = body["warning"]["id"]
    await desk.node.users.create("self", "admin", "县预警中心", PASSWORD, senders=[SENDER])
    desk.tokens["self"] = await desk.node.tokens.create(admin_scope(), user_name="self")
    status, body = await desk.submit("self", alert("R4"))
    status, body = await desk.call("self", "POST", f"/api/v1/warnings/{body['warning']['id']}/approve")
    assert (status, body["code"]) == (403, "approval.own_warning")
    # A department token is a system, not a person: it never approves.
    status, body = await desk.call("admin", "POST", f"/api/v1/warnings/{wid}/approve")
    assert (status, body["code"]) == (403, "auth.forbidden")


async def test_a_rejected_warning_is_never_sent_and_says_why(desk):
    _, body = await desk.submit("editor", alert("R5", severity="Severe"))  # orange: one approval
    wid = body["warning"]["id"]
    status, body = await desk.call("wang", "POST", f"/api/v1/warnings/{wid}/reject", json={})
    assert (status, body["code"]) == (400, "approval.reason_required")
    status, body = await desk.call("wang", "POST", f"/api/v1/warnings/{wid}/reject",
                                   json={"reason": "影响范围写错，应为河口村二组"})
    assert status == 200 and body["state"] == "rejected"
    status, body = await desk.call("li", "POST", f"/api/v1/warnings/{wid}/approve")
    assert (status, body["code"]) == (409, "approval.not_pending")
    _, warning = await desk.call("editor", "GET", f"/api/v1/warnings/{wid}")
    assert warning["rejected_reason"] == "影响范围写错，应为河口村二组"
    assert await desk.count(deliveries, deliveries.c.warning_id == wid) == 0


async def test_blue_and_cancels_publish_at_once_and_a_late_approval_raises_an_alarm(desk):
    status, body = await desk.submit("editor", alert("B1", severity="Minor"))
    assert body["warning"]["state"] == "active"
    _, body = await desk.submit("editor", alert("R6"))
    red = body["warning"]["id"]
    await desk.node.remind_approvals()
    assert await desk.count(alarms) == 0
    desk.node.clock.set(T0 + timedelta(minutes=11))
    await desk.node.remind_approvals()
    await desk.node.remind_approvals()  # once, not every sweep
    assert await desk.count(alarms, alarms.c.code == "approval.overdue", alarms.c.warning_id == red) == 1
    _, listed = await desk.call("duty", "GET", "/api/v1/alarms?open=1")
    (alarm,) = listed["items"]
    status, body = await desk.call("editor", "POST", f"/api/v1/alarms/{alarm['id']}/acknowledge")
    assert (status, body["code"]) == (403, "auth.forbidden")
    status, body = await desk.call("duty", "POST", f"/api/v1/alarms/{alarm['id']}/acknowledge")
    assert status == 200 and body == {"acknowledged": True}
    _, listed = await desk.call("duty", "GET", "/api/v1/alarms")
    assert listed["items"][0]["acknowledged_by"] == "user:duty"
    ref = (Reference(SENDER, "B1", "2026-07-01T08:00:00+08:00"),)
    status, body = await desk.submit("editor", alert("C1", severity="Minor", msg_type=MsgType.CANCEL, references=ref))
    assert status == 201 and body["warning"]["state"] == "active"


async def test_an_update_waiting_for_approval_leaves_the_warning_in_force_untouched(desk):
    _, body = await desk.submit("editor", alert("Y1", severity="Moderate"))  # yellow: at once
    first = body["warning"]["id"]
    before = await desk.count(deliveries, deliveries.c.warning_id == first)
    ref = (Reference(SENDER, "Y1", "2026-07-01T08:00:00+08:00"),)
    _, body = await desk.submit("editor", alert("Y2", severity="Severe", msg_type=MsgType.UPDATE, references=ref))
    update = body["warning"]["id"]
    _, old = await desk.call("duty", "GET", f"/api/v1/warnings/{first}")
    assert old["state"] == "active" and await desk.count(deliveries, deliveries.c.warning_id == first) == before
    await desk.call("wang", "POST", f"/api/v1/warnings/{update}/approve")
    _, old = await desk.call("duty", "GET", f"/api/v1/warnings/{first}")
    assert old["state"] == "superseded"


async def _audit(desk: Desk):  # noqa: ANN202
    async with desk.node.db.read() as conn:
        return (await conn.execute(sa.select(audit).order_by(audit.c.id))).all()
