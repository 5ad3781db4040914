"""The console's pages over real HTTP, without a browser: a page without a session sends the
browser to the login page (303, the page kept in ?next); a page needing a right the person
lacks is a 403 page; every page carries the strict CSP and renders no inline script, no
inline style and no on*= handler; static files are served with nosniff and never from
outside the static folder; ?next never sends the browser to another site."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
from aiohttp import CookieJar
from aiohttp.test_utils import TestClient, TestServer
from console_site import DIRECTORY

from warnd.config import load_config
from warnd.engine.node import Node
from warnd.http.app import build_app
from warnd.ingest.directory import load_directory
from warnd.store.migrate import upgrade

PASSWORD = "console-pages-password"
ROLES = {"admin": "admin", "approver": "approver", "operator": "operator", "editor": "editor", "viewer": "viewer"}


@pytest.fixture
async def console(tmp_path):
    url = f"sqlite:///{tmp_path / 'warnd.db'}"
    upgrade(url)
    config = load_config(None, database_url=url, public_base_url="http://127.0.0.1:8080",
                         accounts={"cookie_secure": False}, webhook={"enabled": False})
    node = Node(config)
    await node.start(dispatch=False)
    await node.directory.import_data(load_directory([DIRECTORY]))
    servers, made = [], set()

    async def client(who: str | None = None) -> TestClient:
        c = TestClient(TestServer(build_app(node)), cookie_jar=CookieJar(unsafe=True))
        await c.start_server()
        servers.append(c)
        if who:
            if who not in made:  # only the accounts a test uses (hashing a password takes a while)
                await node.users.create(who, ROLES[who], "县气象局", PASSWORD, senders=["qx@example.cn"])
                made.add(who)
            async with c.post("/api/v1/session", json={"name": who, "password": PASSWORD}) as resp:
                assert resp.status == 200, await resp.text()
        return c

    yield client
    for c in servers:
        await c.close()
    await node.stop()


PAGES = ["/console/warnings", "/console/compose", "/console/approvals", "/console/directory",
         "/console/warnings/1", "/console/warnings/1/report"]


async def test_a_page_without_a_session_is_a_303_to_the_login_page_keeping_the_page(console):
    c = await console()
    for path in PAGES + ["/console/compose?update=1"]:
        async with c.get(path, allow_redirects=False) as resp:
            assert resp.status == 303, path
            location = resp.headers["Location"]
            assert location.startswith("/console/login?next="), location
            assert "no-store" in resp.headers["Cache-Control"]
    async with c.get("/console/compose?update=1", allow_redirects=False) as resp:
        location = urlsplit(resp.headers["Location"])
        assert (location.path, parse_qs(location.query)) == ("/console/login", {"next": ["/console/compose?update=1"]})
    async with c.get("/console/", allow_redirects=True) as resp:  # the home page is the list: log in first
        assert resp.status == 200 and (resp.url.path, resp.url.query.get("next")) == ("/console/login", "/console/warnings")


async def test_a_missing_right_is_a_403_page_in_both_languages(console):
    viewer = await console("viewer")
    for path, right in (("/console/compose", "submit"), ("/console/approvals", "approve")):
        async with viewer.get(path) as resp:
            assert resp.status == 403, path
            html = await resp.text()
            assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
            assert "<main" in html and 'lang="zh-CN"' in html
    async with viewer.get("/console/compose?lang=en") as resp:
        assert resp.status == 403 and 'lang="en"' in await resp.text()
    editor = await console("editor")  # may compose, may not approve
    async with editor.get("/console/compose") as resp:
        assert resp.status == 200
    async with editor.get("/console/approvals") as resp:
        assert resp.status == 403
    for path in ("/console/warnings", "/console/directory", "/console/warnings/1", "/console/warnings/1/report"):
        async with viewer.get(path) as resp:
            assert resp.status == 200, path


class Scan(HTMLParser):
    """Every <script>, every attribute that runs or styles inline."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict] = []
        self.inline: list[str] = []
        self._in_script: dict | None = None

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        a = dict(attrs)
        for name, value in attrs:
            if name.startswith("on") or name == "style" or (value or "").strip().lower().startswith("javascript:"):
                self.inline.append(f"<{tag} {name}={value!r}>")
        if tag == "script":
            self._in_script = {**a, "text": ""}
            self.scripts.append(self._in_script)
        if tag == "style":
            self.inline.append("<style>")

    def handle_data(self, data):  # noqa: ANN001
        if self._in_script is not None:
            self._in_script["text"] += data

    def handle_endtag(self, tag):  # noqa: ANN001
        if tag == "script":
            self._in_script = None


CSP = ("default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'",
       "form-action 'self'", "base-uri 'none'", "connect-src 'self'")


@pytest.mark.parametrize("who", ["admin", "viewer"])
async def test_every_page_has_the_strict_csp_and_no_inline_script_or_style(console, who):
    c = await console(who)
    anonymous = await console()
    answers = [(path, await c.get(path)) for path in PAGES + ["/console/compose?lang=en"]]
    answers.append(("/console/login", await anonymous.get("/console/login")))
    for path, resp in answers:
        async with resp:
            assert resp.status in (200, 403), path
            policy = resp.headers["Content-Security-Policy"]
            for part in CSP:
                assert part in policy, (path, policy)
            assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, policy
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert resp.headers["X-Frame-Options"] == "DENY"
            scan = Scan()
            scan.feed(await resp.text())
            assert not scan.inline, (path, scan.inline)
            modules = [s for s in scan.scripts if s.get("src")]
            assert modules and all(s["src"].startswith("/console/static/") and not s["text"].strip()
                                   for s in modules), (path, modules)
            islands = [s for s in scan.scripts if not s.get("src")]
            assert all(s.get("type") == "application/json" for s in islands), (path, islands)  # data, never run
            for island in islands:
                boot = json.loads(island["text"])
                assert "password" not in json.dumps(boot) and "csrf" not in json.dumps(boot).lower(), boot


async def test_the_boot_island_cannot_end_its_script_element(console):
    """A name with </script> in it stays inside the JSON island."""
    c = await console()
    async with c.get("/console/login?next=/console/warnings</script><script>alert(1)</script>") as resp:
        html = await resp.text()
    scan = Scan()
    scan.feed(html)
    assert all(s.get("src") or s.get("type") == "application/json" for s in scan.scripts), scan.scripts
    assert len(scan.scripts) == 2, scan.scripts  # the island and the page's module: nothing broke out
    (island,) = [s for s in scan.scripts if not s.get("src")]
    assert json.loads(island["text"])["next"] == "/console/warnings</script><script>alert(1)</script>"


async def test_static_files_are_served_with_nosniff_and_never_from_outside(console):
    c = await console()
    for path, kind in (("/console/static/js/common.js", "text/javascript"), ("/console/static/console.css", "text/css")):
        async with c.get(path) as resp:
            assert resp.status == 200, path
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert resp.headers["Content-Type"].startswith(kind), resp.headers["Content-Type"]
    for path in ("/console/static/../pages.py", "/console/static/js/../../pages.py",
                 "/console/static/%2e%2e/pages.py", "/console/static/js/%2E%2E/%2E%2E/pages.py",
                 "/console/static/..%2fpages.py", "/console/static/js/..%2f..%2fpages.py",
                 "/console/static/%2e%2e%2f%2e%2e%2f%2e%2e%2fconfig.py", "/console/static//etc/passwd",
                 "/console/static/js/", "/console/static/nothing-here.js"):
        async with c.get(path, allow_redirects=False) as resp:
            body = await resp.read()
            assert resp.status in (400, 403, 404), (path, resp.status)
            assert b"import" not in body and b"root:" not in body, path


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/console/", "/\\evil.example",
                                    "javascript:alert(1)", "/api/v1/session", "http://127.0.0.1:8080/console/x",
                                    "%2F%2Fevil.example", "/console/../api/v1/warnings"])
async def test_the_login_never_sends_the_browser_to_another_site(console, target):
    c = await console()
    async with c.get("/console/login", params={"next": target}) as resp:
        assert resp.status == 200
        html = await resp.text()
    boot = json.loads(re.search(r'<script type="application/json" id="boot">(.*?)</script>', html, re.S).group(1))
    shown = boot["next"]
    assert shown.startswith("/console/") and not shown.startswith("//") and "\\" not in shown, (target, shown)
    assert "evil" not in shown, (target, shown)
    resolved = urlsplit(urljoin("http://127.0.0.1:8080/console/login", shown.replace("\\", "/")))
    assert resolved.netloc == "127.0.0.1:8080" and resolved.scheme == "http", (target, shown)


async def test_the_login_keeps_a_console_page_as_next(console):
    c = await console()
    async with c.get("/console/login", params={"next": "/console/compose?update=3"}) as resp:
        html = await resp.text()
    boot = json.loads(re.search(r'<script type="application/json" id="boot">(.*?)</script>', html, re.S).group(1))
    assert boot["next"] == "/console/compose?update=3"
