"""Provider requests: one generic route per channel and inbound kind.

`POST /providers/{channel}/{kind}` hands the request to the handler the channel's spec
declares for that kind (receipts, replies, key presses); the channel checks the
provider's signature and parses the body, the engine (the node, as `InboundSink`)
applies what it says, durably, before the provider gets its answer. Older URLs a
spec names (Twilio's `/twilio/sms/status` …) reach the same handlers. Only the
enabled channels' routes answer: a node without SMS takes no SMS reply, signed or not.
"""
from __future__ import annotations

from aiohttp import web

from warnd.domain.errors import WarndError, error
from warnd.domain.sending import InboundRequest
from warnd.domain.signing import verify
from warnd.http.keys import NODE
from warnd.http.responses import read_body
from warnd_channels.registry import SPECS

PROVIDER_BODY_BYTES = 1_048_576  # a push of reports in one request (Aliyun batches them)


def _delivery(request: web.Request, purpose: str):  # noqa: ANN202 - the InboundRequest's signed_delivery
    """(delivery id, attempt) signed into the URL for this channel and kind; the attempt is
    None in URLs made before callbacks named it (still honoured, matched by SID alone)."""
    def signed() -> tuple[int, int | None]:
        node = request.app[NODE]
        value = verify(node.secret_key, purpose, request.query.get("d", ""), node.clock.now())
        delivery, _, attempt = value.partition(".")
        try:
            return int(delivery), int(attempt) if attempt else None
        except ValueError:
            raise WarndError("link.invalid") from None
    return signed


async def _handle(request: web.Request, name: str, kind: str) -> web.Response:
    node = request.app[NODE]
    spec = SPECS.get(name)
    channel = node.channels.get(name)
    inbound = spec.inbound.get(kind) if spec is not None else None
    if inbound is None or channel is None:
        raise error("request.not_found", "path", f"no provider endpoint {name}/{kind} on this node",
                    f"本节点无供应商接口 {name}/{kind}")
    body = await read_body(request, PROVIDER_BODY_BYTES)
    form = {}
    if request.content_type == "application/x-www-form-urlencoded":
        form = {k: str(v) for k, v in (await request.post()).items()}
    inbound_request = InboundRequest(
        method=request.method, url=node.config.public_base_url.rstrip("/") + request.path_qs,
        query=dict(request.query), headers=request.headers, form=form, body=body,
        signed_delivery=_delivery(request, f"{name}-{kind}"))
    answer = await inbound.handle(channel, inbound_request, node)
    return web.Response(status=answer.status, body=answer.body or None,
                        content_type=answer.content_type if answer.body else None)


async def provider_request(request: web.Request) -> web.Response:
    return await _handle(request, request.match_info["channel"], request.match_info["kind"])


def _legacy(name: str, kind: str):  # noqa: ANN202
    async def handler(request: web.Request) -> web.Response:
        return await _handle(request, name, kind)
    return handler


def routes(enabled: frozenset[str]) -> list[web.RouteDef]:
    out = [web.post("/providers/{channel}/{kind}", provider_request)]
    for name in sorted(enabled):
        spec = SPECS.get(name)
        for kind, inbound in (spec.inbound.items() if spec is not None else ()):
            if inbound.legacy_path:
                out.append(web.post(inbound.legacy_path, _legacy(name, kind)))
    return out


def path(channel: str, kind: str) -> str:
    return f"/providers/{channel}/{kind}"
