"""The operator console's pages at /console/ and its static files.

Every page is a small HTML shell rendered here (labels in zh-CN or English,
who is logged in, nothing else); its data comes from the REST API through the
page's own script, with the console session's cookie and CSRF token. So every
action the console offers goes through the same authority checks, problem
codes and audit as a department's API call, and no page holds data the API
would not give its reader.

A page needs a live session (otherwise 303 to the login page) and, for some
pages, a right (otherwise a 403 page): the API checks again on every call.
Scripts and styles come only from /console/static (CSP `script-src 'self'`,
no inline script, no CDN); the JSON the page starts from sits in a
`<script type="application/json">` island, which a browser never runs.
"""
from __future__ import annotations

import hashlib
import json
import mimetypes
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote, urlsplit

from aiohttp import web

from warnd.domain.authority import Right, Scope
from warnd.domain.model import Level
from warnd.http.auth import SESSION_COOKIE
from warnd.http.keys import NODE
from warnd.render import environment

STATIC = Path(__file__).parent / "static"
LANG_COOKIE = "warnd_lang"
LEVEL_COLOURS = {"red": "#c8102e", "orange": "#e86a00", "yellow": "#f2c200", "blue": "#1f5fbf"}
ROLE_NAMES = {"admin": ("管理员", "administrator"), "approver": ("签发人", "approver"),
              "operator": ("值班员", "operator"), "editor": ("制作", "editor"), "viewer": ("查看", "viewer"),
              "department": ("部门", "department")}
LEVEL_NAMES = {lv.label: {"zh-CN": lv.zh, "en": lv.label} for lv in Level}
TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".png": "image/png",
         ".svg": "image/svg+xml", ".json": "application/json", ".txt": "text/plain"}


@dataclass(frozen=True)
class Page:
    name: str  # its template (templates/console/<name>.html.j2) and script (static/js/<name>.js)
    path: str
    title_zh: str
    title_en: str
    right: Right | None = None  # None: any logged-in person
    nav: bool = True  # listed in the top bar


PAGES = (
    Page("warnings", "/console/warnings", "预警列表", "Warnings"),
    Page("compose", "/console/compose", "制作预警", "Compose", Right.SUBMIT),
    Page("approvals", "/console/approvals", "签发", "Approvals", Right.APPROVE),
    Page("directory", "/console/directory", "名录", "Directory"),
    Page("warning", "/console/warnings/{id:[0-9]{1,18}}", "预警实况", "Live view", nav=False),
    Page("report", "/console/warnings/{id:[0-9]{1,18}}/report", "报告", "Report", nav=False),
)


def _csp(tile_url: str | None) -> str:
    images = "'self' data: blob:"
    if tile_url:  # only the tile server's host may serve images ({s}.tiles… → *.tiles…)
        parts = urlsplit(tile_url)
        images += f" {parts.scheme}://{parts.netloc.replace('{s}', '*')}"
    return (f"default-src 'none'; script-src 'self'; style-src 'self'; img-src {images}; connect-src 'self'; "
            "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def _headers(tile_url: str | None) -> dict[str, str]:
    return {"Content-Security-Policy": _csp(tile_url), "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
            "X-Robots-Tag": "noindex, nofollow"}


def language(request: web.Request) -> str:
    """`?lang=` wins (and is kept in a cookie); then the cookie; then Accept-Language; zh-CN first."""
    chosen = request.query.get("lang", "") or request.cookies.get(LANG_COOKIE, "")
    if chosen:
        return "en" if chosen.lower().startswith("en") else "zh-CN"
    return "en" if request.headers.get("Accept-Language", "").lower().startswith("en") else "zh-CN"


@lru_cache(maxsize=1)
def static_version() -> str:
    """One digest of every static file: asset URLs change when any file does (no stale cache)."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(STATIC).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _render(request: web.Request, template: str, status: int = 200, **context: object) -> web.Response:
    node = request.app[NODE]
    lang = language(request)
    console = node.config.console

    def L(zh: str, en: str) -> str:  # noqa: N802 - the templates' one-word translation helper
        return zh if lang == "zh-CN" else en

    boot = {"lang": lang, "timezone": node.config.display_timezone, "tile_url": console.tile_url,
            "tile_attribution": console.tile_attribution, "levels": LEVEL_COLOURS, "level_names": LEVEL_NAMES,
            **context.pop("boot", {})}
    html = environment().get_template(f"console/{template}.html.j2").render(
        L=L, lang=lang, other_lang="en" if lang == "zh-CN" else "zh-CN", path=request.path,
        query=request.query_string, pages=PAGES, role_names=ROLE_NAMES, static=lambda p: f"/console/static/{p}?v={static_version()}",
        boot_json=json.dumps(boot, ensure_ascii=False).replace("</", "<\\/"), **context)
    response = web.Response(text=html, status=status, content_type="text/html", charset="utf-8",
                            headers=_headers(console.tile_url))
    if "lang" in request.query:
        response.set_cookie(LANG_COOKIE, lang, path="/console/", samesite="Strict", max_age=365 * 86400)
    return response


async def _session_scope(request: web.Request) -> Scope | None:
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    found = await request.app[NODE].users.session(session_id)
    return found[0] if found else None


def _user(scope: Scope) -> dict:
    return {"name": scope.user, "role": scope.role.value, "department": scope.department,
            "rights": sorted(r.value for r in Right if scope.can(r))}


def _page_handler(page: Page):  # noqa: ANN202 - an aiohttp handler
    async def handler(request: web.Request) -> web.Response:
        scope = await _session_scope(request)
        if scope is None:
            target = request.path_qs
            raise web.HTTPSeeOther(f"/console/login?next={quote(target, safe='')}",
                                   headers={"Cache-Control": "no-store"})
        user = _user(scope)
        visible = [p for p in PAGES if p.nav and (p.right is None or scope.can(p.right))]
        if page.right is not None and not scope.can(page.right):
            return _render(request, "forbidden", status=403, page=page, user=user, nav=visible,
                           boot={"user": user, "page": page.name})
        ids = {k: int(v) for k, v in request.match_info.items()}
        return _render(request, page.name, page=page, user=user, nav=visible, ids=ids,
                       boot={"user": user, "page": page.name, **ids})
    return handler


async def login_page(request: web.Request) -> web.Response:
    target = request.query.get("next", "")
    if not target.startswith("/console/") or target.startswith("//"):  # never an open redirect
        target = "/console/warnings"
    return _render(request, "login", page=None, user=None, nav=[], boot={"next": target})


async def home(request: web.Request) -> web.Response:
    raise web.HTTPFound("/console/warnings")


async def static_file(request: web.Request) -> web.StreamResponse:
    relative = request.match_info["path"]
    path = (STATIC / relative).resolve()
    if not path.is_relative_to(STATIC.resolve()) or not path.is_file() or ".." in relative.split("/"):
        raise web.HTTPNotFound()
    kind = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
               "Content-Type": kind + ("; charset=utf-8" if kind.startswith("text/") else "")}
    return web.FileResponse(path, headers=headers)


def routes() -> list[web.RouteDef]:
    out = [web.get("/console", home), web.get("/console/", home), web.get("/console/login", login_page),
           web.get("/console/static/{path:.+}", static_file)]
    return out + [web.get(p.path, _page_handler(p)) for p in PAGES]
