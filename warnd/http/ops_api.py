"""Operations: liveness, readiness, Prometheus metrics, the OpenAPI description."""
from __future__ import annotations

from importlib.resources import files

import sqlalchemy as sa
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from warnd.domain import readiness
from warnd.http.keys import NODE
from warnd.http.responses import json_ok


async def healthz(request: web.Request) -> web.Response:
    return json_ok({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the database answers and the node's loops are running. `readiness` says what
    routing and ladders cannot do with the enabled channels (warnd/domain/readiness.py): shown,
    never a reason for 503 (a node that started has only warnings or allowed findings)."""
    node = request.app[NODE]
    try:
        async with node.db.read() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - report, don't crash
        return json_ok({"status": "unavailable", "database": str(exc).splitlines()[0]}, status=503)
    if not node.started:
        return json_ok({"status": "starting"}, status=503)
    return json_ok({"status": "ready", "node": node.incarnation, "readiness": readiness.summary(node.readiness)})


async def metrics(request: web.Request) -> web.Response:
    node = request.app[NODE]
    body = generate_latest(node.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def openapi_text() -> str:
    return files("warnd.http").joinpath("openapi.yaml").read_text(encoding="utf-8")


async def openapi(request: web.Request) -> web.Response:
    return web.Response(text=openapi_text(), content_type="application/yaml")


def routes() -> list[web.RouteDef]:
    return [web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics),
            web.get("/api/v1/openapi.yaml", openapi)]
