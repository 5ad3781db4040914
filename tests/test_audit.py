"""The audit log is complete and tamper-evident (有叫有应有记录), on SQLite and PostgreSQL:
the database refuses to change it, `warnd audit verify` finds an edit made behind
the triggers' back, `warnd audit export` writes it out whole, GET /api/v1/audit
reads it for administrators only, and every audited action leaves exactly one
entry naming who did it. Real databases, a real HTTP server, a manual clock."""
from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import sqlite3
from datetime import timedelta

import psycopg
import pytest
import sqlalchemy as sa
import yaml
from aiohttp.test_utils import TestClient, TestServer
from alembic import command
from click.testing import CliRunner
from factories import COUNTY, GRIDS, TOWNSHIP, VILLAGE, alert
from sqlalchemy.engine import make_url

from warnd.cli import main
from warnd.clock import ManualClock
from warnd.config import load_config
from warnd.domain.authority import Role, Scope, admin_scope
from warnd.domain.directory import Household, Person, Region
from warnd.domain.model import Level
from warnd.engine.node import Node
from warnd.http import audit_api
from warnd.http.app import build_app
from warnd.http.ops_api import openapi_text
from warnd.ingest.capxml import alert_to_xml
from warnd.ingest.directory import DirectoryData
from warnd.store import audit
from warnd.store.database import Database
from warnd.store.migrate import alembic_config, upgrade
from warnd.store.schema import alarms, call_lists, metadata
from warnd.store.tokens import TokenStore

G = GRIDS[0]
DIRECTORY = f"""
regions:
  - {{code: "{COUNTY}", name: 示例县, kind: county}}
  - {{code: "{TOWNSHIP}", name: 城关镇, kind: township, parent: "{COUNTY}"}}
  - {{code: "{VILLAGE}", name: 河口村, kind: village, parent: "{TOWNSHIP}"}}
"""


# ---------------------------------------------------------------- helpers

def _dialect(url: str) -> str:
    return make_url(url).get_backend_name()


@contextlib.contextmanager
def _driver(url: str):  # noqa: ANN202
    """A plain DB-API connection, past warnd and SQLAlchemy: what someone with the file or a psql prompt has."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        conn = sqlite3.connect(u.database, isolation_level=None)
    else:
        conn = psycopg.connect(u.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


def _tamper(url: str, *statements: str) -> None:
    """Drop the triggers, then change the log as an intruder with the database's rights would."""
    with _driver(url) as conn:
        for statement in (*audit.DROP_APPEND_ONLY[_dialect(url)], *statements):
            conn.execute(statement)


async def _append(db: Database, clock: ManualClock, *rows: tuple[str, str, str, dict]) -> None:
    for actor, action, subject, detail in rows:
        async with db.write() as conn:
            await audit.append(conn, db, clock.now(), actor, action, subject, detail)
        clock.advance(3600)


SEED = (("token:1", "warning.alert", "warning:1", {"sender": "气象局", "deliveries": 3}),
        ("cli", "directory.import", "directory", {"people.inserted": 2}),
        ("user:zhang", "directory.put", "people:p1", {"kind": "people", "key": "p1", "outcome": "inserted"}),
        ("p1", "confirmation.link", "confirmations:[1]", {"person_id": "p1", "confirmed": [1]}))


def _seed(url: str) -> list[dict]:
    """The SEED entries, an hour apart from the manual clock's start; as the API lists them."""
    async def run() -> list[dict]:
        db = Database(url)
        try:
            await _append(db, ManualClock(), *SEED)
            return [e.json() for e in await audit.entries(db, limit=1000)]
        finally:
            await db.close()
    return asyncio.run(run())


async def _entries(db: Database, action: str) -> list[audit.Entry]:
    return await audit.entries(db, audit.Filter(action=action), 1000)


# ---------------------------------------------------------------- redaction (pure)

def test_redaction_hides_secrets_and_url_passwords_and_keeps_the_rest():
    config = load_config(None, database_url="postgresql://warnd:s3cret@db.example.cn:5432/warnd",
                         secret_key="sk-long-and-secret", twilio={"auth_token": "tw-secret"},
                         mqtt={"url": "mqtts://speakers:mq-secret@broker.example.cn:8883"})
    out = audit.redact(config.model_dump(mode="json"))
    text = json.dumps(out, ensure_ascii=False)
    for secret in ("s3cret", "sk-long-and-secret", "tw-secret", "mq-secret"):
        assert secret not in text
    assert out["database_url"] == "postgresql://warnd:***@db.example.cn:5432/warnd"
    assert out["mqtt"]["url"] == "mqtts://speakers:***@broker.example.cn:8883"
    assert out["twilio"]["auth_token"] == out["secret_key"] == audit.REDACTED
    assert out["twilio"]["account_sid"] == config.twilio.account_sid and out["sms"] == config.model_dump(mode="json")["sms"]
    channel = audit.redact(load_config(None, aliyun_sms={"access_key_id": "LTAI5t", "access_key_secret": "ali-secret",
                                                         "push_token": "push-secret-0123456789"}
                                       ).model_dump(mode="json"))
    assert "ali-secret" not in json.dumps(channel) and "push-secret" not in json.dumps(channel)
    assert channel["channel_sections"]["aliyun_sms"]["access_key_id"] == "LTAI5t"  # an id, not a secret
    assert audit.redact({"secret_key": "", "url": "sqlite:///warnd.db", "n": [1, "http://a@b/"]}) == \
        {"secret_key": "", "url": "sqlite:///warnd.db", "n": [1, "http://a@b/"]}  # nothing to hide
    assert audit.redact({"u": "http://[bad@x/"}) == {"u": audit.REDACTED}  # unparseable: nothing kept


# ---------------------------------------------------------------- the database refuses changes

@pytest.mark.parametrize("built_by", ["create_all", "alembic"])
async def test_the_database_refuses_to_update_delete_or_truncate_the_log(db_url, clock, built_by):
    if built_by == "alembic":
        upgrade(db_url)
    db = Database(db_url)
    try:
        if built_by == "create_all":
            async with db.write() as conn:
                await conn.run_sync(metadata.create_all)
        await _append(db, clock, *SEED[:2])
        before = await audit.entries(db)
        refused = ["UPDATE audit_log SET actor = 'mallory' WHERE id = 1", "DELETE FROM audit_log WHERE id = 2",
                   "DELETE FROM audit_log"]
        if _dialect(db_url) == "postgresql":
            refused.append("TRUNCATE audit_log")
        with _driver(db_url) as conn:
            for statement in refused:
                with pytest.raises((sqlite3.DatabaseError, psycopg.Error), match="append-only"):
                    conn.execute(statement)
        assert await audit.entries(db) == before
        assert (await audit.check(db)).intact
        await _append(db, clock, SEED[2])  # appending still works
        assert (await audit.check(db)).entries == 3
    finally:
        await db.close()


async def test_downgrading_0007_lets_the_log_be_changed_again(db_url, clock):
    upgrade(db_url)
    db = Database(db_url)
    try:
        await _append(db, clock, SEED[0])
        command.downgrade(alembic_config(db_url), "0006")
        with _driver(db_url) as conn:
            conn.execute("UPDATE audit_log SET actor = 'mallory'")
        upgrade(db_url)
        with _driver(db_url) as conn, pytest.raises((sqlite3.DatabaseError, psycopg.Error), match="append-only"):
            conn.execute("UPDATE audit_log SET actor = 'token:1'")
        assert (await audit.verify(db)).id == 1  # the edit made meanwhile stays visible
    finally:
        await db.close()


# ---------------------------------------------------------------- warnd audit verify / export

def test_verify_passes_an_intact_chain_and_names_the_first_broken_entry(db_url):
    upgrade(db_url)
    listed = _seed(db_url)
    runner = CliRunner()
    ok = runner.invoke(main, ["audit", "verify", "--database-url", db_url])
    assert ok.exit_code == 0, ok.output
    assert "audit chain intact: 4 entries / 审计链完整：4 条" in ok.output and listed[-1]["hash"] in ok.output

    _tamper(db_url, "DELETE FROM audit_log WHERE id = 3")
    gap = runner.invoke(main, ["audit", "verify", "--database-url", db_url])
    assert gap.exit_code == 1 and "entry 4" in gap.output and "confirmation.link" in gap.output

    _tamper(db_url, """UPDATE audit_log SET detail = '{"sender": "气象局", "deliveries": 0}' WHERE id = 1""")
    edited = runner.invoke(main, ["audit", "verify", "--database-url", db_url])
    assert edited.exit_code == 1
    assert "entry 1" in edited.output and listed[0]["at"] in edited.output and "warning.alert" in edited.output
    assert "第 1 条" in edited.output


def test_export_jsonl_and_csv_round_trip_and_respect_since_and_until(db_url, tmp_path):
    upgrade(db_url)
    listed = _seed(db_url)
    runner = CliRunner()
    db = ["--database-url", db_url]

    out = runner.invoke(main, ["audit", "export", *db])
    assert out.exit_code == 0, out.output
    exported = [json.loads(line) for line in out.stdout.splitlines()]
    assert exported == listed
    prev = audit.GENESIS  # the file alone proves the chain: every hash recomputes
    for e in exported:
        at = audit.parse_time(e["at"], "at")
        assert e["prev_hash"] == prev
        assert e["hash"] == audit.entry_hash(prev, at, e["actor"], e["action"], e["subject"], e["detail"])
        prev = e["hash"]

    target = tmp_path / "audit.csv"
    out = runner.invoke(main, ["audit", "export", *db, "--format", "csv", "--output", str(target),
                               "--since", listed[1]["at"], "--until", listed[3]["at"]])
    assert out.exit_code == 0, out.output
    assert "2 entries written" in out.output and out.stdout == ""  # the data is in the file only
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"))))
    assert [r | {"id": int(r["id"]), "detail": json.loads(r["detail"])} for r in rows] == listed[1:3]
    assert list(rows[0]) == list(audit.COLUMNS)

    since = runner.invoke(main, ["audit", "export", *db, "--since", listed[2]["at"].replace("+00:00", "Z")])
    assert [json.loads(line)["id"] for line in since.stdout.splitlines()] == [3, 4]
    bad = runner.invoke(main, ["audit", "export", *db, "--since", "2026-07-01"])
    assert bad.exit_code == 2 and "--since" in bad.output and "时区" in bad.output


# ---------------------------------------------------------------- GET /api/v1/audit

@pytest.fixture
async def site(db_url):
    """warnd on a real HTTP server: admin and viewer tokens, the red ladder, approvals off (they are
    not what is tested here), SMS and calls to nowhere (nothing is dispatched)."""
    upgrade(db_url)
    clock = ManualClock()
    config = load_config(None, database_url=db_url, public_base_url="https://warn.example.cn",
                         twilio={"from_number": "+15005550006", "api_base_url": "http://127.0.0.1:9"},
                         sms={"enabled": True}, voice={"enabled": True}, webhook={"enabled": False},
                         approval={"levels": {"red": 0, "orange": 0}},
                         routing=[{"levels": ["red"], "channels": ["sms", "voice"], "roles": ["grid_responsible"]}])
    node = Node(config, clock=clock)
    await node.start(dispatch=False)
    tokens = TokenStore(node.db, clock)
    admin = await tokens.create(admin_scope())
    viewer = await tokens.create(Scope("县应急局", ("*",), ("*",), Level.RED, role=Role.VIEWER))
    client = TestClient(TestServer(build_app(node)))
    await client.start_server()
    yield Site(node, client, clock, admin, viewer, (await tokens.lookup(admin)).who)
    await client.close()
    await node.stop()


class Site:
    def __init__(self, node: Node, client: TestClient, clock: ManualClock, admin: str, viewer: str,
                 admin_who: str) -> None:
        self.node, self.client, self.clock = node, client, clock
        self.admin, self.viewer, self.admin_who = admin, viewer, admin_who

    async def get(self, path: str, token: str | None = None, **params) -> tuple[int, dict]:  # noqa: ANN003
        headers = {"Authorization": f"Bearer {token or self.admin}"}
        async with self.client.get(path, params=params, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def send(self, method: str, path: str, *, auth: bool = True, **kw) -> int:  # noqa: ANN003
        """A request as the admin (`auth`), or as anyone with a link."""
        headers = ({"Authorization": f"Bearer {self.admin}"} if auth else {}) | kw.pop("headers", {})
        async with self.client.request(method, path, headers=headers, allow_redirects=False, **kw) as resp:
            return resp.status

    async def audited(self, action: str) -> list[audit.Entry]:
        return await _entries(self.node.db, action)


async def test_the_api_filters_pages_and_is_for_auditors_only(site):
    t0 = site.clock.advance(3600)  # after the node's start and the tokens
    await _append(site.node.db, site.clock, *SEED)
    ids = [e.id for e in await audit.entries(site.node.db, audit.Filter(since=t0))]

    async def listed(**params) -> list[int]:  # noqa: ANN003
        status, body = await site.get("/api/v1/audit", **params)
        assert status == 200, body
        return [e["id"] for e in body["items"]]

    assert await listed(actor="user:zhang") == [ids[2]]
    assert await listed(action="directory.put") == [ids[2]]
    assert await listed(action="directory.*", since=t0.isoformat()) == [ids[1], ids[2]]
    assert await listed(action="directory.") == []  # no star: exact
    assert await listed(subject="warning:1") == [ids[0]]
    assert await listed(since=(t0 + timedelta(hours=1)).isoformat(),
                        until=(t0 + timedelta(hours=3)).isoformat()) == ids[1:3]
    everything = await listed(limit="1000")
    assert everything[-4:] == ids and everything == sorted(everything)

    status, body = await site.get("/api/v1/audit", limit="2", after=str(ids[0]))
    assert [e["id"] for e in body["items"]] == ids[1:3] and body["next_after"] == ids[2]
    status, body = await site.get("/api/v1/audit", limit="2", after=str(body["next_after"]))
    assert [e["id"] for e in body["items"]] == ids[3:] and body["next_after"] is None
    (entry,) = body["items"]
    assert entry["actor"] == "p1" and entry["detail"] == SEED[3][3] and len(entry["hash"]) == 64

    for params, field in (({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"), ({"limit": "x"}, "limit"),
                          ({"after": "-1"}, "after"), ({"since": "yesterday"}, "since"),
                          ({"until": "2026-07-01T00:00:00"}, "until"),
                          ({"since": "2026-07-02T00:00:00Z", "until": "2026-07-01T00:00:00Z"}, "until")):
        status, problem = await site.get("/api/v1/audit", **params)
        assert (status, problem["code"]) == (400, "request.invalid"), params
        assert problem["errors"][0]["field"] == field and problem["errors"][0]["detail_zh"]

    for path in ("/api/v1/audit", "/api/v1/audit/verify"):
        status, problem = await site.get(path, site.viewer)
        assert (status, problem["code"]) == (403, "auth.forbidden"), path
        async with site.client.get(path) as resp:
            assert resp.status == 401

    status, body = await site.get("/api/v1/audit/verify")
    assert status == 200 and body == {"intact": True, "entries": len(everything), "first_broken": None}
    _tamper(site.node.config.database_url, f"UPDATE audit_log SET actor = 'nobody' WHERE id = {ids[2]}")
    status, body = await site.get("/api/v1/audit/verify")
    assert body == {"intact": False, "entries": len(everything), "first_broken": ids[2]}


def test_the_audit_routes_are_documented_for_admins():
    spec = yaml.safe_load(openapi_text())
    served = {(r.method, r.path) for r in audit_api.routes()}
    documented = {("GET", p) for p in spec["paths"] if p.startswith("/api/v1/audit")}
    assert served == documented == {("GET", "/api/v1/audit"), ("GET", "/api/v1/audit/verify")}
    for path in ("/api/v1/audit", "/api/v1/audit/verify"):
        assert "admin" in spec["paths"][path]["get"]["summary"]


# ---------------------------------------------------------------- every audited action: one entry, its actor

async def test_node_start_records_the_configuration_without_secrets(db_url):
    upgrade(db_url)
    url = db_url if _dialect(db_url) == "sqlite" else make_url(db_url).set(password="pg-secret").render_as_string(
        hide_password=False)  # trust authentication: the password is never asked for
    config = load_config(None, database_url=url, secret_key="sk-" + "x" * 40,
                         twilio={"auth_token": "tw-secret"}, mqtt={"url": "mqtt://spk:mq-secret@127.0.0.1:1883"})
    node = Node(config)
    await node.start(dispatch=False)
    try:
        (entry,) = await _entries(node.db, "node.start")
    finally:
        await node.stop()
    assert entry.actor == node.incarnation and entry.subject == f"node:{config.node_name}"
    assert entry.detail["incarnation"] == node.incarnation
    assert entry.detail["config"]["twilio"]["auth_token"] == audit.REDACTED
    assert entry.detail["config"]["mqtt"]["url"] == "mqtt://spk:***@127.0.0.1:1883"
    assert entry.detail["config"]["levels"] == config.model_dump(mode="json")["levels"]
    text = json.dumps(entry.detail)
    assert "tw-secret" not in text and "mq-secret" not in text and "pg-secret" not in text and "x" * 40 not in text


async def test_directory_writes_are_audited_with_who_made_them(site):
    auth = {"Content-Type": "application/yaml"}
    assert await site.send("POST", "/api/v1/directory/import", data=DIRECTORY.encode(), headers=auth) == 200
    assert await site.send("POST", "/api/v1/directory/import", data=DIRECTORY.encode(), headers=auth) == 200
    (imported,) = await site.audited("directory.import")  # the second import changed nothing
    assert imported.actor == site.admin_who and imported.detail == {"regions.inserted": 3}

    person = {"name": "张三", "region": VILLAGE, "roles": ["grid_responsible"], "phone": "+8613800000001"}
    assert await site.send("PUT", "/api/v1/directory/people/p1", json=person) == 200
    assert await site.send("PUT", "/api/v1/directory/people/p1", json=person) == 200  # unchanged: no entry
    assert await site.send("PUT", "/api/v1/directory/people/p1", json=person | {"phone": "+8613800000099"}) == 200
    put = await site.audited("directory.put")
    assert [(e.actor, e.subject, e.detail) for e in put] == [
        (site.admin_who, "people:p1", {"kind": "people", "key": "p1", "outcome": "inserted"}),
        (site.admin_who, "people:p1", {"kind": "people", "key": "p1", "outcome": "updated", "fields": ["phone"]})]
    assert "+8613800000099" not in json.dumps([e.detail for e in put])  # names of fields, not their values

    assert await site.send("DELETE", "/api/v1/directory/regions/" + COUNTY) == 400  # still in use: refused
    assert await site.send("DELETE", "/api/v1/directory/people/p1") == 204
    assert await site.send("DELETE", "/api/v1/directory/people/p1") == 404
    (deleted,) = await site.audited("directory.delete")
    assert (deleted.actor, deleted.subject, deleted.detail) == (site.admin_who, "people:p1",
                                                                {"kind": "people", "key": "p1"})

    await site.node.directory.put_person(Person("p2", "李四", VILLAGE, ("liaison",), "+8613800000002"))
    assert (await site.audited("directory.put"))[-1].actor == "cli"  # the CLI's and feeds' default
    assert (await audit.check(site.node.db)).intact


async def test_an_alarm_acknowledgement_is_audited_once(site):
    async with site.node.db.write() as conn:
        alarm_id = (await conn.execute(sa.insert(alarms).values(
            at=site.clock.now(), code="grid.unconfirmed", warning_id=7, grid=G, detail={})
            .returning(alarms.c.id))).scalar_one()
    for _ in range(2):  # the second changes nothing: no entry
        assert await site.send("POST", f"/api/v1/alarms/{alarm_id}/acknowledge") == 200
    (entry,) = await site.audited("alarm.acknowledge")
    assert (entry.actor, entry.subject, entry.detail) == (site.admin_who, f"alarm:{alarm_id}",
                                                          {"code": "grid.unconfirmed", "warning_id": 7, "grid": G})


async def _red_warning(site: Site) -> int:
    await site.node.directory.import_data(DirectoryData(
        regions=(Region(COUNTY, "示例县", "county"), Region(TOWNSHIP, "城关镇", "township", COUNTY),
                 Region(VILLAGE, "河口村", "village", TOWNSHIP), Region(G, "一组", "grid", VILLAGE)),
        people=(Person("resp", "张三", G, ("grid_responsible",), "+8613800000001", backup="back"),
                Person("back", "李四", G, ("liaison",), "+8613800000002")),
        households=(Household("h1", G, "河口村一组1号", "+8613900000001"),
                    Household("h2", G, "河口村一组2号", None, vulnerable=True))))
    submitted, _ = await site.node.intake.submit(alert_to_xml(alert("W1", codes=(VILLAGE,))).encode(),
                                                 "application/cap+xml", admin_scope())
    return submitted.warning_id


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


async def test_a_link_confirmation_is_audited_with_the_person_as_actor(site):
    wid = await _red_warning(site)
    path = _path(site.node.link_url("confirm", f"{wid}/resp"))
    async with site.client.get(path) as resp:  # a GET (a link scanner) confirms nothing, records nothing
        assert resp.status == 200
    assert await site.audited("confirmation.link") == []
    site.clock.advance(60)
    assert await site.send("POST", path, auth=False) == 200
    (entry,) = await site.audited("confirmation.link")
    assert entry.actor == "resp" and entry.at == site.clock.now()
    assert entry.detail["person_id"] == "resp" and entry.detail["channel"] == "link" and entry.detail["confirmed"]
    assert (await audit.check(site.node.db)).intact


async def test_door_to_door_marks_are_audited_with_the_assignee_as_actor(site):
    await _red_warning(site)
    site.clock.advance(10.1 * 60)  # the default red ladder's door-to-door rung
    await site.node.escalate()
    async with site.node.db.read() as conn:
        (cl,) = (await conn.execute(sa.select(call_lists))).all()
    found = await _call_list_items(site, cl.id)
    path = _path(site.node.link_url("call-list", str(cl.id)))
    # not at home is not told: the list completes only when that household is told on a revisit
    for item, mark in zip([*found, found[0]], ("not_home", "notified", "notified")):
        assert await site.send("POST", f"{path}/items/{item}", data={"mark": mark}, auth=False) == 303
    assert await site.send("POST", f"{path}/items/99999", data={"mark": "notified"},
                           auth=False) == 404  # no such item: nothing recorded
    marks = await site.audited("door.mark")
    assert [(e.actor, e.subject, e.detail["item_id"], e.detail["mark"], e.detail["completed"]) for e in marks] == [
        ("back", f"call_list:{cl.id}", found[0], "not_home", False),
        ("back", f"call_list:{cl.id}", found[1], "notified", False),
        ("back", f"call_list:{cl.id}", found[0], "notified", True)]


async def _call_list_items(site: Site, list_id: int) -> list[int]:
    from warnd.store.call_lists import CallListStore
    found = await CallListStore(site.node.db).get(list_id)
    assert found is not None and found.assignee_id == "back"
    return [i.id for i in found.items]
