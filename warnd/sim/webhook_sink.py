"""Webhook sink simulator: a Standard Webhooks receiver that can misbehave.

It verifies each request's signature (a bad one gets 401 and is not recorded),
de-duplicates by `webhook-id` (a duplicate gets 200 and is counted), records
every unique message, and can be told per path to fail: a share of 5xx answers
(`fail_rate`), a fixed status (`status`, e.g. 410), a `retry_after`, a
`latency` in seconds, or being down until a moment (`down_until`, Unix time).

In-process:   sink = WebhookSink(secret); url = await sink.start(); … await sink.stop()
              (or `await sink.run()` to serve until SIGINT/SIGTERM)
As a process: (`warnd sim webhook-sink --help` lists every option, in English and Chinese)
              python -m warnd.sim.webhook_sink --port 9000 --secret whsec_… --record out.jsonl
              (prints its base URL on the first line of stdout; the record file gets
              one flushed JSON line per unique message, so it survives a kill)
Control:      POST /_control {"path": "/a", "status": 410}  ·  GET /_stats
"""
from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import IO

from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from warnd.sim import serving

ANY_PATH = "*"


@dataclass(frozen=True)
class Behaviour:
    fail_rate: float = 0.0  # share of requests answered with `fail_status`
    fail_status: int = 503
    status: int | None = None  # answer every request with this status, unrecorded
    retry_after: float | None = None  # Retry-After on every non-2xx answer
    latency: float = 0.0  # seconds before answering
    down_until: float | None = None  # Unix time; until then every request gets 503


@dataclass(frozen=True)
class Record:
    path: str
    id: str
    timestamp: str  # the webhook-timestamp header
    length: int
    content_type: str
    received_at: float


@dataclass
class Stats:
    unique: int = 0
    duplicates: int = 0
    rejected: int = 0  # bad or missing signature (401)
    failed: int = 0  # answered with an injected failure
    requests: int = 0


@dataclass
class WebhookSink:
    """`secrets` is one secret for every path, or path → secret (`"*"` for the rest)."""

    secrets: str | Mapping[str, str] | None = field(default=None, repr=False)
    behaviour: Behaviour = field(default_factory=Behaviour)
    paths: dict[str, Behaviour] = field(default_factory=dict)
    record_file: str | None = None
    keep_bodies: bool = False  # keep each unique body in `bodies` (tests)
    seed: int | None = None

    def __post_init__(self) -> None:
        self.stats = Stats()
        self.records: list[Record] = []
        self.bodies: dict[tuple[str, str], bytes] = {}
        self._seen: set[tuple[str, str]] = set()
        self._verifiers: dict[str, Webhook] = {}
        self._random = random.Random(self.seed)
        self._runner: web.AppRunner | None = None
        self._out: IO[str] | None = None
        self.base_url = ""

    # -- life cycle --

    def app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/_control", self._control)
        app.router.add_get("/_stats", self._stats)
        app.router.add_route("*", "/{tail:.*}", self._receive)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if self.record_file:
            self._out = open(self.record_file, "a", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self._runner, bound = await serving.serve(self.app(), host, port)
        self.base_url = f"http://{bound}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._out is not None:
            self._out.close()
            self._out = None

    async def run(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve until SIGINT or SIGTERM; print the base URL first and the counts last."""
        await serving.run_until_signalled(lambda: self.start(host, port), self.stop, lambda: self.stats)

    def configure(self, path: str | None = None, *, reset: bool = False, **changes: object) -> Behaviour:
        """Change the behaviour of one path (or of every path without its own)."""
        current = Behaviour() if reset else (self.paths.get(path, self.behaviour) if path else self.behaviour)
        updated = replace(current, **changes)
        if path:
            self.paths[path] = updated
        else:
            self.behaviour = updated
        return updated

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def received(self, path: str | None = None) -> list[Record]:
        return [r for r in self.records if path is None or r.path == path]

    # -- the hot path --

    async def _receive(self, request: web.Request) -> web.StreamResponse:
        stats = self.stats
        stats.requests += 1
        path = request.path
        behaviour = self.paths.get(path, self.behaviour)
        if behaviour.latency:
            await asyncio.sleep(behaviour.latency)
        if behaviour.down_until is not None and time.time() < behaviour.down_until:
            return self._fail(503, behaviour)
        if behaviour.status is not None:
            return self._fail(behaviour.status, behaviour)
        verifier = self._verifier(path)
        if verifier is None:
            stats.rejected += 1
            return web.Response(status=404, text="no subscriber at this path")
        body = await request.read()
        headers = request.headers
        try:
            verifier.verify(body, {"webhook-id": headers.get("webhook-id", ""),
                                   "webhook-timestamp": headers.get("webhook-timestamp", ""),
                                   "webhook-signature": headers.get("webhook-signature", "")},
                            json_parse=False)
        except (WebhookVerificationError, ValueError, UnicodeDecodeError):
            stats.rejected += 1
            return web.Response(status=401, text="bad signature")
        if behaviour.fail_rate and self._random.random() < behaviour.fail_rate:
            return self._fail(behaviour.fail_status, behaviour)
        key = (path, headers["webhook-id"])
        if key in self._seen:
            stats.duplicates += 1
            return web.Response(status=200)
        self._seen.add(key)
        stats.unique += 1
        record = Record(path, key[1], headers["webhook-timestamp"], len(body),
                        headers.get("content-type", ""), time.time())
        self.records.append(record)
        if self.keep_bodies:
            self.bodies[key] = body
        if self._out is not None:
            self._out.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")
            self._out.flush()
        return web.Response(status=200)

    def _fail(self, status: int, behaviour: Behaviour) -> web.Response:
        self.stats.failed += 1
        headers = {}
        if behaviour.retry_after is not None and not 200 <= status < 300:
            headers["Retry-After"] = f"{behaviour.retry_after:g}"
        return web.Response(status=status, headers=headers, text="injected")

    def _verifier(self, path: str) -> Webhook | None:
        verifier = self._verifiers.get(path)
        if verifier is None:
            if isinstance(self.secrets, str):
                secret = self.secrets
            elif self.secrets is None:
                return None
            else:
                secret = self.secrets.get(path) or self.secrets.get(ANY_PATH)
                if secret is None:
                    return None
            verifier = self._verifiers[path] = Webhook(secret)
        return verifier

    # -- control --

    async def _control(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            if not isinstance(data, dict):
                raise ValueError("a JSON object is expected")
            path = data.pop("path", None)
            reset = bool(data.pop("reset", False))
            if bool(data.pop("forget", False)):  # start counting afresh
                self.stats, self.records, self._seen = Stats(), [], set()
                self.bodies.clear()
            if "down_for" in data:
                data["down_until"] = time.time() + float(data.pop("down_for"))
            known = {f.name for f in fields(Behaviour)}
            unknown = set(data) - known
            if unknown:
                raise ValueError(f"unknown settings: {sorted(unknown)}")
            updated = self.configure(path, reset=reset, **data)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"path": path, "behaviour": asdict(updated)})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(self.stats))


# -- as a process --

def parse_secrets(values: Iterable[str]) -> str | dict[str, str] | None:
    """`whsec_…` is every path's secret; `PATH=whsec_…` one path's. ValueError for anything else."""
    mapping: dict[str, str] = {}
    for value in values:
        path, sep, secret = (ANY_PATH, "=", value) if value.startswith("whsec_") else value.partition("=")
        if not sep or not path or not secret:
            raise ValueError(f"expected whsec_… or PATH=whsec_…, got {value!r}")
        mapping[path] = secret
    if set(mapping) == {ANY_PATH}:
        return mapping[ANY_PATH]
    return mapping or None


def serve(secrets: str | Mapping[str, str] | None, behaviour: Behaviour | None = None, *, host: str = "127.0.0.1",
          port: int = 0, record: str | None = None, seed: int | None = None) -> None:
    """Serve until SIGINT or SIGTERM (`warnd sim webhook-sink`); `behaviour` is every path's."""
    sink = WebhookSink(secrets, behaviour=behaviour or Behaviour(), record_file=record, seed=seed)
    asyncio.run(sink.run(host, port))


def main(argv: list[str] | None = None) -> None:
    """`python -m warnd.sim.webhook_sink`: the click command `warnd sim webhook-sink` (exits)."""
    from warnd.sim.cli import webhook_sink
    webhook_sink.main(args=argv, prog_name="python -m warnd.sim.webhook_sink")


if __name__ == "__main__":
    main()
