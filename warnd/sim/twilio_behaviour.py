"""How the people behind the numbers, and the provider itself, behave in the Twilio simulator,
and the timelines that play those behaviours (one asyncio task per message or call).

Every phone number has a `Behaviour`; numbers without one get the scenario's default
(SMS delivered, no reply; calls answered after 2 s, nothing pressed, hung up 5 s later).
Times are simulated seconds: the simulator divides them by its `speed`.

A scenario file (YAML or JSON; quote the numbers, `+86…` unquoted is a YAML integer):

    speed: 10
    inbound_sms_url: http://127.0.0.1:8080/providers/sms/replies
    faults: {rate_429: 0.05, rate_5xx: 0.01, latency: 0.02, max_per_second: 200, retry_after: 1}
    default: {sms: deliver, call: answer, answer_after: 2}
    numbers:
      "+8613800000001": {reply: {after: 10, text: "1"}}
      "+8613800000002": {press: "1", press_after: 3}
      "+8613800000003": {phone_off: true}
      "+8613800000004": {invalid: true}          # both sms and call: invalid
      "+8613800000005": {sms: undelivered, sms_error: 30006, call: busy}

Per number: `sms` deliver | undelivered | failed | invalid (the create itself fails, 21211);
`sms_error` the ErrorCode of undelivered / failed (default 30003 / 30008); `sent_after`,
`deliver_after` (from creation to `sent` and to the final status); `reply` {after (after
delivery), text}; `call` answer | no-answer | busy | failed | invalid; `answer_after`;
`press` a digit or null, `press_after` (after answering); `hangup_after` (after answering,
when nothing is pressed); `phone_off` (SMS undelivered 30003, calls ring out: no-answer).

Spans: `sent_after`, `deliver_after`, `answer_after`, `press_after`, `hangup_after` and
`reply.after` may be `[min, max]`: drawn uniformly for each message or call by the
simulator's seeded RNG. Attempts: `call: {attempts: [no-answer, no-answer, answer]}` plays
the n-th call to the number with the n-th outcome (the last one repeats); `sms: {attempts:
[undelivered, deliver]}` likewise.

Provider faults (`Faults`) apply to every REST request: `rate_429` and `rate_5xx` shares,
`latency` seconds (simulated), `max_per_second` requests (real seconds: the HTTP client
runs in real time), `retry_after` (the Retry-After header of a 429, real seconds).
Fault windows override them for a while, in simulated seconds from the scenario's start
(`Scenario.epoch`, a real timestamp; default: when the simulator started):

    faults:
      rate_5xx: 0.01                                  # constant
      windows:                                        # or `faults: [ …windows… ]` alone
        - {from: 0, until: 120, rate_429: 1.0, retry_after: 5}
        - {from: 300, until: 360, rate_5xx: 0.5}
"""
from __future__ import annotations

import itertools
import random
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from warnd.sim.twilio_api import (API_VERSION, CallRecord, Document, MessageRecord, ReplyRecord, new_sid,
                                  parse_twiml, rfc2822, segments)

if TYPE_CHECKING:
    from warnd.sim.twilio import TwilioSimulator

SMS_OUTCOMES = frozenset({"deliver", "undelivered", "failed", "invalid"})
CALL_OUTCOMES = frozenset({"answer", "no-answer", "busy", "failed", "invalid"})
SMS_ERRORS = {"undelivered": 30003, "failed": 30008}
SPANS = ("sent_after", "deliver_after", "answer_after", "press_after", "hangup_after")

Span = float | tuple[float, float]  # simulated seconds, or [min, max] drawn per message or call


def _span(name: str, value: Any) -> Span:
    """A number or a [min, max] pair (read from a file or /_control) → a Span; ValueError names `name`."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise ValueError(f"{name}: expected seconds or [min, max], got {value!r}")
        low, high = sorted(float(v) for v in value)
        if low < 0:
            raise ValueError(f"{name}: must not be negative")
        return (low, high)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}: expected seconds or [min, max], got {value!r}")
    if value < 0:
        raise ValueError(f"{name}: must not be negative")
    return float(value)


def _draw(value: Span, rng: random.Random) -> float:
    return round(rng.uniform(*value), 3) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class Reply:
    after: Span = 0.0  # simulated seconds after delivery, or [min, max]
    text: str = "1"


@dataclass(frozen=True)
class Behaviour:
    sms: str = "deliver"
    sms_error: int | None = None
    sent_after: Span = 0.1
    deliver_after: Span = 1.0
    reply: Reply | None = None
    call: str = "answer"
    answer_after: Span = 2.0
    press: str | None = None
    press_after: Span = 1.0
    hangup_after: Span = 5.0
    phone_off: bool = False
    sms_attempts: tuple[str, ...] = ()  # the n-th SMS to the number: the n-th outcome (the last repeats)
    call_attempts: tuple[str, ...] = ()  # the n-th call likewise

    def __post_init__(self) -> None:
        for outcome in (self.sms, *self.sms_attempts):
            if outcome not in SMS_OUTCOMES:
                raise ValueError(f"sms: expected one of {sorted(SMS_OUTCOMES)}, got {outcome!r}")
        for outcome in (self.call, *self.call_attempts):
            if outcome not in CALL_OUTCOMES:
                raise ValueError(f"call: expected one of {sorted(CALL_OUTCOMES)}, got {outcome!r}")
        if self.press is not None and (len(self.press) < 1 or any(c not in "0123456789*#" for c in self.press)):
            raise ValueError(f"press: expected digits, got {self.press!r}")
        for name in SPANS:
            _span(name, getattr(self, name))
        if self.reply is not None:
            _span("reply.after", self.reply.after)

    def sms_attempt(self, n: int, rng: random.Random) -> Behaviour:
        """What the number does with its n-th SMS (0-based): that attempt's outcome, spans drawn."""
        attempts = self.sms_attempts
        b = self if not attempts else replace(self, sms=attempts[min(n, len(attempts) - 1)])
        return b._drawn(rng)

    def call_attempt(self, n: int, rng: random.Random) -> Behaviour:
        """What the number does with its n-th call (0-based): that attempt's outcome, spans drawn."""
        attempts = self.call_attempts
        b = self if not attempts else replace(self, call=attempts[min(n, len(attempts) - 1)])
        return b._drawn(rng)

    def _drawn(self, rng: random.Random) -> Behaviour:
        """Every [min, max] span replaced by a value drawn from `rng` (the RNG is untouched without spans)."""
        values: dict[str, Any] = {n: _draw(getattr(self, n), rng) for n in SPANS if isinstance(getattr(self, n), tuple)}
        if self.reply is not None and isinstance(self.reply.after, tuple):
            values["reply"] = Reply(_draw(self.reply.after, rng), self.reply.text)
        return replace(self, **values) if values else self

    @property
    def sms_outcome(self) -> str:
        return "undelivered" if self.phone_off and self.sms == "deliver" else self.sms

    @property
    def call_outcome(self) -> str:
        return "no-answer" if self.phone_off and self.call == "answer" else self.call

    @property
    def sms_error_code(self) -> int | None:
        if self.phone_off and self.sms == "deliver":
            return 30003
        return self.sms_error or SMS_ERRORS.get(self.sms)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: Behaviour | None = None) -> Behaviour:
        """Read one behaviour (unknown keys are an error); keys not given keep `base`'s values."""
        values = dict(data)
        if values.pop("invalid", False):
            values.setdefault("sms", "invalid")
            values.setdefault("call", "invalid")
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown behaviour settings: {sorted(unknown)}")
        for kind in ("sms", "call"):
            if isinstance(values.get(kind), Mapping):
                values[kind], values[f"{kind}_attempts"] = "deliver" if kind == "sms" else "answer", \
                    _attempts(kind, values[kind])
            elif f"{kind}_attempts" in values:
                values[f"{kind}_attempts"] = tuple(values[f"{kind}_attempts"] or ())
            elif kind in values:
                values[f"{kind}_attempts"] = ()  # a plain outcome replaces the base's attempts
        for name in SPANS:
            if name in values:
                values[name] = _span(name, values[name])
        reply = values.get("reply")
        if isinstance(reply, Mapping):
            extra = set(reply) - {"after", "text"}
            if extra:
                raise ValueError(f"reply: unknown settings {sorted(extra)} (after, text)")
            values["reply"] = Reply(after=_span("reply.after", reply.get("after", 0)), text=str(reply.get("text", "1")))
        elif isinstance(reply, str):
            values["reply"] = Reply(text=reply)
        if values.get("press") is not None:
            values["press"] = str(values["press"])
        return replace(base or cls(), **values)


def _attempts(kind: str, spec: Mapping[str, Any]) -> tuple[str, ...]:
    """`{attempts: [no-answer, answer]}` → the outcomes in order."""
    if set(spec) != {"attempts"} or not isinstance(spec["attempts"], (list, tuple)) or not spec["attempts"]:
        raise ValueError(f"{kind}: expected an outcome or {{attempts: [outcome, …]}}, got {dict(spec)!r}")
    return tuple(str(a) for a in spec["attempts"])


@dataclass(frozen=True)
class Faults:
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    latency: float = 0.0
    max_per_second: float | None = None
    retry_after: float = 1.0
    callback_loss: float = 0.0  # share of status callbacks never posted (as when the receiver was down)

    def __post_init__(self) -> None:
        for name in ("rate_429", "rate_5xx", "callback_loss"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}: a share between 0 and 1 is expected")
        if self.latency < 0 or self.retry_after < 0 or (self.max_per_second is not None and self.max_per_second <= 0):
            raise ValueError("latency and retry_after must not be negative, max_per_second must be positive")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: Faults | None = None) -> Faults:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        return replace(base or cls(), **data)


@dataclass(frozen=True)
class FaultWindow:
    """Fault settings in force from `start` until `until` (simulated seconds from the scenario's
    start), over the constant ones; settings it does not name keep the constant value."""

    start: float
    until: float
    settings: Mapping[str, Any]

    @classmethod
    def from_dict(cls, data: Any, where: str = "windows[0]") -> FaultWindow:
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: expected {{from, until, …fault settings}}, got {data!r}")
        settings = {k: v for k, v in data.items() if k not in ("from", "until")}
        for key in ("from", "until"):
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{where}.{key}: expected simulated seconds (>= 0), got {value!r}")
        if data["until"] <= data["from"]:
            raise ValueError(f"{where}.until: must come after from ({data['from']:g})")
        if not settings:
            raise ValueError(f"{where}: names no fault setting (rate_429, rate_5xx, latency, …)")
        try:
            Faults.from_dict(settings)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}: {exc}") from None
        return cls(float(data["from"]), float(data["until"]), dict(settings))


def parse_faults(data: Any, base: Faults | None = None) -> tuple[Faults, tuple[FaultWindow, ...] | None]:
    """`faults:` as a file or /_control gives it: a mapping (constant settings, optionally
    `windows: […]`) or a list of windows. Returns (constant faults, windows or None if not given)."""
    if isinstance(data, (list, tuple)):
        constant, windows = {}, data
    elif isinstance(data, Mapping):
        constant = {k: v for k, v in data.items() if k != "windows"}
        windows = data.get("windows")
    else:
        raise ValueError(f"faults: expected a mapping or a list of windows, got {data!r}")
    if windows is not None and not isinstance(windows, (list, tuple)):
        raise ValueError("faults.windows: expected a list of {from, until, …}")
    parsed = None if windows is None else tuple(FaultWindow.from_dict(w, f"faults.windows[{i}]")
                                                  for i, w in enumerate(windows))
    return Faults.from_dict(constant, base), parsed


def _number(key: object) -> str:
    return f"+{key}" if isinstance(key, int) else str(key)


@dataclass
class Scenario:
    default: Behaviour = field(default_factory=Behaviour)
    numbers: dict[str, Behaviour] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    speed: float = 1.0
    inbound_sms_url: str | None = None
    windows: tuple[FaultWindow, ...] = ()
    epoch: float | None = None  # the real time of the scenario's T+0 (windows count from it)

    def behaviour(self, number: str) -> Behaviour:
        return self.numbers.get(number, self.default)

    def elapsed(self, now: float) -> float:
        """Simulated seconds from the scenario's start at real time `now`."""
        return (now - (self.epoch if self.epoch is not None else now)) * self.speed

    def faults_at(self, now: float) -> Faults:
        """The faults in force at real time `now`: the constant ones, under every window open then."""
        if not self.windows:
            return self.faults
        t = self.elapsed(now)
        open_ = [w for w in self.windows if w.start <= t < w.until]
        if not open_:
            return self.faults
        settings: dict[str, Any] = {}
        for w in open_:  # later windows win where they overlap
            settings.update(w.settings)
        return replace(self.faults, **settings)

    def update(self, data: Mapping[str, Any]) -> None:
        """Apply a (partial) scenario description: the file format, also used by POST /_control."""
        unknown = set(data) - {"default", "numbers", "faults", "speed", "inbound_sms_url", "epoch"}
        if unknown:
            raise ValueError(f"unknown scenario settings: {sorted(unknown)}")
        if "default" in data:
            self.default = Behaviour.from_dict(data["default"] or {}, self.default)
        for number, behaviour in (data.get("numbers") or {}).items():
            self.numbers[_number(number)] = Behaviour.from_dict(behaviour or {}, self.default)
        if "faults" in data:
            self.faults, windows = parse_faults(data["faults"] or {}, self.faults)
            if windows is not None:
                self.windows = windows
        if "epoch" in data:
            self.epoch = None if data["epoch"] is None else float(data["epoch"])
        if "speed" in data:
            speed = float(data["speed"])
            if speed <= 0:
                raise ValueError("speed: must be positive")
            self.speed = speed
        if "inbound_sms_url" in data:
            self.inbound_sms_url = data["inbound_sms_url"]

    def describe(self) -> dict[str, Any]:
        return {"speed": self.speed, "inbound_sms_url": self.inbound_sms_url, "epoch": self.epoch,
                "faults": {**asdict(self.faults), "windows": [{"from": w.start, "until": w.until, **w.settings}
                                                             for w in self.windows]},
                "default": asdict(self.default), "numbers": {n: asdict(b) for n, b in self.numbers.items()}}

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        """Read a YAML or JSON scenario file (JSON is YAML)."""
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: a mapping is expected at the top")
        scenario = cls()
        scenario.update(data)
        return scenario


# -- playing a behaviour: one task per message or call, run by TwilioSimulator --

RING_AT = 0.2  # simulated seconds from creation to ringing
HANGUP_AFTER_PRESS = 1.0


async def message_life(sim: TwilioSimulator, m: MessageRecord, b: Behaviour, start: float) -> None:
    outcome = b.sms_outcome
    if m.from_ is None:  # a Messaging Service picks the sender
        m.from_ = sim.messaging_service_from
        await _message_status(sim, m, "queued")
    await sim.at(start, b.sent_after)
    if outcome != "failed":
        m.sent_at = time.time()
        await _message_status(sim, m, "sent")
        await sim.at(start, max(b.sent_after, b.deliver_after))
    final = "delivered" if outcome == "deliver" else outcome
    m.error_code = None if final == "delivered" else b.sms_error_code
    await _message_status(sim, m, final)
    sim.write("message_status", sid=m.sid, status=final, error_code=m.error_code)
    if final == "delivered" and b.reply is not None:
        await sim.at(start, max(b.sent_after, b.deliver_after) + b.reply.after)
        await reply(sim, m, b.reply.text)


async def _message_status(sim: TwilioSimulator, m: MessageRecord, status: str) -> None:
    m.status, m.updated_at = status, time.time()
    if m.status_callback is None or sim.loses_callback():
        return
    params = {"AccountSid": m.account_sid, "ApiVersion": API_VERSION, "From": m.from_ or "",
              "MessageSid": m.sid, "MessageStatus": status, "SmsSid": m.sid, "SmsStatus": status,
              "To": m.to}
    if m.messaging_service_sid:
        params["MessagingServiceSid"] = m.messaging_service_sid
    if m.error_code is not None:
        params["ErrorCode"] = str(m.error_code)
    await sim.post(m.status_callback, params)


async def reply(sim: TwilioSimulator, m: MessageRecord, text: str) -> None:
    """The person `m` went to answers it: Twilio logs the inbound message (listed from now
    on, whether or not the webhook takes it), then POSTs it to the inbound webhook once."""
    sid, url, now = new_sid("SM"), sim.scenario.inbound_sms_url, time.time()
    ours = m.from_ or sim.messaging_service_from
    sim.inbound[sid] = MessageRecord(sid, m.account_sid, ours, m.to, m.messaging_service_sid, text, segments(text),
                                     "received", now, sent_at=now, updated_at=now, direction="inbound")
    status, answers = None, ()
    if url:
        params = {"AccountSid": m.account_sid, "ApiVersion": API_VERSION, "Body": text, "From": m.to,
                  "MessageSid": sid, "NumMedia": "0", "NumSegments": str(segments(text)),
                  "SmsMessageSid": sid, "SmsSid": sid, "SmsStatus": "received", "To": ours}
        if m.messaging_service_sid:
            params["MessagingServiceSid"] = m.messaging_service_sid
        answer = await sim.post(url, params)
        if answer is not None:
            status = answer[0]
            try:
                answers = parse_twiml(answer[1]).messages if answer[1].strip() else ()
            except ValueError:
                answers = ()
    sim.stats.replies += 1
    sim.replies.append(ReplyRecord(sid, m.to, ours, text, now, status, answers))
    sim.write("reply", sid=sid, from_=m.to, to=ours, body=text, http_status=status, received_at=now)


async def call_life(sim: TwilioSimulator, c: CallRecord, b: Behaviour, start: float) -> None:
    outcome = b.call_outcome
    sequence = itertools.count()
    await _call_event(sim, c, "initiated", "initiated", next(sequence))
    if outcome in ("busy", "failed"):
        await sim.at(start, RING_AT)
        return await _call_end(sim, c, outcome, 0, next(sequence))
    ring_at = min(RING_AT, b.answer_after)
    await sim.at(start, ring_at)
    c.status = "ringing"
    await _call_event(sim, c, "ringing", "ringing", next(sequence))
    if outcome == "no-answer" or b.answer_after > ring_at + c.timeout:
        await sim.at(start, ring_at + c.timeout)
        return await _call_end(sim, c, "no-answer", 0, next(sequence))
    await sim.at(start, b.answer_after)
    c.status, c.start_time = "in-progress", time.time()
    await _call_event(sim, c, "answered", "in-progress", next(sequence))
    document = await _twiml(sim, c)
    talk = b.hangup_after
    if document is not None and document.gather is not None and b.press:
        await sim.at(start, b.answer_after + b.press_after)
        c.digits = b.press
        sim.stats.presses += 1
        await _gathered(sim, c, document.gather.action, b.press)
        talk = b.press_after + HANGUP_AFTER_PRESS
    await sim.at(start, b.answer_after + talk)
    await _call_end(sim, c, "completed", round(talk), next(sequence))


def _call_params(c: CallRecord, status: str) -> dict[str, str]:
    return {"AccountSid": c.account_sid, "ApiVersion": API_VERSION, "CallSid": c.sid, "CallStatus": status,
            "Called": c.to, "Caller": c.from_, "Direction": "outbound-api", "From": c.from_, "To": c.to}


async def _call_event(sim: TwilioSimulator, c: CallRecord, event: str, status: str, sequence: int,
                      extra: dict[str, str] | None = None) -> None:
    if c.status_callback is None or (event != "completed" and event not in c.events) or sim.loses_callback():
        return
    params = _call_params(c, status)
    params.update(CallbackSource="call-progress-events", SequenceNumber=str(sequence),
                  Timestamp=rfc2822(time.time()) or "", **(extra or {}))
    await sim.post(c.status_callback, params)


async def _call_end(sim: TwilioSimulator, c: CallRecord, status: str, duration: int, sequence: int) -> None:
    c.status, c.end_time, c.duration = status, time.time(), duration
    await _call_event(sim, c, "completed", status, sequence,
                      {"CallDuration": str(duration), "Duration": str(-(-duration // 60))})
    sim.write("call_status", sid=c.sid, status=status, duration=duration, digits=c.digits,
              says=[asdict(s) for s in c.says], errors=c.errors)


async def _twiml(sim: TwilioSimulator, c: CallRecord) -> Document | None:
    text, base = c.twiml, None
    if text is None and c.url is not None:
        answer = await sim.post(c.url, _call_params(c, "in-progress"))
        if answer is None or not 200 <= answer[0] < 300:
            c.errors.append(f"Url {c.url} answered {answer[0] if answer else 'nothing'}")
            return None
        text, base = answer[1], c.url
    try:
        document = parse_twiml(text or "", base)
    except ValueError as exc:
        c.errors.append(f"TwiML: {exc}")
        return None
    c.says.extend(document.says)
    return document


async def _gathered(sim: TwilioSimulator, c: CallRecord, action: str | None, digits: str) -> None:
    """POST the digits to the Gather's action (always POST, whatever its `method`)."""
    if action is None:
        c.errors.append("Gather has no absolute action URL")
        return
    params = _call_params(c, "in-progress")
    params.update(Digits=digits, FinishedOnKey="")
    answer = await sim.post(action, params)
    if answer is not None and 200 <= answer[0] < 300 and answer[1].strip():
        try:
            c.says.extend(parse_twiml(answer[1], action).says)
        except ValueError as exc:
            c.errors.append(f"Gather action TwiML: {exc}")
