"""The console's live view over real HTTP (SQLite and PostgreSQL, a manual clock): the snapshot's
counts per channel and per grid state, phones only with the contacts right, speakers' presence;
the server-sent event stream's first event, its next one when a grid is confirmed through the
API, nothing sent for a mere tick of the clock, its limit (503), a freed slot when a client
leaves, its end when the session ends and when the server shuts down.

No sleeps-and-hope: events are read with a timeout; a freed slot is awaited with a deadline.
The county of test_rollups.py: after its ladder A and B are confirmed (B late, after going
on the 未叫醒 list), C covered door to door, D open and not woken."""
from __future__ import annotations

import asyncio
import json
import logging

import pytest
import sqlalchemy as sa
from aiohttp import CookieJar
from aiohttp.test_utils import TestClient, TestServer
from factories import COUNTY, NO_APPROVAL
from test_pages import Site
from test_rollups import A, B, C, D, _run_the_ladder, directory

from warnd.config import load_config
from warnd.domain.authority import Role, Scope, admin_scope
from warnd.domain.directory import Region, Speaker
from warnd.domain.model import Level
from warnd.engine.node import Node
from warnd.http.app import build_app
from warnd.http.live_api import TIMING, StreamTiming, close_streams, streams_of
from warnd.store.schema import deliveries
from warnd.store.speakers import SpeakerStore

PASSWORD = "correct horse battery"


def county_with_speakers():
    data = directory()
    elsewhere = (Region("429999", "他县", "county"), Region("429999100", "他镇", "township", "429999"),
                 Region("429999100201", "他村", "village", "429999100"),
                 Region("429999100201001", "一组", "grid", "429999100201"))  # outside the warning
    speakers = (Speaker("spA", A), Speaker("spC", C), Speaker("spD", D), Speaker("spX", "429999100201001"))
    return type(data)(regions=data.regions + elsewhere, people=data.people, households=data.households, speakers=speakers)


@pytest.fixture
async def county(database, clock):
    config = load_config(None, database_url=database.url, public_base_url="https://warn.example.cn",
                         twilio={"from_number": "+15005550006", "api_base_url": "http://127.0.0.1:9"},
                         sms={"enabled": True}, voice={"enabled": True}, webhook={"enabled": False},
                         routing=[{"levels": ["red"], "channels": ["sms", "voice"], "roles": ["grid_responsible"]}],
                         approval=NO_APPROVAL, console={"live_poll_seconds": 0.02, "max_streams": 2})
    node = Node(config, clock=clock)
    await node.directory.import_data(county_with_speakers())
    await node.start(dispatch=False)
    app = build_app(node)
    app[TIMING] = StreamTiming(keepalive_seconds=0.2, recheck_seconds=0.1)
    if close_streams not in app.on_shutdown:  # as /tmp/requests-b2.md asks of build_app
        app.on_shutdown.append(close_streams)
    client = TestClient(TestServer(app), cookie_jar=CookieJar(unsafe=True))
    await client.start_server()
    site = Site(node, client, clock)
    site.admin = await node.tokens.create(admin_scope())
    site.app = app
    yield site
    await client.close()
    await node.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def get_json(site: Site, path: str, token: str | None = None) -> tuple[int, dict]:
    headers = bearer(token or site.admin) if token != "" else {}
    async with site.client.get(path, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


class Events:
    """Reads a text/event-stream: events (name, data), comments counted, `retry` kept."""

    def __init__(self, resp) -> None:  # noqa: ANN001 - a ClientResponse
        self.resp, self.comments, self.retry = resp, 0, None

    async def _line(self) -> str | None:
        line = await self.resp.content.readline()
        return None if not line else line.decode().rstrip("\n")

    async def next(self, timeout: float = 5.0) -> tuple[str, dict | None]:
        """The next event; ("eof", None) when the stream ended."""
        async with asyncio.timeout(timeout):
            name, data = None, []
            while (line := await self._line()) is not None:
                if line == "":
                    if data:
                        return name or "message", json.loads("\n".join(data))
                    continue
                if line.startswith(":"):
                    self.comments += 1
                    continue
                key, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if key == "event":
                    name = value
                elif key == "data":
                    data.append(value)
                elif key == "retry":
                    self.retry = int(value)
            return "eof", None

    async def comment(self, timeout: float = 5.0) -> None:
        """Wait for the next comment (a keep-alive): the stream has polled several times by then."""
        async with asyncio.timeout(timeout):
            seen = self.comments
            while self.comments == seen:
                line = await self._line()
                assert line is not None and not line.startswith(("event", "data")), line
                self.comments += line.startswith(":")


async def open_stream(site: Site, wid: int, headers: dict | None = None):  # noqa: ANN201
    return await site.client.get(f"/api/v1/warnings/{wid}/live/stream",
                                 headers=bearer(site.admin) if headers is None else headers)


async def until(condition, timeout: float = 5.0) -> None:  # noqa: ANN001 - a callable
    """Wait for `condition()` with a deadline (a stream notices a client left within one poll)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


# ---------------------------------------------------------------- the snapshot

async def test_the_snapshot_counts_channels_and_grid_states(county):
    wid = await _run_the_ladder(county)
    await county.at(15.1)  # D's ladder reaches its alarm rung
    async with county.node.db.write() as conn:  # as the dispatcher would: one SMS delivered, one voice call failed
        d = deliveries.c
        sms = (await conn.execute(sa.select(d.id).where(d.warning_id == wid, d.channel == "sms").limit(1))).scalar()
        voice = (await conn.execute(sa.select(d.id).where(d.warning_id == wid, d.channel == "voice")
                                    .limit(1))).scalar()
        now = county.clock.now()
        await conn.execute(sa.update(deliveries).where(d.id == sms).values(state="delivered", sent_at=now))
        await conn.execute(sa.update(deliveries).where(d.id == voice).values(state="failed"))
        planned = dict((await conn.execute(sa.select(d.channel, sa.func.count()).where(d.warning_id == wid)
                                           .group_by(d.channel))).all())
    speakers = SpeakerStore(county.node.db, county.clock, county.node.config)
    await speakers.set_presence("spA", True, "heartbeat")
    await speakers.set_presence("spD", False, "lost")
    await speakers.set_presence("spX", False, "other county")

    status, snap = await get_json(county, f"/api/v1/warnings/{wid}/live")
    assert status == 200
    assert snap["warning"] == {**snap["warning"], "id": wid, "identifier": "W1", "level": "red", "status": "Actual",
                               "msg_type": "Alert", "state": "active"}
    assert snap["counts"] == {"confirmed": 2, "covered": 1, "open": 0, "not_woken": 1, "uncovered": 0, "total": 4}
    assert (snap["percent"], snap["grids_open"]) == (75.0, 1)
    assert snap["since_issue_seconds"] == (county.clock.now() - county.t0).total_seconds()
    assert snap["time_to"]["50"] is not None and snap["time_to"]["100"] is None
    assert {g["grid"]: g["state"] for g in snap["grids"]} == {A: "confirmed", B: "confirmed", C: "covered",
                                                              D: "not_woken"}
    assert next(g for g in snap["grids"] if g["grid"] == D)["person_name"] == "网格员D"
    by_channel = {c["channel"]: c for c in snap["channels"]}
    assert by_channel["sms"] == {"channel": "sms", "planned": planned["sms"], "sent": 1, "delivered": 1, "failed": 0}
    assert by_channel["voice"] == {"channel": "voice", "planned": planned["voice"], "sent": 0, "delivered": 0,
                                   "failed": 1}
    (nw,) = snap["not_woken"]  # only those still open: B was woken
    assert (nw["grid"], nw["grid_name"], nw["person_name"], nw["phone"]) == (D, "一组", "网格员D", "+8613800000031")
    assert nw["sent_to_door"] == ['=HYPERLINK("http://x")', "李乡长"] and nw["list_assignee"] == nw["sent_to_door"][0]
    lists = snap["call_lists"]
    assert [(cl["grid"], cl["total"], cl["marked"], cl["reached"], cl["completed_at"] is None) for cl in lists] == [
        (D, 1, 1, 0, True), (C, 2, 2, 2, False)]  # unfinished first
    assert snap["speakers"] == {"online": 1, "offline": 1, "unknown": 1, "offline_ids": ["spD"]}
    assert [a["grid"] for a in snap["alarms"]] == [D] and snap["alarms"][0]["acknowledged_at"] is None
    assert snap["totals"] == {"not_woken": 1, "call_lists": 2, "alarms": 1, "alarms_open": 1, "offline_speakers": 1}

    alarm = snap["alarms"][0]["id"]
    async with county.client.post(f"/api/v1/alarms/{alarm}/acknowledge", headers=bearer(county.admin)) as resp:
        assert resp.status == 200
    status, snap = await get_json(county, f"/api/v1/warnings/{wid}/live")
    assert snap["alarms"][0]["acknowledged_at"] and snap["totals"]["alarms_open"] == 0


async def test_phones_only_with_the_contacts_right_and_only_for_readers(county):
    wid = await _run_the_ladder(county)
    viewer = await county.node.tokens.create(Scope("县应急局", ("*",), ("*",), Level.RED, Role.VIEWER))
    status, snap = await get_json(county, f"/api/v1/warnings/{wid}/live", viewer)
    assert status == 200 and [n["phone"] for n in snap["not_woken"]] == [None]
    assert snap["not_woken"][0]["person_name"] == "网格员D"
    other = await county.node.tokens.create(Scope("县水利局", ("*",), ("*",), Level.RED))
    for path in ("live", "live/stream"):
        status, problem = await get_json(county, f"/api/v1/warnings/{wid}/{path}", other)
        assert (status, problem["code"]) == (404, "warning.not_found")
        status, problem = await get_json(county, f"/api/v1/warnings/{wid}/{path}", "")
        assert (status, problem["code"]) == (401, "auth.missing")
    status, problem = await get_json(county, "/api/v1/warnings/99999/live")
    assert status == 404
    status, problem = await get_json(county, "/api/v1/warnings/x/live")
    assert status == 400 and problem["errors"][0]["field"] == "id"


async def test_speakers_presence_for_the_directory_page(county):
    speakers = SpeakerStore(county.node.db, county.clock, county.node.config)
    await speakers.set_presence("spA", True)
    await speakers.set_presence("spD", False, "lost")
    viewer = await county.node.tokens.create(Scope("县应急局", ("*",), ("*",), Level.RED, Role.VIEWER))
    status, body = await get_json(county, "/api/v1/speakers/presence", viewer)
    assert status == 200
    shown = {i["id"]: (i["grid"], i["online"], i["since"] is not None, i["detail"]) for i in body["items"]}
    assert shown == {"spA": (A, True, True, None), "spC": (C, None, False, None), "spD": (D, False, True, "lost"),
                     "spX": ("429999100201001", None, False, None)}
    status, body = await get_json(county, f"/api/v1/speakers/presence?under={COUNTY}", viewer)
    assert [i["id"] for i in body["items"]] == ["spA", "spC", "spD"]
    assert (await get_json(county, "/api/v1/speakers/presence", ""))[0] == 401


# ---------------------------------------------------------------- the stream

async def test_the_stream_sends_a_snapshot_then_each_change(county):
    wid = await _run_the_ladder(county)
    resp = await open_stream(county, wid)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["Cache-Control"] == "no-store" and resp.headers["X-Accel-Buffering"] == "no"
    events = Events(resp)
    name, first = await events.next()
    assert (name, events.retry, first["percent"], first["counts"]["not_woken"]) == ("snapshot", 3000, 75.0, 1)

    county.clock.advance(60)  # only `now` changes: no event, only keep-alives
    await events.comment()
    await events.comment()
    d = next(g for g in first["grids"] if g["grid"] == D)
    async with county.client.post(f"/api/v1/warnings/{wid}/confirmations/{d['confirmation_id']}",
                                  json={"reason": "网格员D 来电确认"}, headers=bearer(county.admin)) as r:
        assert r.status == 200 and (await r.json())["confirmed"] is True
    name, second = await events.next()
    assert name == "snapshot" and second["percent"] == 100.0 and second["grids_open"] == 0
    assert {g["grid"]: g["state"] for g in second["grids"]}[D] == "confirmed" and second["not_woken"] == []
    assert second["time_to"]["100"] == (county.clock.now() - county.t0).total_seconds()
    assert second["now"] != first["now"]
    resp.close()


async def test_at_most_max_streams_and_a_client_leaving_frees_its_slot(county):
    wid = await _run_the_ladder(county)
    streams = streams_of(county.app)
    first, second = await open_stream(county, wid), await open_stream(county, wid)
    for resp in (first, second):
        assert resp.status == 200 and (await Events(resp).next())[0] == "snapshot"
    assert streams.open == 2
    async with county.client.get(f"/api/v1/warnings/{wid}/live/stream", headers=bearer(county.admin)) as third:
        problem = await third.json(content_type=None)
        assert third.status == 503 and third.content_type == "application/problem+json"
        assert problem["code"] == "live.busy" and third.headers["Retry-After"] == "3"
    first.close()  # the browser tab closed
    await until(lambda: streams.open == 1)
    again = await open_stream(county, wid)
    assert again.status == 200 and (await Events(again).next())[0] == "snapshot"
    again.close()
    second.close()
    await until(lambda: streams.open == 0)


async def test_a_stream_ends_when_its_session_ends(county):
    wid = await _run_the_ladder(county)
    await county.node.users.create("li.si", "viewer", None, PASSWORD)
    async with county.client.post("/api/v1/session", json={"name": "li.si", "password": PASSWORD}) as resp:
        assert resp.status == 200
        csrf = (await resp.json())["csrf_token"]
        # the cookie is Secure (public_base_url is https): sent by hand over the test's plain HTTP
        cookie = {"Cookie": f"warnd_session={resp.cookies['warnd_session'].value}"}
    resp = await open_stream(county, wid, headers=cookie)  # the session cookie, as EventSource sends it
    events = Events(resp)
    name, snap = await events.next()
    assert resp.status == 200 and name == "snapshot" and snap["not_woken"][0]["phone"] is None  # a viewer
    async with county.client.delete("/api/v1/session", headers={"X-CSRF-Token": csrf, **cookie}) as out:
        assert out.status == 204
    assert await events.next() == ("end", {"reason": "not_allowed", "code": "auth.session_expired"})
    assert await events.next() == ("eof", None)
    await until(lambda: streams_of(county.app).open == 0)
    async with county.client.get(f"/api/v1/warnings/{wid}/live/stream") as resp:  # checked when it opens
        assert resp.status == 401


async def test_a_stream_ends_cleanly_when_the_server_shuts_down(county, caplog):
    wid = await _run_the_ladder(county)
    resp = await open_stream(county, wid)
    events = Events(resp)
    assert (await events.next())[0] == "snapshot"
    with caplog.at_level(logging.INFO):
        async with asyncio.timeout(10):  # not the runner's 60 s shutdown timeout
            closing = asyncio.create_task(county.client.server.close())
            assert await events.next() == ("end", {"reason": "server_stopping", "code": None})
            assert await events.next() == ("eof", None)
            await closing
    assert streams_of(county.app).open == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
