"""Operator accounts: argon2id passwords, console sessions, CSRF, timeouts, lockout, audit.

Real parts throughout: a migrated SQLite file and a fresh PostgreSQL database,
the aiohttp app on a real server, the `warnd` command through click. Time is a
ManualClock the node reads, so timeouts pass without waiting.
"""
from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
import yaml
from aiohttp import CookieJar
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from warnd.cli import main
from warnd.config import AccountsConfig, load_config
from warnd.domain.errors import WarndError
from warnd.engine.node import Node
from warnd.http.app import build_app
from warnd.http.ops_api import openapi_text
from warnd.http.session_api import routes as session_routes
from warnd.store import audit
from warnd.store.migrate import upgrade
from warnd.store.schema import audit as audit_log, users as users_table
from warnd.store.users import UserStore

PASSWORD = "correct horse battery"
SENDER = "weather@421126.example.cn"


async def _serve(url: str, clock=None, **config) -> tuple[Node, TestClient]:  # noqa: ANN001
    node = Node(load_config(None, database_url=url, **config), clock=clock)
    client = TestClient(TestServer(build_app(node)), cookie_jar=CookieJar(unsafe=True))
    await client.start_server()
    return node, client


@pytest.fixture
async def console(db_url, clock):
    upgrade(db_url)
    node, client = await _serve(db_url, clock)
    yield node, client
    await client.close()
    await node.stop()


async def _login(client: TestClient, name: str, password: str = PASSWORD):  # noqa: ANN202
    resp = await client.post("/api/v1/session", json={"name": name, "password": password})
    return resp, await resp.json(content_type=None)


async def _whoami(client: TestClient, **headers: str) -> tuple[int, dict]:
    resp = await client.get("/api/v1/session", headers=headers)
    return resp.status, await resp.json(content_type=None)


async def _actions(node: Node) -> list[tuple[str, str, str, dict]]:
    a = audit_log.c
    async with node.db.read() as conn:
        rows = (await conn.execute(sa.select(a.actor, a.action, a.subject, a.detail).order_by(a.id))).all()
    return [tuple(r) for r in rows]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- the store --

async def test_passwords_are_argon2id_and_never_listed(database, clock):
    store = UserStore(database, clock, AccountsConfig())
    info = await store.create("zhang.san", "operator", "县应急局", PASSWORD, senders=[SENDER],
                              display_name="张三")
    async with database.read() as conn:
        stored = (await conn.execute(sa.select(users_table.c.password_hash))).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert "password_hash" not in info.json() and all("password" not in k for k in info.json())
    assert [u.name for u in await store.list()] == ["zhang.san"]
    scope = await store.scope("zhang.san")
    assert (scope.user, scope.actor, scope.role.value, scope.senders) == ("zhang.san", "user:zhang.san",
                                                                          "operator", (SENDER,))
    assert await store.scope("nobody") is None


@pytest.mark.parametrize("kwargs, field", [
    ({"name": "Zhang"}, "name"), ({"name": "x"}, "name"), ({"name": "a" * 65}, "name"),
    ({"password": "short9char"[:9]}, "password"), ({"role": "department"}, "role"), ({"role": "god"}, "role"),
    ({"role": "editor", "senders": [SENDER], "department": None}, "department"),
    ({"role": "editor", "senders": []}, "senders"), ({"max_level": "purple"}, "max_level"),
])
async def test_invalid_accounts_are_refused_naming_the_field(database, clock, kwargs, field):
    store = UserStore(database, clock, AccountsConfig())
    args = {"name": "li.si", "role": "viewer", "department": "县气象局", "password": PASSWORD, **kwargs}
    with pytest.raises(WarndError) as caught:
        await store.create(args.pop("name"), args.pop("role"), args.pop("department"), args.pop("password"),
                           **args)
    assert caught.value.code == "request.invalid" and caught.value.problems[0].field == field
    assert await store.list() == []


async def test_a_name_is_taken_once(database, clock):
    store = UserStore(database, clock, AccountsConfig())
    await store.create("li.si", "viewer", None, PASSWORD)
    with pytest.raises(WarndError) as caught:
        await store.create("li.si", "admin", None, PASSWORD)
    assert caught.value.problems[0].field == "name"
    assert [(u.name, u.role) for u in await store.list()] == [("li.si", "viewer")]


# -- logins over HTTP --

async def test_login_sets_a_strict_http_only_cookie_and_tells_who_i_am(console):
    node, client = console
    await node.users.create("zhang", "operator", "县应急局", PASSWORD, senders=[SENDER])
    resp, body = await _login(client, "zhang")
    assert resp.status == 200, body
    assert body["user"] == "zhang" and body["role"] == "operator" and body["department"] == "县应急局"
    assert len(body["csrf_token"]) >= 32
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("warnd_session=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # public_base_url is http here
    session_id = resp.cookies["warnd_session"].value
    async with node.db.read() as conn:
        stored = (await conn.execute(sa.text("SELECT id_hash FROM sessions"))).scalar_one()
    assert stored != session_id and len(stored) == 64  # only the hash
    assert await _whoami(client) == (200, body)


async def test_secure_cookie_follows_the_public_url_unless_configured(tmp_path, clock):
    url = f"sqlite:///{tmp_path / 'secure.db'}"
    upgrade(url)
    for config, secure in (({"public_base_url": "https://warn.example.cn"}, True),
                           ({"public_base_url": "https://warn.example.cn", "accounts": {"cookie_secure": False}},
                            False),
                           ({"accounts": {"cookie_secure": True}}, True)):
        node, client = await _serve(url, clock, **config)
        try:
            if not await node.users.list():
                await node.users.create("zhang", "viewer", None, PASSWORD)
            resp, _ = await _login(client, "zhang")
            assert resp.status == 200 and ("Secure" in resp.headers["Set-Cookie"]) is secure, config
        finally:
            await client.close()
            await node.stop()


async def test_wrong_password_unknown_and_disabled_users_look_the_same(console):
    node, client = console
    await node.users.create("zhang", "viewer", None, PASSWORD)
    await node.users.create("gone", "viewer", None, PASSWORD)
    await node.users.disable("gone")
    wrong, unknown, disabled = [await _login(client, *args) for args in
                                (("zhang", "not the password"), ("nobody", PASSWORD), ("gone", PASSWORD))]
    assert wrong[0].status == unknown[0].status == disabled[0].status == 401
    assert wrong[1] == unknown[1] == disabled[1] and wrong[1]["code"] == "auth.login_failed"
    assert "Set-Cookie" not in wrong[0].headers
    failures = [(actor, subject, detail["reason"]) for actor, action, subject, detail in await _actions(node)
                if action == "user.login_failed"]
    assert failures == [("ip:127.0.0.1", "user:zhang", "password"), ("ip:127.0.0.1", "user:nobody", "unknown"),
                        ("ip:127.0.0.1", "user:gone", "disabled")]


async def test_five_failures_lock_the_account_until_the_lockout_passes(console, clock):
    node, client = console
    await node.users.create("zhang", "viewer", None, PASSWORD)
    statuses = [(await _login(client, "zhang", f"wrong password {i}"))[0].status for i in range(5)]
    assert statuses == [401, 401, 401, 401, 429]
    resp, problem = await _login(client, "zhang")
    assert (resp.status, problem["code"]) == (429, "auth.locked")
    assert "15" in problem["detail"]  # minutes left, in the reader's language
    clock.advance(15 * 60 - 1)
    assert (await _login(client, "zhang"))[0].status == 429
    clock.advance(2)
    resp, body = await _login(client, "zhang")
    assert resp.status == 200 and body["user"] == "zhang"
    # a success starts the count again: four more failures do not lock
    for i in range(4):
        assert (await _login(client, "zhang", f"wrong again {i}"))[0].status == 401
    assert (await _login(client, "zhang"))[0].status == 200

    entries = [(action, detail.get("reason")) for _, action, subject, detail in await _actions(node)
               if subject == "user:zhang"]
    assert entries == ([("user.create", None)] + [("user.login_failed", "password")] * 5 + [("user.locked", None)]
                       + [("user.login_failed", "locked")] * 2 + [("user.login", None)]
                       + [("user.login_failed", "password")] * 4 + [("user.login", None)])
    assert await audit.verify(node.db) is None
    info = (await node.users.list())[0]
    assert info.failed_logins == 0 and info.last_login_at == clock.now()


async def test_a_cookie_session_changes_nothing_without_its_csrf_token(console):
    node, client = console
    await node.users.create("boss", "admin", "预警中心", PASSWORD, senders=["*"])
    _, me = await _login(client, "boss")
    new_user = {"name": "wang", "role": "editor", "department": "县水利局", "password": PASSWORD,
                "senders": ["water@421126.example.cn"], "events": ["山洪"], "max_level": "orange"}
    for headers in ({}, {"X-CSRF-Token": "not-the-token"}, {"X-CSRF-Token": me["csrf_token"][:-1]}):
        resp = await client.post("/api/v1/users", json=new_user, headers=headers)
        problem = await resp.json(content_type=None)
        assert (resp.status, problem["code"]) == (403, "auth.csrf"), headers
    assert [u.name for u in await node.users.list()] == ["boss"]
    resp = await client.post("/api/v1/users", json=new_user, headers={"X-CSRF-Token": me["csrf_token"]})
    created = await resp.json()
    assert resp.status == 201, created
    assert created["name"] == "wang" and created["max_level"] == "orange" and created["events"] == ["山洪"]
    listed = await client.get("/api/v1/users")  # reading needs no CSRF token
    items = (await listed.json())["items"]
    assert listed.status == 200 and [u["name"] for u in items] == ["boss", "wang"]
    assert not any("password" in key for item in items for key in item)
    assert PASSWORD not in await listed.text() and "$argon2" not in await listed.text()
    actions = [(actor, action, subject) for actor, action, subject, _ in await _actions(node)]
    assert ("user:boss", "user.create", "user:wang") in actions


async def test_only_managers_manage_accounts(console):
    node, client = console
    await node.users.create("zhang", "operator", "县应急局", PASSWORD, senders=[SENDER])
    _, me = await _login(client, "zhang")
    resp = await client.get("/api/v1/users")
    assert (resp.status, (await resp.json(content_type=None))["code"]) == (403, "auth.forbidden")
    resp = await client.post("/api/v1/users/zhang/disable", headers={"X-CSRF-Token": me["csrf_token"]})
    assert resp.status == 403
    assert (await node.users.scope("zhang")) is not None


async def test_idle_and_maximum_session_lifetimes(console, clock):
    node, client = console
    await node.users.create("zhang", "viewer", None, PASSWORD)
    await _login(client, "zhang")
    for _ in range(2):  # used within 30 minutes: still alive
        clock.advance(29 * 60)
        assert (await _whoami(client))[0] == 200
    clock.advance(30 * 60)
    status, problem = await _whoami(client)
    assert (status, problem["code"]) == (401, "auth.session_expired")

    await _login(client, "zhang")
    for _ in range(35):  # busy all day: 11 h 40 min
        clock.advance(20 * 60)
        assert (await _whoami(client))[0] == 200
    clock.advance(20 * 60)  # 12 h after the login
    assert (await _whoami(client))[0] == 401
    await _login(client, "zhang")  # one live session left; the two that ended are forgotten
    assert await node.users.purge_sessions() == 2
    assert (await _whoami(client))[0] == 200


async def test_logout_ends_the_session_and_needs_csrf(console):
    node, client = console
    await node.users.create("zhang", "viewer", None, PASSWORD)
    resp, me = await _login(client, "zhang")
    session_id = resp.cookies["warnd_session"].value
    assert (await client.delete("/api/v1/session")).status == 403
    resp = await client.delete("/api/v1/session", headers={"X-CSRF-Token": me["csrf_token"]})
    assert resp.status == 204
    assert "warnd_session=" in resp.headers["Set-Cookie"]  # cleared in the browser
    assert (await _whoami(client))[0] == 401
    status, problem = await _whoami(client, Cookie=f"warnd_session={session_id}")  # replayed: still over
    assert (status, problem["code"]) == (401, "auth.session_expired")
    assert await node.users.session(session_id) is None
    assert [(a, s) for _, a, s, _ in await _actions(node)][-1] == ("user.logout", "user:zhang")


async def test_disabling_a_user_ends_their_session_and_tokens_at_once(console):
    node, client = console
    await node.users.create("boss", "admin", "预警中心", PASSWORD, senders=["*"])
    await node.users.create("zhang", "operator", "县应急局", PASSWORD, senders=[SENDER])
    boss_token = await node.tokens.create(await node.users.scope("boss"), user_name="boss")
    zhang_token = await node.tokens.create(await node.users.scope("zhang"), user_name="zhang", label="script")
    await _login(client, "zhang")
    assert (await _whoami(client))[1]["user"] == "zhang"
    status, me = await _whoami(client, **_bearer(zhang_token))
    assert status == 200 and (me["user"], me["role"], me["csrf_token"]) == ("zhang", "operator", None)

    resp = await client.post("/api/v1/users/zhang/disable", headers=_bearer(boss_token))  # a token: no CSRF
    assert resp.status == 200 and (await resp.json())["changed"] is True
    assert (await _whoami(client))[0] == 401
    status, problem = await _whoami(client, **_bearer(zhang_token))
    assert (status, problem["code"]) == (401, "auth.invalid")
    assert (await _login(client, "zhang"))[0].status == 401
    disable = [(actor, detail) for actor, action, _, detail in await _actions(node) if action == "user.disable"]
    assert disable == [("user:boss", {"sessions_ended": 1, "tokens_revoked": 1})]
    resp = await client.post("/api/v1/users/nobody/disable", headers=_bearer(boss_token))
    assert resp.status == 404


async def test_a_new_password_unlocks_and_ends_sessions(console):
    node, client = console
    await node.users.create("zhang", "viewer", None, PASSWORD)
    resp, _ = await _login(client, "zhang")
    session_id = resp.cookies["warnd_session"].value
    for i in range(5):
        await _login(client, "zhang", f"wrong password {i}")
    await node.users.set_password("zhang", "a brand new secret", actor="user:boss")
    assert await node.users.session(session_id) is None
    assert (await _login(client, "zhang"))[0].status == 401
    assert (await _login(client, "zhang", "a brand new secret"))[0].status == 200
    assert ("user:boss", "user.password") in [(actor, action) for actor, action, _, _ in await _actions(node)]


async def test_login_takes_only_json(console):
    node, client = console
    await node.users.create("zhang", "viewer", None, PASSWORD)
    resp = await client.post("/api/v1/session", data=f'{{"name": "zhang", "password": "{PASSWORD}"}}',
                             headers={"Content-Type": "text/plain"})  # what a cross-site form can send
    assert resp.status == 400 and "Set-Cookie" not in resp.headers
    resp = await client.post("/api/v1/session", json={"name": "zhang"})
    assert resp.status == 400 and (await resp.json(content_type=None))["errors"][0]["field"] == "password"


# -- the command --

def test_cli_creates_a_user_whose_token_carries_their_role(db_url):
    upgrade(db_url)
    runner = CliRunner()
    db = ["--database-url", db_url]
    created = runner.invoke(main, ["user", "create", "li.si", "--role", "editor", "--department", "县气象局",
                                   "--sender", SENDER, "--events", "暴雨,大风", "--max-level", "orange",
                                   "--display-name", "李四", *db], input=PASSWORD + "\nignored\n")
    assert created.exit_code == 0, created.output
    refused = runner.invoke(main, ["user", "create", "wang", "--role", "viewer", *db], input="short\n")
    assert refused.exit_code != 0 and "password" in refused.output
    listed = runner.invoke(main, ["user", "list", *db])
    assert listed.exit_code == 0 and "li.si\teditor\t县气象局\t李四\tactive" in listed.output
    assert "wang" not in listed.output
    issued = runner.invoke(main, ["user", "token", "li.si", "--label", "script", "--expires-days", "30", *db])
    assert issued.exit_code == 0, issued.output
    token = issued.output.strip()
    assert token.startswith("wdt_") and "\n" not in token

    async def check(expect: int) -> dict:
        node, client = await _serve(db_url)
        try:
            status, me = await _whoami(client, **_bearer(token))
            assert status == expect, me
            if status == 200:
                assert (await client.get("/api/v1/users", headers=_bearer(token))).status == 403  # an editor
            return me
        finally:
            await client.close()
            await node.stop()

    me = asyncio.run(check(200))
    assert (me["user"], me["role"], me["department"]) == ("li.si", "editor", "县气象局")
    changed = runner.invoke(main, ["user", "password", "li.si", *db], input="another long secret\n")
    assert changed.exit_code == 0, changed.output
    disabled = runner.invoke(main, ["user", "disable", "li.si", *db])
    assert disabled.exit_code == 0 and "disabled" in disabled.output
    asyncio.run(check(401))
    assert runner.invoke(main, ["user", "token", "li.si", *db]).exit_code != 0
    assert runner.invoke(main, ["user", "disable", "nobody", *db]).exit_code != 0


@pytest.mark.parametrize("args", [["user"], ["user", "create"], ["user", "list"], ["user", "disable"],
                                  ["user", "password"], ["user", "token"]])
def test_user_commands_have_help_in_both_languages(args):
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output
    assert any("\u4e00" <= ch <= "\u9fff" for ch in result.output)
    if args != ["user"]:
        assert "--database-url" in result.output and "--config" in result.output


# -- configuration and description --

def test_accounts_configuration_is_validated():
    config = load_config(None, accounts={"idle_minutes": 5, "max_failed_logins": 3})
    assert (config.accounts.idle_minutes, config.accounts.max_failed_logins, config.accounts.max_hours) == (5, 3, 12)
    for bad in ({"idle_minutes": 0}, {"max_failed_logins": 0}, {"lockout": 5}):
        with pytest.raises(WarndError):
            load_config(None, accounts=bad)


def test_openapi_describes_the_session_and_users_routes():
    from openapi_spec_validator import validate
    spec = yaml.safe_load(openapi_text())
    validate(spec)
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert {(r.method, r.path) for r in session_routes()} <= documented
    assert spec["components"]["securitySchemes"]["session"]["name"] == "warnd_session"
