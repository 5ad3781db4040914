"""JSON in and out: responses that keep Chinese readable (no \\u escapes), request bodies checked."""
from __future__ import annotations

import functools
import json

from aiohttp import web

from warnd.domain.errors import error

dumps = functools.partial(json.dumps, ensure_ascii=False)


def json_ok(data: object, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=dumps)


async def json_object(request: web.Request) -> dict:
    """The request body as a JSON object, or a clear 400."""
    try:
        body = await request.json()
    except ValueError:
        raise error("request.invalid", "body", "body is not JSON", "请求体不是 JSON") from None
    if not isinstance(body, dict):
        raise error("request.invalid", "body", "body must be a JSON object", "请求体须为 JSON 对象")
    return body


async def read_body(request: web.Request, limit: int) -> bytes:
    """The raw body, refused (413 cap.too_large) when its declared length passes `limit`."""
    if request.content_length is not None and request.content_length > limit:
        raise error("cap.too_large", "body", f"body is {request.content_length} bytes; the limit is {limit}",
                    f"请求体 {request.content_length} 字节，超过上限 {limit} 字节")
    return await request.read()
