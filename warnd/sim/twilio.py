"""Twilio simulator: Messages and Calls for the real `twilio` SDK, and the people who answer.

It serves `POST|GET /2010-04-01/Accounts/{AccountSid}/Messages[/{Sid}].json` and the same for
`Calls` (the lists filtered by To, From and DateSent / StartTime / EndTime with their `<` `>`
forms, calls also by Status, newest first, paged by PageSize, Page and PageToken), checks HTTP basic auth (401 / 20003), answers with Twilio's bodies and errors, then
plays each recipient's `Behaviour` (see `warnd.sim.twilio_behaviour`): signed status
callbacks (messages: [queued, only via a Messaging Service] → sent → delivered | undelivered;
or → failed; calls: initiated → ringing → answered → completed | no-answer | busy | failed,
only the StatusCallbackEvent ones plus the final one), TwiML fetched from `Url` (a signed
POST) or taken from `Twiml`, key presses POSTed to the `<Gather action>`, SMS replies POSTed
to `inbound_sms_url`. Every webhook is signed like Twilio signs it (X-Twilio-Signature) with
the auth token. It records everything (`messages`, `calls`, `replies`) for exactly-once checks.

Pointing the real SDK at it (twilio 9.13):
    http = AsyncTwilioHttpClient()                    # created inside the event loop
    client = Client(account_sid, auth_token, http_client=http)
    client.api.base_url = sim.base_url                # or sim.point(client)
    await client.messages.create_async(to=…, from_=…, body=…)
`Domain.absolute_url` joins `client.api.base_url` with the path; then `get_hostname` rewrites
the host whenever the client has a region or an edge (arguments, or TWILIO_REGION /
TWILIO_EDGE in the environment): '127.0.0.1:9000' would become '127.us1.0.1:9000'. Leave
both unset; `point()` refuses a client that has one.

In-process:   sim = TwilioSimulator(sid, token, scenario); url = await sim.start(); … await sim.stop()
As a process: (`warnd sim twilio --help` lists every option, in English and Chinese)
              python -m warnd.sim.twilio --port 9100 --account-sid AC… --auth-token … \
                  [--behaviours FILE.yaml] [--record FILE] [--inbound-sms-url URL] [--speed N]
              (prints its base URL on the first line of stdout; --record appends flushed JSON lines)
Control:      POST /_control {"faults": {"rate_429": 0.2}, "numbers": {"+86…": {"press": "1"}},
              "speed": 10, "forget": true, "reply_now": {"+86…": "1"}}  ·  GET /_stats
              ("faults" may carry "windows": [{"from": 0, "until": 120, "rate_429": 1}], simulated
              seconds from "epoch", a real timestamp: by default when the simulator started)
Replies: each is logged as an inbound message (listed by Messages.json, `direction`
"inbound", To our number) before its webhook POST, so a reply warnd missed while down
can be fetched afterwards, as from Twilio's message log.
Times: behaviour delays and latency are simulated seconds, divided by `speed`; rate limits
and Retry-After are real seconds. Callbacks are always POSTed and never retried.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import IO, Any

import aiohttp
from aiohttp import web

from warnd.sim import serving
from warnd.sim.twilio_api import (ApiError, CallRecord, MessageRecord, ReplyRecord, call_body, check_number,
                                  filter_records, list_page, message_body, new_sid, segments, signature)
from warnd.sim.twilio_behaviour import Behaviour, Faults, Scenario, call_life, message_life, reply

ACCOUNT = "/2010-04-01/Accounts/{account}"


@dataclass
class Stats:
    requests: int = 0
    messages: int = 0
    calls: int = 0
    unauthorized: int = 0
    rejected: int = 0  # 4xx validation errors (invalid numbers …)
    injected_429: int = 0
    injected_5xx: int = 0
    throttled: int = 0  # 429 beyond max_per_second
    callbacks: int = 0
    callbacks_failed: int = 0  # unreachable or non-2xx
    callbacks_lost: int = 0  # never posted (faults.callback_loss)
    fetches: int = 0  # GETs of a message or call
    lists: int = 0  # GETs of the Messages or Calls list (one per page)
    replies: int = 0
    presses: int = 0
    crashed: int = 0  # timelines that raised (a simulator bug)


class TwilioSimulator:
    def __init__(self, account_sid: str, auth_token: str, scenario: Scenario | None = None, *,
                 record_file: str | None = None, messaging_service_from: str = "+15005550006",
                 callback_limit: int = 100, seed: int | None = None) -> None:
        self.account_sid, self.auth_token = account_sid, auth_token
        self.scenario = scenario or Scenario()
        self.record_file = record_file
        self.messaging_service_from = messaging_service_from
        self.callback_limit = callback_limit
        self.stats = Stats()
        self.messages: dict[str, MessageRecord] = {}
        self.calls: dict[str, CallRecord] = {}
        self.replies: list[ReplyRecord] = []
        self.inbound: dict[str, MessageRecord] = {}  # people's replies, as Twilio's message log lists them
        self.base_url = ""
        self._auth = "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self._random = random.Random(seed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._window = (0, 0)  # (second, requests in it) for max_per_second
        self._attempts: Counter[tuple[str, str]] = Counter()  # (kind, To) → messages or calls so far
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._out: IO[str] | None = None

    # -- life cycle --

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/_control", self._control)
        app.router.add_get("/_stats", self._stats)
        app.router.add_post(ACCOUNT + "/Messages.json", self._api(self._create_message))
        app.router.add_get(ACCOUNT + "/Messages.json", self._api(self._list_messages))
        app.router.add_get(ACCOUNT + "/Messages/{sid}.json", self._api(self._fetch_message))
        app.router.add_post(ACCOUNT + "/Calls.json", self._api(self._create_call))
        app.router.add_get(ACCOUNT + "/Calls.json", self._api(self._list_calls))
        app.router.add_get(ACCOUNT + "/Calls/{sid}.json", self._api(self._fetch_call))
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if self.scenario.epoch is None:  # fault windows count from here unless the scenario says
            self.scenario.epoch = time.time()
        if self.record_file:
            self._out = open(self.record_file, "a", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.callback_limit),
                                              timeout=aiohttp.ClientTimeout(total=15))
        self._runner, bound = await serving.serve(self.app(), host, port)
        self.base_url = f"http://{bound}"
        return self.base_url

    async def stop(self) -> None:
        """Stop serving; cancel every pending callback, reply and key press."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._out is not None:
            self._out.close()
            self._out = None

    async def run(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve until SIGINT or SIGTERM; print the base URL first and the counts last."""
        await serving.run_until_signalled(lambda: self.start(host, port), self.stop, lambda: self.stats)

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Return once no callback, reply or key press is pending; TimeoutError after `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            raise TimeoutError(f"{len(self._tasks)} timelines still pending after {timeout} s") from None

    def point(self, client: Any) -> None:
        """Point a `twilio.rest.Client` here (without importing the SDK)."""
        if getattr(client, "region", None) or getattr(client, "edge", None):
            raise ValueError("the client has a region or edge: the SDK would rewrite the simulator's host")
        client.api.base_url = self.base_url

    # -- what was received --

    def counts_by_to(self) -> Counter[str]:
        return Counter(m.to for m in self.messages.values())

    def duplicate_bodies(self) -> dict[tuple[str, str], int]:
        """(To, Body) pairs received more than once, with how often."""
        counts = Counter((m.to, m.body) for m in self.messages.values())
        return {key: n for key, n in counts.items() if n > 1}

    def messages_to(self, number: str) -> list[MessageRecord]:
        return [m for m in self.messages.values() if m.to == number]

    def calls_to(self, number: str) -> list[CallRecord]:
        return [c for c in self.calls.values() if c.to == number]

    # -- REST --

    def _api(self, handler: Any) -> Any:
        async def serve(request: web.Request) -> web.Response:
            self.stats.requests += 1
            faults = self.scenario.faults_at(time.time())  # the window in force when it arrived
            try:
                if (request.headers.get("Authorization") != self._auth
                        or request.match_info["account"] != self.account_sid):
                    self.stats.unauthorized += 1
                    raise ApiError(401, 20003)
                await self._faults(faults)
                status, body = await handler(request)
            except ApiError as exc:
                if exc.status == 400:
                    self.stats.rejected += 1
                headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if exc.status == 401 else {}
                if exc.status == 429:
                    headers["Retry-After"] = f"{faults.retry_after:g}"
                return web.json_response(exc.body(), status=exc.status, headers=headers)
            return web.json_response(body, status=status)
        return serve

    async def _faults(self, faults: Faults) -> None:
        if faults.latency:
            await asyncio.sleep(faults.latency / self.scenario.speed)
        if faults.max_per_second is not None:
            second = int(time.monotonic())
            count = self._window[1] + 1 if self._window[0] == second else 1
            self._window = (second, count)
            if count > faults.max_per_second:
                self.stats.throttled += 1
                raise ApiError(429, 20429)
        if faults.rate_429 and self._random.random() < faults.rate_429:
            self.stats.injected_429 += 1
            raise ApiError(429, 20429)
        if faults.rate_5xx and self._random.random() < faults.rate_5xx:
            self.stats.injected_5xx += 1
            raise ApiError(500, 20500) if self._random.random() < 0.5 else ApiError(503, 20503)

    async def _create_message(self, request: web.Request) -> tuple[int, dict[str, Any]]:
        form = await request.post()
        to = check_number(form.get("To"), 21211, 21604)
        from_, service = form.get("From") or None, form.get("MessagingServiceSid") or None
        if not from_ and not service:
            raise ApiError(400, 21603)
        body = form.get("Body") or ""
        if not body:
            raise ApiError(400, 21602)
        if len(body) > 1600:
            raise ApiError(400, 21617)
        behaviour = self._attempt("sms", to)
        if behaviour.sms_outcome == "invalid":
            raise ApiError(400, 21211, to=to)
        now = time.time()
        message = MessageRecord(new_sid("SM"), self.account_sid, to, str(from_) if from_ else None,
                                str(service) if service else None, str(body), segments(str(body)),
                                "queued" if from_ else "accepted", now, form.get("StatusCallback") or None)
        self.messages[message.sid] = message
        self.stats.messages += 1
        self.write("message", sid=message.sid, to=to, from_=message.from_, body=message.body,
                    segments=message.segments, created_at=now)
        self._spawn(message_life(self, message, behaviour, asyncio.get_running_loop().time()))
        return 201, message_body(message)

    async def _fetch_message(self, request: web.Request) -> tuple[int, dict[str, Any]]:
        self.stats.fetches += 1
        sid = request.match_info["sid"]
        message = self.messages.get(sid) or self.inbound.get(sid)
        if message is None:
            raise ApiError(404, 20404, uri=request.path)
        return 200, message_body(message)

    async def _list_messages(self, request: web.Request) -> tuple[int, dict[str, Any]]:
        self.stats.lists += 1
        found = filter_records("Messages", [*self.messages.values(), *self.inbound.values()], request.query)
        return 200, list_page("Messages", self.account_sid, found, request.query, message_body)

    async def _list_calls(self, request: web.Request) -> tuple[int, dict[str, Any]]:
        self.stats.lists += 1
        found = filter_records("Calls", list(self.calls.values()), request.query)
        return 200, list_page("Calls", self.account_sid, found, request.query, call_body)

    async def _create_call(self, request: web.Request) -> tuple[int, dict[str, Any]]:
        form = await request.post()
        to = check_number(form.get("To"), 21211, 21201)
        from_ = check_number(form.get("From"), 21212, 21213)
        twiml, url = form.get("Twiml") or None, form.get("Url") or None
        if not twiml and not url:
            raise ApiError(400, 21205)
        behaviour = self._attempt("call", to)
        if behaviour.call_outcome == "invalid":
            raise ApiError(400, 21211, to=to)
        events = frozenset(e for value in form.getall("StatusCallbackEvent", []) for e in str(value).split())
        timeout = min(max(float(form.get("Timeout") or 60), 5.0), 600.0)
        now = time.time()
        call = CallRecord(new_sid("CA"), self.account_sid, to, from_, str(twiml) if twiml else None,
                          str(url) if url else None, form.get("StatusCallback") or None, events, timeout,
                          "queued", now)
        self.calls[call.sid] = call
        self.stats.calls += 1
        self.write("call", sid=call.sid, to=to, from_=from_, twiml=call.twiml, url=call.url, created_at=now)
        self._spawn(call_life(self, call, behaviour, asyncio.get_running_loop().time()))
        return 201, call_body(call)

    async def _fetch_call(self, request: web.Request) -> tuple[int, dict[str, Any]]:
        self.stats.fetches += 1
        call = self.calls.get(request.match_info["sid"])
        if call is None:
            raise ApiError(404, 20404, uri=request.path)
        return 200, call_body(call)

    def _attempt(self, kind: str, to: str) -> Behaviour:
        """The number's behaviour for this, its n-th SMS or call: the attempt's outcome, spans drawn."""
        n = self._attempts[kind, to]
        self._attempts[kind, to] += 1
        b = self.scenario.behaviour(to)
        return b.sms_attempt(n, self._random) if kind == "sms" else b.call_attempt(n, self._random)

    # -- timelines (one task per message or call) --

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.stats.crashed += 1
        if not self._tasks:
            self._idle.set()

    async def at(self, start: float, simulated: float) -> None:
        loop = asyncio.get_running_loop()
        delay = start + simulated / self.scenario.speed - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def post(self, url: str, params: dict[str, str]) -> tuple[int, str] | None:
        """POST a signed webhook; (status, text), or None when it could not be delivered."""
        assert self._session is not None
        self.stats.callbacks += 1
        headers = {"X-Twilio-Signature": signature(self.auth_token, url, params),
                   "I-Twilio-Idempotency-Token": os.urandom(16).hex(), "User-Agent": "TwilioProxy/1.1"}
        try:
            async with self._session.post(url, data=params, headers=headers) as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            self.stats.callbacks_failed += 1
            return None
        if not 200 <= response.status < 300:
            self.stats.callbacks_failed += 1
        return response.status, text

    def loses_callback(self) -> bool:
        """Drop this status callback (faults.callback_loss)?"""
        loss = self.scenario.faults_at(time.time()).callback_loss
        if loss and self._random.random() < loss:
            self.stats.callbacks_lost += 1
            return True
        return False

    def write(self, kind: str, **fields: Any) -> None:
        if self._out is not None:
            self._out.write(json.dumps({"kind": kind, **fields}, ensure_ascii=False) + "\n")
            self._out.flush()

    # -- control --

    async def _control(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            if not isinstance(data, dict):
                raise ValueError("a JSON object is expected")
            if data.pop("forget", False):
                self.stats, self.replies = Stats(), []
                self.messages.clear()
                self.inbound.clear()
                self.calls.clear()
                self._attempts.clear()
            self.reply_now(data.pop("reply_now", None) or {})
            self.scenario.update(data)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.scenario.describe())

    def reply_now(self, replies: Any) -> None:
        """{"+86…": "1", …}: each number answers, now, the newest message it was sent (one the
        webhook may not take: warnd down; the reply is in the message log all the same)."""
        if not isinstance(replies, dict):
            raise ValueError("reply_now must map numbers to reply texts")
        for number, text in replies.items():
            sent = self.messages_to(str(number))
            if not sent:
                raise ValueError(f"reply_now: nothing was sent to {number}")
            self._spawn(reply(self, max(sent, key=lambda m: m.created_at), str(text)))

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({**asdict(self.stats), "pending": len(self._tasks)})


# -- as a process --

def serve(account_sid: str, auth_token: str, scenario: Scenario | None = None, *, host: str = "127.0.0.1",
          port: int = 0, record: str | None = None, inbound_sms_url: str | None = None, speed: float | None = None,
          callback_limit: int = 100, seed: int | None = None) -> None:
    """Serve until SIGINT or SIGTERM (`warnd sim twilio`); `inbound_sms_url` and `speed` override
    the scenario's."""
    scenario = scenario or Scenario()
    scenario.update({key: value for key, value in (("inbound_sms_url", inbound_sms_url), ("speed", speed))
                     if value is not None})
    simulator = TwilioSimulator(account_sid, auth_token, scenario, record_file=record,
                                callback_limit=callback_limit, seed=seed)
    asyncio.run(simulator.run(host, port))


def main(argv: list[str] | None = None) -> None:
    """`python -m warnd.sim.twilio`: the click command `warnd sim twilio` (exits)."""
    from warnd.sim.cli import twilio
    twilio.main(args=argv, prog_name="python -m warnd.sim.twilio")


if __name__ == "__main__":
    main()
