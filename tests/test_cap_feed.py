"""warnd's own CAP feed (/feeds/cap.atom) through a real node and HTTP server on SQLite: only real,
public warnings in force are listed, each linking to its stored CAP, with conditional GET."""
from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from factories import COUNTY, NO_APPROVAL, T0, TOWNSHIP, VILLAGE, alert
from lxml import etree

from warnd.clock import ManualClock
from warnd.config import load_config
from warnd.domain.authority import admin_scope
from warnd.domain.directory import Region
from warnd.domain.model import MsgType, Reference, Status
from warnd.engine.node import Node
from warnd.http.app import build_app
from warnd.ingest.capxml import alert_to_xml
from warnd.ingest.directory import DirectoryData
from warnd.store.migrate import upgrade

ATOM = "{http://www.w3.org/2005/Atom}"
CAP_NS = "{urn:oasis:names:tc:emergency:cap:1.2}"


@pytest.fixture
async def served(tmp_path):
    url = f"sqlite:///{tmp_path / 'feed.db'}"
    upgrade(url)
    clock = ManualClock(T0 - timedelta(hours=1))
    node = Node(load_config(None, database_url=url, approval={**NO_APPROVAL, "levels": {"red": 1}},
                            public_base_url="https://warn.example.cn"), clock=clock)
    await node.start(dispatch=False)
    await node.directory.import_data(DirectoryData(regions=(
        Region(COUNTY, "示例县", "county"), Region(TOWNSHIP, "城关镇", "township", COUNTY),
        Region(VILLAGE, "河口村", "village", TOWNSHIP))))
    client = TestClient(TestServer(build_app(node)))
    await client.start_server()
    yield node, client, clock
    await client.close()
    await node.stop()


async def _submit(node: Node, a) -> int:  # noqa: ANN001
    submitted, _ = await node.intake.submit(alert_to_xml(a).encode(), "application/cap+xml", admin_scope())
    return submitted.warning_id


async def _feed(client: TestClient, **headers: str):  # noqa: ANN202
    resp = await client.get("/feeds/cap.atom", headers=headers)
    return resp, await resp.read()


async def test_only_real_public_warnings_in_force_are_listed_and_link_to_their_cap(served):
    node, client, clock = served
    live = await _submit(node, alert("LIVE", severity="Moderate"))
    await _submit(node, alert("DRILL", severity="Moderate", status=Status.EXERCISE))
    await _submit(node, dataclasses.replace(alert("CLOSED", severity="Moderate"), scope="Restricted",
                                            restriction="防汛责任人"))
    await _submit(node, alert("HELD"))  # red: waits for an approval
    gone = alert("GONE", severity="Moderate")
    await _submit(node, gone)
    clock.advance(60)
    await _submit(node, alert("GONE-X", severity="Moderate", msg_type=MsgType.CANCEL,
                              references=(Reference(gone.sender, gone.identifier, "2026-07-01T00:00:00-00:00"),)))

    resp, body = await _feed(client)
    assert resp.status == 200 and resp.content_type == "application/atom+xml"
    assert resp.headers["Cache-Control"].startswith("public")
    root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
    assert root.tag == f"{ATOM}feed" and root.findtext(f"{ATOM}id").startswith("urn:uuid:")
    entries = root.findall(f"{ATOM}entry")
    assert len(entries) == 1, body.decode()
    entry = entries[0]
    assert entry.findtext(f"{ATOM}title") == "暴雨预警"
    assert entry.findtext(f"{ATOM}id").startswith("urn:uuid:")
    assert entry.findtext(f"{ATOM}author/{ATOM}name") == "admin"
    assert entry.findtext(f"{ATOM}summary") and entry.findtext(f"{ATOM}updated").endswith("Z")
    link = entry.find(f"{ATOM}link[@type='application/cap+xml']")
    href = link.get("href")
    assert href == f"https://warn.example.cn/feeds/cap/{live}.xml"

    cap = await client.get(href.removeprefix("https://warn.example.cn"))
    assert cap.status == 200 and cap.content_type == "application/cap+xml"
    text = await cap.read()
    parsed = etree.fromstring(text, etree.XMLParser(resolve_entities=False, no_network=True))
    assert parsed.findtext(f"{CAP_NS}identifier") == "LIVE"
    assert text.decode("utf-8") == await node.intake.warnings.cap_of(live)

    # nothing else is served: not the drill, the closed one, the held one, the cancelled one
    for wid in range(1, live + 8):
        if wid != live:
            assert (await client.get(f"/feeds/cap/{wid}.xml")).status == 404


async def test_conditional_get_answers_304_until_the_feed_changes(served):
    node, client, clock = served
    wid = await _submit(node, alert("A1", severity="Moderate"))
    resp, body = await _feed(client)
    etag, modified = resp.headers["ETag"], resp.headers["Last-Modified"]
    again, same = await _feed(client)
    assert (again.headers["ETag"], same) == (etag, body)  # the same rows give the same bytes

    resp, rest = await _feed(client, **{"If-None-Match": etag})
    assert resp.status == 304 and rest == b"" and resp.headers["ETag"] == etag
    resp, _ = await _feed(client, **{"If-Modified-Since": modified})
    assert resp.status == 304
    resp, _ = await _feed(client, **{"If-None-Match": '"other"', "If-Modified-Since": modified})
    assert resp.status == 200  # If-None-Match decides when given

    clock.advance(120)  # a cancel takes the entry off: a new ETag and a later Last-Modified
    await _submit(node, alert("A1-X", severity="Moderate", msg_type=MsgType.CANCEL,
                              references=(Reference("dept@example.cn", "A1", "2026-07-01T00:00:00-00:00"),)))
    resp, body = await _feed(client, **{"If-Modified-Since": modified})
    assert resp.status == 200 and resp.headers["ETag"] != etag
    assert b"<entry" not in body
    resp, _ = await _feed(client, **{"If-None-Match": etag})
    assert resp.status == 200
    assert (await client.get(f"/feeds/cap/{wid}.xml")).status == 404


async def test_expired_warnings_leave_the_feed(served):
    node, client, clock = served
    await _submit(node, alert("E1", severity="Moderate", sent=T0 - timedelta(hours=2), expires=T0))
    _, body = await _feed(client)
    assert body.count(b"<entry") == 1
    clock.advance(3 * 3600)  # past its expiry, before the expiry sweep ran
    _, body = await _feed(client)
    assert b"<entry" not in body
