"""One place renders every error as application/problem+json (RFC 9457).

Handlers raise `WarndError`; aiohttp's own HTTP errors (404, 405, 413) and
anything unexpected are mapped here too, so a client never sees a stack trace.
"""
from __future__ import annotations

import json
import logging

from aiohttp import web

from warnd.domain.errors import CATALOGUE, WarndError, error
from warnd.http.keys import METRICS

log = logging.getLogger("warnd.http")
PROBLEM_TYPE = "https://warnd.dev/problems/"
HTTP_CODES = {404: "request.not_found", 405: "request.method_not_allowed", 413: "cap.too_large"}


def wants_english(request: web.Request) -> bool:
    return request.headers.get("Accept-Language", "").lower().startswith("en")


def problem_response(request: web.Request, err: WarndError) -> web.Response:
    kind = err.kind
    english = wants_english(request)
    body = {
        "type": PROBLEM_TYPE + kind.code,
        "title": kind.title_en if english else kind.title_zh,
        "status": kind.status,
        "code": kind.code,
        "title_en": kind.title_en,
        "title_zh": kind.title_zh,
        "detail": "; ".join(f"{p.field}: {p.detail_en if english else p.detail_zh}" for p in err.problems)
                  or (kind.title_en if english else kind.title_zh),
        "errors": [{"field": p.field, "detail_en": p.detail_en, "detail_zh": p.detail_zh} for p in err.problems],
        "instance": request.path,
    }
    return web.Response(status=kind.status, content_type="application/problem+json",
                        text=json.dumps(body, ensure_ascii=False))


@web.middleware
async def problems_middleware(request: web.Request, handler):  # noqa: ANN001, ANN201
    try:
        return await handler(request)
    except WarndError as err:
        metrics = request.app.get(METRICS)
        if metrics is not None:
            metrics.rejected.labels(err.code).inc()
        log.info("request rejected", extra={"code": err.code, "path": request.path})
        return problem_response(request, err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_CODES.get(exc.status, "request.invalid")
        return problem_response(request, WarndError(code if code in CATALOGUE else "request.invalid"))
    except Exception:  # noqa: BLE001 - never leak a stack trace; nothing was applied
        log.exception("unhandled error", extra={"path": request.path})
        return problem_response(request, WarndError("internal"))


@web.middleware
async def identity_bodies_only(request: web.Request, handler):  # noqa: ANN001, ANN201
    """Refuse compressed request bodies (415) before anything reads them.

    The application never inflates bodies (`auto_decompress` is off), so what is left
    of one on the wire is only drained as the bytes it is, within `client_max_size`.
    """
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise error("request.encoding", "Content-Encoding", f"{encoding} bodies are not accepted; send them "
                    "uncompressed", f"不接受 {encoding} 压缩的请求体，请不压缩发送")
    return await handler(request)
