"""Departments own their warnings; reads are least-privilege; CAP scope is honoured; tokens
end at once everywhere. Through the real API, on SQLite and PostgreSQL."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer
from factories import NO_APPROVAL, T0, alert

from warnd.clock import ManualClock
from warnd.config import load_config
from warnd.domain.authority import Role, Scope, admin_scope
from warnd.domain.errors import WarndError
from warnd.domain.model import Area, Circle, MsgType, Reference
from warnd.engine.node import Node
from warnd.http.app import build_app
from warnd.ingest.capxml import alert_to_xml
from warnd.ingest.directory import load_directory
from warnd.store.migrate import upgrade
from warnd.store.schema import audit, deliveries, warnings

COUNTY, NEIGHBOUR = "421126", "421127"
VILLAGE, GRID, GRID2 = "421126100201", "421126100201001", "421126100201002"
QX, NB = "qx@421126.cn", "qx@421127.cn"
RING = [[30.262, 115.401], [30.262, 115.432], [30.238, 115.432], [30.238, 115.401], [30.262, 115.401]]
DIRECTORY = f"""
regions:
  - {{code: "{COUNTY}", name: 蕲阳县, polygon: {RING}}}
  - {{code: "421126100", name: 青石镇, parent: "{COUNTY}"}}
  - {{code: "{VILLAGE}", name: 柳塘村, parent: "421126100"}}
  - {{code: "{GRID}", name: 一组}}
  - {{code: "{GRID2}", name: 二组}}
  - {{code: "{NEIGHBOUR}", name: 邻县}}
  - {{code: "421127100201", name: 邻村}}
people:
  - {{id: g1, name: 王小红, region: "{GRID}", roles: [grid_responsible], phone: "+8613800001001"}}
households:
  - {{id: h1, grid: "{GRID}", address: 柳塘村一组3号, phone: "+8613800009001", vulnerable: true}}
subscribers:
  - {{id: tv, url: "http://127.0.0.1:9/tv", secret: "whsec_{'A' * 32}"}}
  - {{id: ops, url: "http://127.0.0.1:9/ops", secret: "whsec_{'B' * 32}", public: false, restricted: true}}
  - {{id: bridge, url: "http://127.0.0.1:9/bridge", secret: "whsec_{'C' * 32}", public: false}}
"""


class Site:
    def __init__(self, node: Node, client: TestClient, tokens: dict[str, str]) -> None:
        self.node, self.client, self.tokens = node, client, tokens

    async def post(self, who: str, cap) -> tuple[int, dict]:  # noqa: ANN001 - an Alert
        resp = await self.client.post("/api/v1/warnings", data=alert_to_xml(cap).encode(),
                                      headers=self.auth(who) | {"Content-Type": "application/cap+xml"})
        return resp.status, await resp.json(content_type=None)

    async def get(self, who: str, path: str) -> tuple[int, dict]:
        resp = await self.client.get(path, headers=self.auth(who))
        return resp.status, await resp.json(content_type=None)

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def rows(self, table, *where):  # noqa: ANN001, ANN201
        async with self.node.db.read() as conn:
            return (await conn.execute(sa.select(table).where(*where))).all()


async def make_site(url: str) -> Site:
    upgrade(url)
    node = Node(load_config(None, database_url=url, webhook={"allow_private_urls": True}, approval=NO_APPROVAL),
                clock=ManualClock(T0))
    await node.start(dispatch=False)
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.yaml"
        path.write_text(DIRECTORY, encoding="utf-8")
        await node.directory.import_data(load_directory([path]))
    make = node.tokens.create
    tokens = {
        "admin": await make(admin_scope()),
        "weather": await make(Scope("县气象局", ("暴雨",), (COUNTY,), max_level_red(), senders=(QX,))),
        "neighbour": await make(Scope("邻县气象局", ("暴雨",), (NEIGHBOUR,), max_level_red(), senders=(NB,))),
    }
    client = TestClient(TestServer(build_app(node)))
    await client.start_server()
    return Site(node, client, tokens)


def max_level_red():  # noqa: ANN201
    from warnd.domain.model import Level
    return Level.RED


@pytest.fixture
async def site(db_url):
    s = await make_site(db_url)
    yield s
    await s.client.close()
    await s.node.stop()


def red(identifier: str, *, sender: str = QX, codes=(VILLAGE,), scope: str = "Public", **kw):  # noqa: ANN001, ANN201
    return replace(alert(identifier, codes=codes, **kw), sender=sender, scope=scope)


async def test_another_departments_cancel_or_update_is_refused_and_changes_nothing(site):
    status, body = await site.post("weather", red("QX-1"))
    assert status == 201, body
    wid = body["warning"]["id"]
    before = await site.rows(deliveries, deliveries.c.warning_id == wid)
    ref = (Reference(QX, "QX-1", "2026-07-01T08:00:00+08:00"),)
    for msg_type in (MsgType.CANCEL, MsgType.UPDATE):
        attack = red(f"NB-{msg_type.value}", sender=NB, codes=("421127100201",), msg_type=msg_type, references=ref)
        status, body = await site.post("neighbour", attack)
        assert (status, body["code"]) == (403, "auth.not_your_warning"), body
    (row,) = await site.rows(warnings, warnings.c.id == wid)
    assert row.state == "active"
    assert len(await site.rows(warnings)) == 1
    assert await site.rows(deliveries, deliveries.c.warning_id == wid) == before
    refusals = await site.rows(audit, audit.c.action == "warning.refused")
    assert [r.detail["code"] for r in refusals] == ["auth.not_your_warning"] * 2


async def test_nobody_squats_another_departments_sender_and_identifier(site):
    status, body = await site.post("neighbour", red("QX-2", sender=QX, codes=("421127100201",)))
    assert (status, body["code"]) == (403, "auth.sender_not_yours")
    status, body = await site.post("weather", red("QX-2"))
    assert status == 201 and body["created"] is True and body["warning"]["state"] == "active"


async def test_the_release_centre_supersedes_only_with_a_reason_and_it_is_audited(site):
    centre = Scope("县预警中心", ("*",), (COUNTY,), max_level_red(), Role.DEPARTMENT, ("centre@421126.cn",), True)
    site.tokens["centre"] = await site.node.tokens.create(centre)
    await site.post("weather", red("QX-3"))
    ref = (Reference(QX, "QX-3", "2026-07-01T08:00:00+08:00"),)
    cancel = red("C-1", sender="centre@421126.cn", msg_type=MsgType.CANCEL, references=ref)
    status, body = await site.post("centre", cancel)
    assert (status, body["code"]) == (403, "auth.reason_required")
    status, body = await site.post("centre", replace(cancel, identifier="C-2", note="气象局电话确认：误发，由中心解除"))
    assert status == 201, body
    (old,) = await site.rows(warnings, warnings.c.identifier == "QX-3")
    assert old.state == "cancelled"


async def test_areas_outside_the_jurisdiction_are_refused(site):
    inside = Area("柳塘村", polygons=(((30.25, 115.41), (30.25, 115.42), (30.24, 115.42), (30.25, 115.41)),))
    reaching = Area("越界", polygons=(((30.25, 115.41), (30.25, 115.60), (30.24, 115.60), (30.25, 115.41)),))
    far_circle = Area("跨界圆", circles=(Circle(30.25, 115.43, 5.0),))  # touches the county, reaches beyond
    foreign = Area("柳塘村及他处", geocodes=(("GB2260", VILLAGE), ("UGC", "ORZ001")))

    def with_area(identifier: str, area: Area):  # noqa: ANN202
        base = red(identifier, codes=())
        return replace(base, infos=(replace(base.infos[0], areas=(area,)),))
    for identifier, area, code in (("P1", reaching, "auth.shape_out_of_scope"),
                                   ("P2", far_circle, "auth.shape_out_of_scope"),
                                   ("P3", foreign, "auth.geocode_unknown")):
        status, body = await site.post("weather", with_area(identifier, area))
        assert (status, body["code"]) == (403, code), identifier
    status, body = await site.post("weather", with_area("P4", inside))
    assert status == 201, body
    assert len(await site.rows(warnings)) == 1


async def test_restricted_and_private_never_reach_public_subscribers(site):
    async def subscribers_of(identifier: str, **kw) -> set[str]:
        status, body = await site.post("admin", red(identifier, **kw))
        assert status == 201, body
        rows = await site.rows(deliveries, deliveries.c.warning_id == body["warning"]["id"])
        return {r.recipient_id for r in rows if r.recipient_kind == "subscriber"}
    assert await subscribers_of("PUB") == {"tv", "ops", "bridge"}
    assert await subscribers_of("RES2", scope="Restricted") == {"ops"}
    assert await subscribers_of("PRI", scope="Private") == set()  # addressed to nobody we know
    private = replace(red("PRI2", scope="Private"), addresses='bridge "not us"')
    status, body = await site.post("admin", private)
    assert status == 201, body
    rows = await site.rows(deliveries, deliveries.c.warning_id == body["warning"]["id"])
    assert {r.recipient_id for r in rows} == {"bridge"}


async def test_departments_read_their_own_warnings_and_no_contacts(site):
    status, body = await site.post("weather", red("QX-4"))
    own = body["warning"]["id"]
    status, body = await site.post("neighbour", red("NB-4", sender=NB, codes=("421127100201",)))
    other = body["warning"]["id"]
    assert (await site.get("weather", f"/api/v1/warnings/{own}"))[0] == 200
    for path in (f"/api/v1/warnings/{other}", f"/api/v1/warnings/{other}/coverage",
                 f"/api/v1/warnings/{other}/call-lists", f"/api/v1/warnings/{other}/preview"):
        assert (await site.get("weather", path))[0] == 404, path
    _, listed = await site.get("weather", "/api/v1/warnings")
    assert [w["id"] for w in listed["items"]] == [own]
    _, listed = await site.get("admin", "/api/v1/warnings")
    assert {w["id"] for w in listed["items"]} == {own, other}
    _, person = await site.get("weather", "/api/v1/directory/people/g1")
    _, home = await site.get("weather", "/api/v1/directory/households/h1")
    assert person["phone"] is None and home["address"] is None and home["phone"] is None
    _, person = await site.get("admin", "/api/v1/directory/people/g1")
    assert person["phone"] == "+8613800001001"
    assert (await site.get("weather", "/api/v1/alarms"))[0] == 403


async def test_a_revoked_token_is_refused_at_once_on_another_node(site, db_url):
    other = Node(load_config(None, database_url=db_url, node_id="second", approval=NO_APPROVAL), clock=ManualClock(T0))
    await other.start(dispatch=False)
    client = TestClient(TestServer(build_app(other)))
    await client.start_server()
    try:
        headers = site.auth("weather")
        assert (await client.get("/api/v1/warnings", headers=headers)).status == 200
        (info,) = [t for t in await site.node.tokens.list() if t.department == "县气象局"]
        assert info.last_used_at is not None
        assert await site.node.tokens.revoke(info.id, actor="user:admin")
        resp = await client.get("/api/v1/warnings", headers=headers)
        assert resp.status == 401 and (await resp.json())["code"] == "auth.invalid"
    finally:
        await client.close()
        await other.stop()


async def test_token_lifecycle_through_the_admin_api(site):
    resp = await site.client.post("/api/v1/tokens", headers=site.auth("admin"),
                                  json={"department": "县水利局", "senders": ["slj@421126.cn"], "events": ["山洪"],
                                        "regions": [COUNTY], "max_level": "orange", "expires_days": 30})
    assert resp.status == 201
    made = (await resp.json())["token"]
    assert (await site.client.get("/api/v1/warnings", headers={"Authorization": f"Bearer {made}"})).status == 200
    assert (await site.client.get("/api/v1/tokens", headers={"Authorization": f"Bearer {made}"})).status == 403
    _, listed = await site.get("admin", "/api/v1/tokens")
    (row,) = [t for t in listed["items"] if t["department"] == "县水利局"]
    assert row["expires_at"] and "token_hash" not in row and row["senders"] == ["slj@421126.cn"]
    resp = await site.client.post(f"/api/v1/tokens/{row['id']}/rotate", headers=site.auth("admin"))
    rotated = (await resp.json())["token"]
    assert (await site.client.get("/api/v1/warnings", headers={"Authorization": f"Bearer {made}"})).status == 401
    assert (await site.client.get("/api/v1/warnings", headers={"Authorization": f"Bearer {rotated}"})).status == 200
    actions = [r.action for r in await site.rows(audit, audit.c.action.like("token.%"))]
    assert actions[-2:] == ["token.create", "token.rotate"]


async def test_an_expired_token_says_so(site):
    token = await site.node.tokens.create(Scope("x", ("*",), ("*",), max_level_red(), senders=("x@x",)),
                                          expires_at=T0 + timedelta(minutes=1))
    assert (await site.client.get("/api/v1/warnings", headers={"Authorization": f"Bearer {token}"})).status == 200
    site.node.clock.set(T0 + timedelta(minutes=2))
    resp = await site.client.get("/api/v1/warnings", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401 and (await resp.json())["code"] == "auth.expired"


def test_real_twilio_with_the_simulator_token_is_refused():
    with pytest.raises(WarndError) as err:
        load_config(None, sms={"enabled": True}, twilio={"from_number": "+15005550006"})
    assert "auth_token" in str(err.value)
    load_config(None, sms={"enabled": True}, twilio={"from_number": "+15005550006", "auth_token": "x" * 32})
    load_config(None, sms={"enabled": True},
                twilio={"api_base_url": "http://127.0.0.1:9", "from_number": "+15005550006"})


async def test_provider_webhooks_answer_only_for_enabled_channels(site):
    from twilio.request_validator import RequestValidator
    url = site.node.config.public_base_url + "/twilio/sms/inbound"
    params = {"From": "+8613800001001", "Body": "1", "MessageSid": "SM" + "0" * 32}
    signature = RequestValidator("simulator-auth-token").compute_signature(url, params)
    for path in ("/twilio/sms/inbound", "/twilio/sms/status", "/twilio/voice/status", "/twilio/voice/gather"):
        resp = await site.client.post(path, data=params, headers={"X-Twilio-Signature": signature})
        assert resp.status == 404, path
