"""/api/v1/directory: read with any token (phones and addresses only for roles with CONTACTS); write as admin.

A region's group addresses (robot keys: whoever has one can post to the group) are
shown redacted to everybody, admins included: a PUT gives them in full.
"""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from aiohttp import web

from warnd.domain.authority import Right
from warnd.domain.directory import Region, Subscriber, redacted_groups
from warnd.domain.errors import error
from warnd.http.auth import admin_of, scope_of
from warnd.http.keys import NODE
from warnd.http.responses import json_object, json_ok
from warnd.ingest.directory import KEYS, KINDS, parse_entry
from warnd.store.directory import redacted

SINGULAR = {"regions": "region", "people": "person", "households": "household", "speakers": "speaker",
            "subscribers": "subscriber"}
PAGE = 500


def _kind(request: web.Request) -> str:
    kind = request.match_info["kind"]
    if kind not in KINDS:
        raise error("directory.not_found", "kind", f"unknown kind {kind}; one of {', '.join(KINDS)}",
                    f"未知类型 {kind}；可选：{'、'.join(KINDS)}")
    return kind


CONTACT_FIELDS = ("phone", "address")  # people's numbers, households' addresses: CONTACTS only


def _json(entry, contacts: bool = True) -> dict:  # noqa: ANN001 - any directory dataclass
    if isinstance(entry, Subscriber):
        return redacted(entry)
    out = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(entry).items()}
    if not contacts:
        out.update({k: None for k in CONTACT_FIELDS if out.get(k) is not None})
    if isinstance(entry, Region):
        out["groups"] = redacted_groups(entry.groups)
    return out


async def list_entries(request: web.Request) -> web.Response:
    scope = await scope_of(request)
    kind = _kind(request)
    store = request.app[NODE].directory
    entries = await getattr(store, f"list_{kind}")(limit=PAGE, after=request.query.get("after"))
    return json_ok({"items": [_json(e, scope.can(Right.CONTACTS)) for e in entries]})


async def get_entry(request: web.Request) -> web.Response:
    scope = await scope_of(request)
    kind = _kind(request)
    store = request.app[NODE].directory
    entry = await getattr(store, f"get_{SINGULAR[kind]}")(request.match_info["id"])
    return json_ok(_json(entry, scope.can(Right.CONTACTS)))


async def put_entry(request: web.Request) -> web.Response:
    scope = await admin_of(request)
    kind = _kind(request)
    body = await json_object(request)
    body[KEYS[kind]] = request.match_info["id"]
    entry = parse_entry(kind, body)
    store = request.app[NODE].directory
    await getattr(store, f"put_{SINGULAR[kind]}")(entry, actor=scope.who)
    return json_ok(_json(entry))


async def delete_entry(request: web.Request) -> web.Response:
    scope = await admin_of(request)
    kind = _kind(request)
    store = request.app[NODE].directory
    await getattr(store, f"delete_{SINGULAR[kind]}")(request.match_info["id"], actor=scope.who)
    return web.Response(status=204)


async def import_yaml(request: web.Request) -> web.Response:
    scope = await admin_of(request)
    body = await request.read()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "import.yaml"  # the name appears in row errors: import.yaml:LINE.field
        path.write_bytes(body)
        counts = await request.app[NODE].directory.import_files([path], actor=scope.who)
    return json_ok(counts)


def routes() -> list[web.RouteDef]:
    return [web.post("/api/v1/directory/import", import_yaml),
            web.get("/api/v1/directory/{kind}", list_entries),
            web.get("/api/v1/directory/{kind}/{id}", get_entry),
            web.put("/api/v1/directory/{kind}/{id}", put_entry),
            web.delete("/api/v1/directory/{kind}/{id}", delete_entry)]
