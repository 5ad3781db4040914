"""WeCom group robot simulator (企业微信群机器人): `POST /cgi-bin/webhook/send?key=KEY`.

It answers as the robot does, HTTP 200 with `{"errcode": …, "errmsg": …}`:
an unknown or missing key gets 93000; a body that is not a JSON object, or a msgtype
other than text/markdown, 40008; empty content 44004; content over the robot's
limits (text 2,048 bytes, markdown 4,096, UTF-8) or a `mentioned_mobile_list` that is
not a list of strings 40058; more than `per_minute` accepted messages to one robot in
a sliding minute 45009 ("api freq out of limit", not recorded, not counted). Accepted
messages are recorded per key. `fail_next(key, errcode, …)` scripts the next answers
for a robot (45009, -1, 93004, …) before any check.

In-process:   sim = WecomSim({"KEY"}); base = await sim.start(); … await sim.stop()
              (point `wecom.base_url` at `base`)
As a process: (`warnd sim wecom --help` lists every option, in English and Chinese)
              python -m warnd.sim.wecom --port 9100 --key KEY [--key KEY2] [--record out.jsonl]
              (prints its base URL on the first line of stdout)
Control:      POST /_control {"key": "KEY", "fail_next": [45009]} or {"add_key": "KEY"}
              GET /_messages[?key=KEY]
"""
from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from aiohttp import web

from warnd.domain.directory import redact
from warnd.sim import serving

SEND_PATH = "/cgi-bin/webhook/send"
PER_MINUTE = 20  # the robot's documented limit
MAX_BYTES = {"text": 2048, "markdown": 4096}
ERRMSG = {
    0: "ok",
    -1: "system busy",
    40008: "invalid message type",
    40058: "invalid parameter",
    44004: "empty content",
    45009: "api freq out of limit",
    93000: "invalid webhook url",
    93004: "robot has been disabled",
}


@dataclass(frozen=True)
class Posted:
    key: str
    msgtype: str
    content: str
    mentioned_mobile_list: tuple[str, ...]
    received_at: float


@dataclass
class Stats:
    requests: int = 0
    accepted: int = 0
    rate_limited: int = 0
    refused: int = 0  # any other errcode


@dataclass
class WecomSim:
    """`keys`: the robots that exist; `clock` (seconds) counts the per-minute limit."""

    keys: set[str] = field(default_factory=set)
    per_minute: int = PER_MINUTE
    record_file: str | None = None
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.keys = set(self.keys)
        self.stats = Stats()
        self.messages: list[Posted] = []
        self._recent: dict[str, deque[float]] = {}
        self._scripted: dict[str, deque[int]] = {}
        self._runner: web.AppRunner | None = None
        self._out: IO[str] | None = None
        self.base_url = ""

    # -- life cycle --

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post(SEND_PATH, self._send)
        app.router.add_post("/_control", self._control)
        app.router.add_get("/_messages", self._messages)
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

    # -- for tests --

    def url(self, key: str) -> str:
        """The robot's webhook URL, as WeCom shows it to a group's owner."""
        return f"{self.base_url}{SEND_PATH}?key={key}"

    def fail_next(self, key: str, errcode: int, times: int = 1) -> None:
        """Answer the robot's next `times` posts with `errcode`, before any check."""
        self._scripted.setdefault(key, deque()).extend([errcode] * times)

    def received(self, key: str | None = None) -> list[Posted]:
        return [m for m in self.messages if key is None or m.key == key]

    # -- the robot --

    async def _send(self, request: web.Request) -> web.Response:
        self.stats.requests += 1
        key = request.query.get("key", "")
        if key not in self.keys:
            return self._answer(93000, "invalid webhook url, the robot may have been removed")
        scripted = self._scripted.get(key)
        if scripted:
            errcode = scripted.popleft()
            return self._answer(errcode, ERRMSG.get(errcode, "scripted"))
        try:
            body = json.loads(await request.read())
        except ValueError:
            return self._answer(40008, "invalid message type: the body is not JSON")
        problem = check_message(body)
        if problem is not None:
            return self._answer(*problem)
        now = self.clock()
        recent = self._recent.setdefault(key, deque())
        while recent and recent[0] <= now - 60.0:
            recent.popleft()
        if len(recent) >= self.per_minute:
            self.stats.rate_limited += 1
            return self._answer(45009, "api freq out of limit")
        recent.append(now)
        msgtype = body["msgtype"]
        mentions = tuple(body[msgtype].get("mentioned_mobile_list") or ())
        posted = Posted(key, msgtype, body[msgtype]["content"], mentions, time.time())
        self.messages.append(posted)
        if self._out is not None:
            self._out.write(json.dumps({**asdict(posted), "key": redact(key)}, ensure_ascii=False) + "\n")
            self._out.flush()
        return self._answer(0, "ok")

    def _answer(self, errcode: int, errmsg: str) -> web.Response:
        if errcode == 0:
            self.stats.accepted += 1
        elif errcode != 45009:
            self.stats.refused += 1
        return web.json_response({"errcode": errcode, "errmsg": errmsg})

    # -- control --

    async def _control(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            if not isinstance(data, dict):
                raise ValueError("a JSON object is expected")
            if "add_key" in data:
                self.keys.add(str(data["add_key"]))
            if "fail_next" in data:
                for errcode in data["fail_next"]:
                    self.fail_next(str(data["key"]), int(errcode))
        except (ValueError, TypeError, KeyError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"keys": len(self.keys)})

    async def _messages(self, request: web.Request) -> web.Response:
        key = request.query.get("key")
        return web.json_response({"items": [{**asdict(m), "key": redact(m.key)} for m in self.received(key)]})


def check_message(body: Any) -> tuple[int, str] | None:
    """What the robot would refuse in a message body, as (errcode, errmsg); None: fine."""
    if not isinstance(body, dict):
        return 40008, "invalid message type: the body is not a JSON object"
    msgtype = body.get("msgtype")
    if msgtype not in MAX_BYTES:
        return 40008, f"invalid message type {msgtype!r} (the simulator takes text and markdown)"
    part = body.get(msgtype)
    if not isinstance(part, dict):
        return 40058, f"invalid parameter: {msgtype} must be an object"
    content = part.get("content")
    if not isinstance(content, str) or not content.strip():
        return 44004, "empty content"
    size = len(content.encode("utf-8"))
    if size > MAX_BYTES[msgtype]:
        return 40058, f"{msgtype}.content exceed max length {MAX_BYTES[msgtype]} ({size} bytes)"
    for name in ("mentioned_list", "mentioned_mobile_list"):
        value = part.get(name)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return 40058, f"invalid parameter: {msgtype}.{name} must be a list of strings"
    return None


# -- as a process --

def serve(keys: Iterable[str], *, host: str = "127.0.0.1", port: int = 0, per_minute: int = PER_MINUTE,
          record: str | None = None) -> None:
    """Serve until SIGINT or SIGTERM (`warnd sim wecom`)."""
    sim = WecomSim(set(keys), per_minute=per_minute, record_file=record)
    asyncio.run(sim.run(host, port))


def main(argv: Iterable[str] | None = None) -> None:
    """`python -m warnd.sim.wecom`: the click command `warnd sim wecom` (exits)."""
    from warnd.sim.cli import wecom
    wecom.main(args=None if argv is None else list(argv), prog_name="python -m warnd.sim.wecom")


if __name__ == "__main__":
    main()
