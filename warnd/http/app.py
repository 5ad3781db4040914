"""The route table: every HTTP route warnd serves, in one place."""
from __future__ import annotations

from aiohttp import web

from warnd.engine.node import Node
from warnd.http import coverage_api, directory_api, ops_api, providers_api, tokens_api, warnings_api
from warnd.http import call_lists_api, pages, session_api
from warnd.http import audit_api
from warnd.http import inbound_api, rollups_api
from warnd.http import console_api, live_api, reports_api
from warnd.http import cap_feed_api, feeds_api, roster_api
from warnd.console import pages as console_pages
from warnd.http.access_log import access_log
from warnd.http.keys import METRICS, NODE
from warnd.http.problems import identity_bodies_only, problems_middleware


def build_app(node: Node) -> web.Application:
    # The body limit is enforced by intake with a clear error; aiohttp's own is a backstop.
    # Request bodies are never decompressed (a few KB of gzip can be gigabytes of work):
    # a compressed body is refused by `identity_bodies_only` before any handler reads it.
    # The access log is outermost: it sees the status problems_middleware answered.
    app = web.Application(middlewares=[access_log, problems_middleware, identity_bodies_only],
                          client_max_size=node.config.max_body_bytes + 65536,
                          handler_args={"auto_decompress": False})
    app[NODE] = node
    app[METRICS] = node.metrics
    app.add_routes(ops_api.routes() + warnings_api.routes() + directory_api.routes()
                   + providers_api.routes(frozenset(node.channels))
                   + coverage_api.routes() + tokens_api.routes())
    app.add_routes(pages.routes() + call_lists_api.routes() + session_api.routes())
    app.add_routes(audit_api.routes())
    app.add_routes(rollups_api.routes())
    app.add_routes(inbound_api.routes())
    app.add_routes(console_api.routes() + live_api.routes() + reports_api.routes())
    app.add_routes(feeds_api.routes() + cap_feed_api.routes() + roster_api.routes())
    app.on_shutdown.append(live_api.close_streams)  # open live views end at once, not after 60 s
    if node.config.console.enabled:
        app.add_routes(console_pages.routes())
    return app
