"""The REST API through a real aiohttp server on a real database (SQLite here;
the engine tests cover PostgreSQL)."""
from __future__ import annotations

import json
import re
from collections import Counter

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from factories import COUNTY, NO_APPROVAL, SENDER, alert

from warnd.config import load_config
from warnd.domain.authority import Role, Scope
from warnd.domain.model import Level
from warnd.engine.node import Node
from warnd.http.app import build_app
from warnd.http.keys import NODE
from warnd.http.ops_api import openapi_text
from warnd.ingest.capjson import alert_to_dict
from warnd.ingest.capxml import alert_to_xml
from warnd.store.migrate import upgrade

DIRECTORY = """
regions:
  - {code: "421126", name: 示例县, kind: county}
  - {code: "421126100", name: 城关镇, kind: township, parent: "421126"}
  - {code: "421126100201", name: 河口村, kind: village, parent: "421126100"}
"""


@pytest.fixture
async def api(tmp_path):
    url = f"sqlite:///{tmp_path / 'api.db'}"
    upgrade(url)
    node = Node(load_config(None, database_url=url, webhook={"allow_private_urls": True}, approval=NO_APPROVAL))
    await node.start(dispatch=False)
    admin = await node.tokens.create(Scope("预警中心", ("*",), ("*",), Level.RED, Role.ADMIN, ("*",)))
    weather = await node.tokens.create(Scope("县气象局", ("暴雨",), (COUNTY,), Level.ORANGE, senders=(SENDER,)))
    client = TestClient(TestServer(build_app(node)))
    await client.start_server()
    resp = await client.post("/api/v1/directory/import", data=DIRECTORY.encode(),
                             headers=_auth(admin) | {"Content-Type": "application/yaml"})
    assert resp.status == 200, await resp.text()
    yield client, admin, weather
    await client.close()
    await node.stop()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _post(client: TestClient, token: str, body: bytes, ctype: str = "application/cap+xml"):  # noqa: ANN202
    resp = await client.post("/api/v1/warnings", data=body, headers=_auth(token) | {"Content-Type": ctype})
    return resp.status, resp.headers.get("Content-Type", ""), await resp.json(content_type=None)


async def test_xml_and_json_submissions_are_the_same_warning(api):
    client, admin, _ = api
    status, _, body = await _post(client, admin, alert_to_xml(alert("X1")).encode())
    assert status == 201 and body["created"] is True
    wid = body["warning"]["id"]
    status, _, again = await _post(client, admin, json.dumps(alert_to_dict(alert("X1"))).encode(),
                                   "application/json")
    assert (status, again["created"], again["warning"]["id"]) == (200, False, wid)
    status, _, body = await _post(client, admin, json.dumps(alert_to_dict(alert("J1"))).encode(),
                                  "application/json")
    assert status == 201 and body["warning"]["level"] == "red" and body["warning"]["regions"]
    # the answer counts the grids' requirements by state; listing them is GET's (a province has 100,000)
    assert "confirmations" not in body["warning"]
    resp = await client.get(f"/api/v1/warnings/{body['warning']['id']}", headers=_auth(admin))
    listed = Counter(c["state"] for c in (await resp.json())["confirmations"])
    assert body["warning"]["confirmations_by_state"] == dict(listed)
    resp = await client.get(f"/api/v1/warnings/{wid}", headers=_auth(admin) | {"Accept": "application/cap+xml"})
    assert resp.status == 200 and "<identifier>X1</identifier>" in await resp.text()


async def test_every_rejection_is_problem_json_naming_code_and_field(api):
    client, admin, _ = api
    cases = [
        (b"<alert>", "application/cap+xml", "cap.not_xml"),
        (b"{}", "application/json", "cap.json"),
        (b"hello", "text/plain", "cap.unsupported_media_type"),
        (alert_to_xml(alert("E1")).replace("Extreme", "Apocalyptic").encode(), "application/xml", "cap.schema"),
    ]
    for body, ctype, code in cases:
        status, rtype, problem = await _post(client, admin, body, ctype)
        assert status in (400, 415), problem
        assert rtype.startswith("application/problem+json")
        assert problem["code"] == code
        assert problem["title_zh"] and problem["title_en"]
        if code != "cap.unsupported_media_type":
            assert problem["errors"] and all(e["field"] for e in problem["errors"])


async def test_department_scope_is_enforced_with_a_reason(api):
    client, _, weather = api
    status, _, problem = await _post(client, weather, alert_to_xml(alert("S1")).encode())  # red > orange
    assert (status, problem["code"]) == (403, "auth.level_out_of_scope")
    status, _, problem = await _post(client, weather, alert_to_xml(alert("S2", severity="Severe",
                                                                         codes=("110101",))).encode())
    assert (status, problem["code"]) == (403, "auth.region_out_of_scope")
    status, _, body = await _post(client, weather, alert_to_xml(alert("S3", severity="Severe")).encode())
    assert status == 201
    status, _, problem = await _post(client, "wdt_not-a-token", b"<x/>")
    assert (status, problem["code"]) == (401, "auth.invalid")
    resp = await client.put("/api/v1/directory/regions/421126200", json={"name": "x", "kind": "township"},
                            headers=_auth(weather))
    assert resp.status == 403


async def test_directory_is_readable_and_writable_without_leaking_secrets(api):
    client, admin, _ = api
    resp = await client.put("/api/v1/directory/subscribers/tv", headers=_auth(admin), json={
        "url": "http://127.0.0.1:9/tv", "secret": "whsec_" + "A" * 40, "format": "json", "levels": ["red"]})
    assert resp.status == 200, await resp.text()
    listed = await (await client.get("/api/v1/directory/subscribers", headers=_auth(admin))).json()
    assert [s["id"] for s in listed["items"]] == ["tv"]
    assert "secret" not in listed["items"][0]
    resp = await client.put("/api/v1/directory/people/p1", headers=_auth(admin),
                            json={"name": "张三", "region": "421126100201", "roles": ["pilot"], "phone": "12"})
    problem = await resp.json(content_type=None)
    assert resp.status == 400 and {e["field"].split(".")[-1] for e in problem["errors"]} >= {"roles", "phone"}
    assert (await client.delete("/api/v1/directory/subscribers/tv", headers=_auth(admin))).status == 204
    assert (await client.get("/api/v1/directory/subscribers/tv", headers=_auth(admin))).status == 404


async def test_directory_import_reports_bad_rows_and_is_idempotent(api):
    client, admin, _ = api
    resp = await client.post("/api/v1/directory/import", data=DIRECTORY.encode(), headers=_auth(admin))
    counts = await resp.json()
    assert counts["regions.unchanged"] == 3 and counts["regions.inserted"] == 0
    bad = DIRECTORY + '  - {code: "42x", name: 坏, kind: village}\n'
    resp = await client.post("/api/v1/directory/import", data=bad.encode(), headers=_auth(admin))
    problem = await resp.json(content_type=None)
    assert resp.status == 400 and problem["errors"][0]["field"].startswith("import.yaml:")


async def test_list_filters_and_read_side(api):
    client, admin, _ = api
    await _post(client, admin, alert_to_xml(alert("L1", severity="Minor")).encode())
    await _post(client, admin, alert_to_xml(alert("L2")).encode())
    items = (await (await client.get("/api/v1/warnings?level=red", headers=_auth(admin))).json())["items"]
    assert [w["identifier"] for w in items] == ["L2"]
    resp = await client.get("/api/v1/warnings?level=purple", headers=_auth(admin))
    assert resp.status == 400
    resp = await client.get("/api/v1/warnings/999", headers=_auth(admin))
    assert resp.status == 404 and (await resp.json(content_type=None))["code"] == "warning.not_found"


async def test_health_readiness_and_metrics(api):
    client, admin, _ = api
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    await _post(client, admin, b"<bad", "application/cap+xml")
    text = await (await client.get("/metrics")).text()
    assert 'warnd_rejections_total{code="cap.not_xml"} 1.0' in text
    for name in ("warnd_deliveries", "warnd_queue_depth", "warnd_send_seconds", "warnd_retries_total"):
        assert name in text


async def test_openapi_describes_exactly_the_served_routes(tmp_path):
    from openapi_spec_validator import validate
    spec = yaml.safe_load(openapi_text())
    validate(spec)
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops
                  if m in ("get", "post", "put", "delete", "patch")}
    # Every channel on, so the provider webhooks are served too.
    node = Node(load_config(None, database_url=f"sqlite:///{tmp_path / 'o.db'}",
                            twilio={"api_base_url": "http://127.0.0.1:9", "from_number": "+15005550006"},
                            sms={"enabled": True}, voice={"enabled": True}))
    app = build_app(node)
    served = {(r.method, r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}
    for channel in node.channels.values():
        await channel.close()
    assert documented == served


async def test_the_corpus_through_http(api, corpus):
    client, admin, _ = api
    for path in sorted(corpus.glob("*/*.xml")):
        group = path.parent.name
        if group not in ("valid", "signed", "edge", "invalid"):
            continue
        status, ctype, body = await _post(client, admin, path.read_bytes())
        if group == "invalid":
            assert status == 400 and ctype.startswith("application/problem+json"), (path.name, body)
            assert re.match(r"cap\.", body["code"]) and body["errors"], path.name
        else:
            assert status in (200, 201), (path.name, body)


async def test_operators_read_the_replies_that_confirmed_nothing_numbers_only_with_the_contacts_right(api):
    client, admin, weather = api
    node = client.server.app[NODE]
    viewer = await node.tokens.create(Scope("预警中心", ("*",), ("*",), Level.RED, Role.VIEWER, ("*",)))
    for sid, body in (("SM1", "没收到"), ("SM2", "什么预警？"), ("SM3", "收到")):
        await node.answers.sms_reply("+8613800000042", body, sid)
    resp = await client.get("/api/v1/inbound?outcome=negative", headers=_auth(admin))
    assert resp.status == 200
    (item,) = (await resp.json())["items"]
    assert (item["body"], item["outcome"], item["from"]) == ("没收到", "negative", "+8613800000042")
    page = await (await client.get("/api/v1/inbound?limit=2", headers=_auth(admin))).json()
    assert [i["body"] for i in page["items"]] == ["收到", "什么预警？"]  # newest first
    rest = await (await client.get(f"/api/v1/inbound?before={page['next_before']}", headers=_auth(admin))).json()
    assert [i["body"] for i in rest["items"]] == ["没收到"] and rest["next_before"] is None
    for token in (viewer, weather):  # no operate right: neither a viewer nor a department
        resp = await client.get("/api/v1/inbound", headers=_auth(token))
        assert (resp.status, (await resp.json())["code"]) == (403, "auth.forbidden")
