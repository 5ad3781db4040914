"""warnd's own CAP feed: an Atom index of the real, public warnings in force, for websites and
aggregators to poll (GET /feeds/cap.atom), each entry linking to its CAP (/feeds/cap/{id}.xml).

Public: no authentication. Only Actual Alerts and Updates in force with CAP scope Public are
listed — never a drill (Exercise/Test), never Restricted or Private, never one awaiting approval,
rejected, superseded, cancelled or expired — and the CAP route serves exactly what the feed lists.
The feed is built with lxml from the stored rows (no XML by string concatenation), at most
FEED_ENTRIES entries, newest first. It carries no "now": the same warnings give the same bytes,
so its ETag is a hash of the body, and Last-Modified is the newest entry's time or the last time
one left the feed (an Update or Cancel published, an expiry passed), whichever is later.
"""
from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime

from aiohttp import web
from lxml import etree

from warnd.domain.errors import WarndError
from warnd.domain.model import Level
from warnd.engine.node import Node
from warnd.http.keys import NODE
from warnd.ingest.capxml import format_datetime as cap_time
from warnd.store.cap_feed import CapFeedStore, FeedWarning

ATOM_NS = "http://www.w3.org/2005/Atom"
ATOM = "application/atom+xml; charset=utf-8"
CAP = "application/cap+xml"
FEED_ENTRIES = 100  # newest first; aggregators expect feeds well under 1 MB
SUMMARY_CHARS = 500
PAGE = 2 * FEED_ENTRIES  # rows read at a time while looking for public ones
MAX_PAGES = 10  # bounds the work of one request however many closed warnings are in force
CACHE_CONTROL = "public, max-age=60"
NEVER = datetime(1970, 1, 1, tzinfo=timezone.utc)  # an empty feed that never changed


def entry_id(sender: str, identifier: str) -> str:
    """A stable Atom id: the same (sender, identifier) is the same entry on every node, always."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'cap:{sender},{identifier}')}"


async def listed(node: Node) -> tuple[list[tuple[FeedWarning, object]], datetime]:
    """The feed's entries as (row, alert), and its last change."""
    store, now = CapFeedStore(node.db), node.clock.now()
    out: list[tuple[FeedWarning, object]] = []
    before = None
    for _ in range(MAX_PAGES):
        page = await store.in_force(now, PAGE, before)
        for row in page:
            alert = (await node.alerts.get(row.id)).alert
            if not alert.drill_or_closed:  # scope Public (the status was checked by the query)
                out.append((row, alert))
        if len(out) >= FEED_ENTRIES or len(page) < PAGE:
            break
        before = (page[-1].updated, page[-1].id)
    out = out[:FEED_ENTRIES]
    removed = await store.last_removal(now)
    changed = max([row.updated for row, _ in out] + ([removed] if removed else []), default=NEVER)
    return out, changed


def _add(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
    if text is not None:
        el.text = text
    return el


def render_feed(base: str, entries: list[tuple[FeedWarning, object]], changed: datetime) -> bytes:
    root = etree.Element(f"{{{ATOM_NS}}}feed", nsmap={None: ATOM_NS})
    _add(root, "id", f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, base + '/feeds/cap.atom')}")
    _add(root, "title", "预警信息 Warnings in force (CAP)")
    _add(root, "updated", cap_time(changed).replace("-00:00", "Z"))
    _add(root, "link", rel="self", type="application/atom+xml", href=f"{base}/feeds/cap.atom")
    _add(_add(root, "author"), "name", "warnd")
    _add(root, "generator", "warnd")
    for row, alert in entries:
        info = alert.info_for("zh-CN")
        level = Level(row.level)
        entry = _add(root, "entry")
        _add(entry, "id", entry_id(row.sender, row.identifier))
        _add(entry, "title", row.headline or f"{row.event}（{level.zh} {level.label}）")
        updated = cap_time(row.updated).replace("-00:00", "Z")
        _add(entry, "updated", updated)
        _add(entry, "published", updated)
        _add(_add(entry, "author"), "name", row.department or (info.sender_name if info else None) or row.sender)
        summary = ((info.description or info.headline or info.event) if info else row.event).strip()
        _add(entry, "summary", summary[:SUMMARY_CHARS])
        _add(entry, "category", term=level.label, label=level.zh)
        _add(entry, "link", rel="alternate", type=CAP, href=f"{base}/feeds/cap/{row.id}.xml")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _not_modified(request: web.Request, etag: str, changed: datetime | None) -> bool:
    """RFC 9110 §13.1: If-None-Match decides when present; else If-Modified-Since (whole seconds)."""
    if (tags := request.headers.get("If-None-Match")) is not None:
        given = [t.strip().removeprefix("W/") for t in tags.split(",")]
        return "*" in given or etag in given
    if (since := request.headers.get("If-Modified-Since")) and changed is not None:
        try:
            at = parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
        at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
        return changed.replace(microsecond=0) <= at
    return False


def _respond(request: web.Request, body: bytes, content_type: str, changed: datetime | None) -> web.Response:
    etag = _etag(body)
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if changed is not None:
        headers["Last-Modified"] = format_datetime(changed.astimezone(timezone.utc), usegmt=True)
    if _not_modified(request, etag, changed):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers={**headers, "Content-Type": content_type})


async def feed(request: web.Request) -> web.Response:
    node = request.app[NODE]
    entries, changed = await listed(node)
    body = render_feed(node.config.public_base_url.rstrip("/"), entries, changed)
    return _respond(request, body, ATOM, changed)


async def cap_xml(request: web.Request) -> web.Response:
    """The stored CAP of a listed warning; anything else is not found (drills, closed scopes,
    warnings no longer in force, ids that never were) — the same answer for each."""
    node = request.app[NODE]
    warning_id = int(request.match_info["id"])
    entries, _ = await listed(node)
    row = next((r for r, _ in entries if r.id == warning_id), None)
    text = await CapFeedStore(node.db).cap_xml(warning_id, node.clock.now()) if row is not None else None
    if text is None:
        raise WarndError("warning.not_found")
    return _respond(request, text.encode("utf-8"), f"{CAP}; charset=utf-8", row.updated)


def routes() -> list[web.RouteDef]:
    return [web.get("/feeds/cap.atom", feed), web.get(r"/feeds/cap/{id:\d{1,18}}.xml", cap_xml)]
