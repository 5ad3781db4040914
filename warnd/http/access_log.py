"""The access log: one JSON line per HTTP request, never a secret.

A line says the method, the path, the status, how long the answer took, who asked
(the peer address) and the request's `X-Request-Id` if it had one. What could let
someone act as the caller is never written: no header (Authorization, Cookie), a
path's signed link token (`/c/{token}`, `/d/{token}`) as its route template, and the
values of secret query parameters (`d`, `token`, `key`, …) as `-`.

It is the outermost middleware, so it sees the status `problems_middleware` answered.
Health probes and metric scrapes that succeed are logged at DEBUG (a container's
health check asks every few seconds); a 5xx is a WARNING.
"""
from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

log = logging.getLogger("warnd.access")
SECRET_QUERY = frozenset({"d", "token", "key", "secret", "sig", "signature", "password", "access_token", "code"})
SECRET_PATH = frozenset({"token"})  # route parameters that are credentials: logged as the route's template
QUIET = frozenset({"/healthz", "/readyz", "/metrics"})
REQUEST_ID_CHARS = 128
QUERY_CHARS = 512
CLIENT_GONE = 499  # the client went away before the answer (nginx's number)


def logged_path(request: web.BaseRequest) -> str:
    """The path to log: a credential in it replaced by its route parameter's name."""
    match_info = getattr(request, "match_info", None)
    if match_info and SECRET_PATH & match_info.keys():
        resource = match_info.route.resource
        if resource is not None:
            return resource.canonical
    return request.path


def logged_query(request: web.BaseRequest) -> str | None:
    """The query string with secret values blanked (`d=-`); None when there is none."""
    if not request.query_string:
        return None
    return "&".join(f"{name}=-" if name.lower() in SECRET_QUERY else f"{name}={value}"
                    for name, value in request.query.items())[:QUERY_CHARS]


def request_id(request: web.BaseRequest) -> str | None:
    value = request.headers.get("X-Request-Id")
    if not value:
        return None
    return "".join(ch for ch in value[:REQUEST_ID_CHARS] if ch.isprintable())


@web.middleware
async def access_log(request: web.Request, handler):  # noqa: ANN001, ANN201
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # redirects and the like, raised past problems_middleware
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = CLIENT_GONE
        raise
    finally:
        _write(request, status, time.perf_counter() - started)


def _write(request: web.Request, status: int, seconds: float) -> None:
    if status >= 500:
        level = logging.WARNING
    elif status < 400 and request.path in QUIET:
        level = logging.DEBUG
    else:
        level = logging.INFO
    if not log.isEnabledFor(level):
        return
    entry = {"method": request.method, "path": logged_path(request), "status": status,
             "duration_ms": round(seconds * 1000, 1), "remote": request.remote}
    query = logged_query(request)
    if query is not None:
        entry["query"] = query
    rid = request_id(request)
    if rid:
        entry["request_id"] = rid
    log.log(level, "request", extra=entry)
