"""Alibaba Cloud SMS simulator: SendSms for the real `alibabacloud_dysmsapi20170525` SDK,
and the phones that receive the messages and answer.

It serves the RPC API at `/` as SDK 4.6 calls it (tea-openapi 0.4: the V3 signature,
ACS3-HMAC-SHA256, over method, path, query, the signed headers and the body's SHA-256),
checks that signature for real with the access key's secret (InvalidAccessKeyId.NotFound,
SignatureDoesNotMatch, a reused nonce or a stale x-acs-date refused like Aliyun refuses
them), then the sign name, template code and TemplateParam against the approved ones
(isv.SMS_SIGNATURE_ILLEGAL, isv.SMS_TEMPLATE_ILLEGAL, isv.TEMPLATE_MISSING_PARAMETERS,
isv.PARAM_LENGTH_LIMIT beyond 35 characters, links excepted …) and the numbers
(isv.MOBILE_NUMBER_ILLEGAL). It answers like Aliyun ({"RequestId", "BizId", "Code",
"Message"}), records every message, and pushes
delivery reports (SmsReport) and a phone's reply (SmsUp) to the configured URLs as JSON
arrays, the way Aliyun's HTTP batch push (HTTP批量推送) does. Pushes are not retried.

Scripted trouble: `fail("isv.BUSINESS_LIMIT_CONTROL", times=2)` answers the next two calls
so (HTTP 200, as Aliyun answers business errors); `fail("Throttling.User", status=429)`
as a refusal; `delay` holds every answer (timeouts).

In-process:   sim = AliyunSimulator(key_id, secret, templates={"SMS_1": "${level}${event}预警"});
              endpoint = await sim.start()   # host:port, for the SDK's Config(endpoint=…, protocol="http")
As a process: (`warnd sim aliyun --help` lists every option, in English and Chinese)
              python -m warnd.sim.aliyun --port 9200 --access-key-id … --access-key-secret … \\
                  --sign-name 县预警中心 --template 'SMS_1=${drill}${level}${event}预警' \\
                  --report-url 'http://127.0.0.1:8080/providers/aliyun_sms/reports?token=…' \\
                  --up-url 'http://127.0.0.1:8080/providers/aliyun_sms/replies?token=…' --reply 13800001001=1
              (prints its endpoint on the first line of stdout)
Control:      POST /_control {"fail": {"code": "…", "times": 1, "status": 200}, "delay": 0,
              "reply_now": {"13800001001": "1"}}  ·  GET /_stats
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import re
import signal
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from warnd.sim import serving

ALGORITHM = "ACS3-HMAC-SHA256"
REQUIRED_SIGNED = ("host", "x-acs-action", "x-acs-content-sha256", "x-acs-date", "x-acs-signature-nonce",
                   "x-acs-version")
CLOCK_SKEW = timedelta(minutes=15)
PARAM_MAX_CHARS = 35
MAX_NUMBERS = 1000
BEIJING = timezone(timedelta(hours=8))
VARIABLE_RE = re.compile(r"\$\{(\w+)\}")
NUMBER_RE = re.compile(r"^(?:\+?86|0086)?(1[3-9]\d{9})$|^(?!86)([1-9]\d{6,14})$")
JSON = "application/json;charset=utf-8"


@dataclass
class Fault:
    code: str
    status: int = 200
    retry_after_ms: int | None = None


@dataclass
class Phone:
    """How a number behaves: does the report say delivered, and does it reply."""

    delivered: bool = True
    err_code: str = "DELIVERED"  # when not delivered, e.g. "MK:0001"
    reply: str | None = None  # text the person sends back after the report
    reply_after: float = 0.05


@dataclass
class SmsRecord:
    biz_id: str
    phone: str
    sign_name: str
    template_code: str
    params: dict[str, str]
    out_id: str
    text: str
    at: float = field(default_factory=time.time)


@dataclass
class Stats:
    requests: int = 0
    messages: int = 0
    refused: int = 0  # signature, key, nonce, time
    rejected: int = 0  # business errors (sign, template, number …)
    injected: int = 0
    pushes: int = 0
    pushes_failed: int = 0  # unreachable, or not answered {"code": 0}


class AliyunSimulator:
    def __init__(self, access_key_id: str, access_key_secret: str, *, sign_names: tuple[str, ...] = ("县预警中心",),
                 templates: dict[str, str] | None = None, report_url: str | None = None, up_url: str | None = None,
                 phones: dict[str, Phone] | None = None, report_after: float = 0.05, dest_code: str = "1234") -> None:
        self.keys = {access_key_id: access_key_secret}
        self.sign_names = set(sign_names)
        self.templates = dict(templates or {})  # approved code → its text with ${variables}
        self.report_url, self.up_url = report_url, up_url
        self.phones = dict(phones or {})  # 11-digit number → behaviour (default: delivered, no reply)
        self.report_after, self.dest_code = report_after, dest_code
        self.delay = 0.0
        self.faults: list[Fault] = []
        self.messages: list[SmsRecord] = []
        self.pushes: list[tuple[str, list[dict], int | None]] = []  # (kind, items, HTTP status or None)
        self.raw: deque[tuple[str, dict[str, str], bytes]] = deque(maxlen=100)  # the last API requests, as sent
        self.stats = Stats()
        self.endpoint = ""
        self._nonces: OrderedDict[str, float] = OrderedDict()  # nonce → when seen, oldest first
        self._biz = itertools.count(int(time.time()) * 1000)
        self._sequence = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- life cycle --

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/_control", self._control)
        app.router.add_get("/_stats", self._stats)
        app.router.add_route("*", "/", self._api)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        self._runner, self.endpoint = await serving.serve(self.app(), host, port)
        return self.endpoint

    async def stop(self) -> None:
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

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Until every scheduled push has been made."""
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(list(self._tasks), timeout=max(0.0, deadline - time.monotonic()))

    def fail(self, code: str, times: int = 1, status: int = 200, retry_after_ms: int | None = None) -> None:
        """Answer the next `times` SendSms calls with `code`."""
        self.faults += [Fault(code, status, retry_after_ms)] * times

    # -- the API --

    async def _api(self, request: web.Request) -> web.Response:
        self.stats.requests += 1
        body = await request.read()
        self.raw.append((request.path_qs, dict(request.headers), body))
        if self.delay:
            await asyncio.sleep(self.delay)
        refused = self._authenticate(request, body)
        if refused is not None:
            self.stats.refused += 1
            return refused
        if request.headers.get("x-acs-action") != "SendSms" or request.headers.get("x-acs-version") != "2017-05-25":
            return _error(404, "InvalidApi.NotFound", "Specified api is not found, please check your url and method.")
        if self.faults:
            fault = self.faults.pop(0)
            self.stats.injected += 1
            headers = {"x-acs-retry-after": str(fault.retry_after_ms)} if fault.retry_after_ms else {}
            if fault.status == 200:
                return _answer({"Code": fault.code, "Message": f"simulated {fault.code}"})
            return _error(fault.status, fault.code, f"simulated {fault.code}", headers)
        return self._send(dict(request.query))

    def _authenticate(self, request: web.Request, body: bytes) -> web.Response | None:
        """The V3 signature (ACS3-HMAC-SHA256), checked the way Aliyun checks it."""
        auth = request.headers.get("Authorization", "")
        algorithm, _, rest = auth.partition(" ")
        parts = dict(p.strip().split("=", 1) for p in rest.split(",") if "=" in p)
        if algorithm != ALGORITHM or not {"Credential", "SignedHeaders", "Signature"} <= parts.keys():
            return _error(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards.")
        secret = self.keys.get(parts["Credential"])
        if secret is None:
            return _error(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        signed = parts["SignedHeaders"].split(";")
        if not set(REQUIRED_SIGNED) <= set(signed) or any(h not in request.headers for h in signed):
            return _error(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards.")
        payload = hashlib.sha256(body).hexdigest()
        if request.headers["x-acs-content-sha256"] != payload:
            return _error(400, "SignatureDoesNotMatch", "The request body does not match x-acs-content-sha256.")
        canonical = "\n".join([
            request.method, request.path or "/", canonical_query(request.query),
            "".join(f"{h}:{request.headers[h].strip()}\n" for h in sorted(signed)), ";".join(sorted(signed)),
            payload])
        to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        expected = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, parts["Signature"]):
            return _error(400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation.")
        try:
            sent = datetime.strptime(request.headers["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            return _error(400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted.")
        if abs(datetime.now(timezone.utc) - sent) > CLOCK_SKEW:
            return _error(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
        nonce, now = request.headers["x-acs-signature-nonce"], time.monotonic()
        if nonce in self._nonces:
            return _error(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
        self._nonces[nonce] = now
        while next(iter(self._nonces.values())) < now - CLOCK_SKEW.total_seconds():  # older ones are stale anyway
            self._nonces.popitem(last=False)
        return None

    def _send(self, query: dict[str, str]) -> web.Response:
        def reject(code: str, message: str) -> web.Response:
            self.stats.rejected += 1
            return _answer({"Code": code, "Message": message})

        numbers = [n.strip() for n in query.get("PhoneNumbers", "").split(",") if n.strip()]
        if not numbers:
            return reject("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
        if len(numbers) > MAX_NUMBERS:
            return reject("isv.MOBILE_COUNT_OVER_LIMIT", "手机号码数量超过限制")
        matched = [NUMBER_RE.match(n) for n in numbers]
        if not all(matched):
            return reject("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
        sign = query.get("SignName", "")
        if sign not in self.sign_names:
            return reject("isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名")
        code = query.get("TemplateCode", "")
        if code not in self.templates:
            return reject("isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板")
        try:
            params = json.loads(query.get("TemplateParam") or "{}")
        except ValueError:
            params = None
        if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
            return reject("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
        missing = [v for v in VARIABLE_RE.findall(self.templates[code]) if v not in params]
        if missing:
            return reject("isv.TEMPLATE_MISSING_PARAMETERS", f"模版缺少变量: {', '.join(missing)}")
        if any(len(v) > PARAM_MAX_CHARS and not v.startswith(("https://", "http://")) for v in params.values()):
            return reject("isv.PARAM_LENGTH_LIMIT", "参数超出长度限制")
        text = f"【{sign}】" + VARIABLE_RE.sub(lambda m: params[m.group(1)], self.templates[code])
        biz_id = f"{next(self._biz)}^0"
        for m in matched:
            phone = m.group(1) or m.group(2)
            record = SmsRecord(biz_id, phone, sign, code, params, query.get("OutId", ""), text)
            self.messages.append(record)
            self.stats.messages += 1
            self._later(self._deliver(record))
        return _answer({"Code": "OK", "Message": "OK", "BizId": biz_id})

    # -- the phones, and the pushes --

    def _later(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, record: SmsRecord) -> None:
        phone = self.phones.get(record.phone, Phone())
        await asyncio.sleep(self.report_after)
        if self.report_url:
            now = _beijing(time.time())
            chars = len(record.text)
            await self.push("reports", [{
                "phone_number": record.phone, "send_time": _beijing(record.at), "report_time": now,
                "success": phone.delivered, "err_code": "DELIVERED" if phone.delivered else phone.err_code,
                "err_msg": "用户接收成功" if phone.delivered else "用户接收失败",
                "sms_size": str(1 if chars <= 70 else -(-chars // 67)), "biz_id": record.biz_id,
                "out_id": record.out_id}])
        if phone.delivered and phone.reply is not None:
            await asyncio.sleep(phone.reply_after)
            await self.reply(record.phone, phone.reply, record.sign_name)

    async def reply(self, phone: str, content: str, sign_name: str | None = None) -> None:
        """A person texts `content` from `phone` (11 digits): pushed as SmsUp."""
        if self.up_url:
            await self.push("replies", [{
                "phone_number": phone, "send_time": _beijing(time.time()), "content": content,
                "sign_name": sign_name or next(iter(self.sign_names), ""), "dest_code": self.dest_code,
                "sequence_id": next(self._sequence)}])

    async def push(self, kind: str, items: list[dict]) -> int | None:
        """POST a JSON array to the report or up URL; the HTTP status (None: unreachable)."""
        url = self.report_url if kind == "reports" else self.up_url
        self.stats.pushes += 1
        status, ok = None, False
        try:
            async with self._session.post(url, json=items) as response:
                status = response.status
                answer = await response.json(content_type=None) if status == 200 else None
                ok = isinstance(answer, dict) and answer.get("code") == 0
        except (aiohttp.ClientError, OSError, ValueError, asyncio.TimeoutError):
            pass
        if not ok:
            self.stats.pushes_failed += 1
        self.pushes.append((kind, items, status))
        return status

    # -- control --

    async def _control(self, request: web.Request) -> web.Response:
        data = await request.json()
        if "fail" in data:
            fail = data["fail"]
            self.fail(fail["code"], int(fail.get("times", 1)), int(fail.get("status", 200)))
        if "delay" in data:
            self.delay = float(data["delay"])
        for phone, text in (data.get("reply_now") or {}).items():
            self._later(self.reply(phone, text))
        return web.json_response({"ok": True})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({**asdict(self.stats), "pending": len(self._tasks)})


def canonical_query(query: Any) -> str:
    """Parameters sorted by name, names and values percent-encoded (RFC 3986, `~` kept)."""
    pairs = sorted((k, v) for k, v in query.items())
    return "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in pairs)


def _answer(data: dict) -> web.Response:
    return web.Response(text=json.dumps({"RequestId": str(uuid.uuid4()).upper(), **data}, ensure_ascii=False),
                        content_type="application/json", charset="utf-8")


def _error(status: int, code: str, message: str, headers: dict | None = None) -> web.Response:
    body = {"RequestId": str(uuid.uuid4()).upper(), "HostId": "dysmsapi.aliyuncs.com", "Code": code,
            "Message": message}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", charset="utf-8",
                        headers=headers)


def _beijing(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, BEIJING).strftime("%Y-%m-%d %H:%M:%S")


# --- as a process ---------------------------------------------------------------------------

def serve(access_key_id: str, access_key_secret: str, *, host: str = "127.0.0.1", port: int = 0,
          sign_names: tuple[str, ...] = ("县预警中心",), templates: dict[str, str] | None = None,
          report_url: str | None = None, up_url: str | None = None, replies: dict[str, str] | None = None,
          report_after: float = 0.5) -> None:
    """Serve until SIGINT or SIGTERM, the endpoint printed first (`warnd sim aliyun`); `replies`:
    11-digit number → the text it answers every SMS with, a second after the report."""
    phones = {number: Phone(reply=text, reply_after=1.0) for number, text in (replies or {}).items()}
    sim = AliyunSimulator(access_key_id, access_key_secret, sign_names=sign_names, templates=templates,
                          report_url=report_url, up_url=up_url, phones=phones, report_after=report_after)
    asyncio.run(_serve(sim, host, port))


async def _serve(sim: AliyunSimulator, host: str, port: int) -> None:
    endpoint = await sim.start(host, port)
    print(endpoint, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sim.stop()


def main(argv: list[str] | None = None) -> None:
    """`python -m warnd.sim.aliyun`: the click command `warnd sim aliyun` (exits)."""
    from warnd.sim.cli import aliyun
    aliyun.main(args=argv, prog_name="python -m warnd.sim.aliyun")


if __name__ == "__main__":
    main()
