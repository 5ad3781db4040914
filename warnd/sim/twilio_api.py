"""Twilio's wire format as the simulator speaks it: resources, errors, signatures, TwiML.

Pure functions and records only; `warnd.sim.twilio` serves them. The shapes follow the
2010-04-01 REST API (Messages, Calls) closely enough for the real `twilio` SDK.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
import re
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import formatdate
from typing import Any
from urllib.parse import urlencode, urljoin

API_VERSION = "2010-04-01"
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")

# GSM 03.38: the basic set (one septet each) and the extension table (escape + one septet).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM_EXTENSION = frozenset("^{}\\[~]|€\f")

ERRORS: dict[int, str] = {
    20001: "Invalid {name} value: {value}",
    20003: "Authenticate",
    20404: "The requested resource {uri} was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    20503: "Service is unavailable. Please try again",
    21201: "No 'To' number is specified",
    21205: "Url parameter is required.",
    21211: "The 'To' number {to} is not a valid phone number.",
    21212: "The 'From' number {from_} is not a valid phone number, shortcode, or alphanumeric sender ID.",
    21213: "Caller phone number is required",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21617: "The concatenated message body exceeds the 1600 character limit.",
}
DELIVERY_ERRORS = {30003: "Unreachable destination handset", 30005: "Unknown destination handset",
                   30006: "Landline or unreachable carrier", 30008: "Unknown error"}


class ApiError(Exception):
    """A Twilio REST error: HTTP status, Twilio code and the message Twilio would give."""

    def __init__(self, status: int, code: int, **details: str) -> None:
        self.status, self.code = status, code
        self.message = ERRORS[code].format(**details)
        super().__init__(f"{status} {code} {self.message}")

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message,
                "more_info": f"https://www.twilio.com/docs/errors/{self.code}", "status": self.status}


def new_sid(prefix: str) -> str:
    return prefix + os.urandom(16).hex()


def rfc2822(at: float | None) -> str | None:
    """Twilio's date format, e.g. 'Wed, 01 Jul 2026 00:00:00 +0000'."""
    return None if at is None else formatdate(at, usegmt=False).replace("-0000", "+0000")


def segments(body: str) -> int:
    """SMS segments: GSM-7 160 / 153 septets per segment, else UCS-2 70 / 67 UTF-16 units."""
    septets = 0
    for char in body:
        if char in GSM_BASIC:
            septets += 1
        elif char in GSM_EXTENSION:
            septets += 2
        else:
            units = len(body.encode("utf-16-le")) // 2
            return 1 if units <= 70 else math.ceil(units / 67)
    return 1 if septets <= 160 else math.ceil(septets / 153)


def signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """X-Twilio-Signature: base64 HMAC-SHA1 of the URL + each POST param (sorted by key) as key+value."""
    data = url + "".join(key + params[key] for key in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def check_number(number: str | None, code: int, missing: int) -> str:
    if not number:
        raise ApiError(400, missing)
    if not E164.match(number):
        raise ApiError(400, code, to=number, from_=number)
    return number


# -- records (what the simulator received, and where each resource is now) --

@dataclass
class MessageRecord:
    sid: str
    account_sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    segments: int
    status: str
    created_at: float
    status_callback: str | None = None
    error_code: int | None = None
    sent_at: float | None = None
    updated_at: float | None = None
    direction: str = "outbound-api"  # "inbound": a person's reply, as Twilio logs it


@dataclass(frozen=True)
class Said:
    text: str
    language: str | None = None
    voice: str | None = None
    loop: int = 1


@dataclass
class CallRecord:
    sid: str
    account_sid: str
    to: str
    from_: str
    twiml: str | None
    url: str | None
    status_callback: str | None
    events: frozenset[str]
    timeout: float
    status: str
    created_at: float
    start_time: float | None = None
    end_time: float | None = None
    duration: int | None = None
    says: list[Said] = field(default_factory=list)
    digits: str | None = None
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReplyRecord:
    sid: str
    from_: str  # the person
    to: str  # the sender number they answered
    body: str
    sent_at: float
    http_status: int | None  # the inbound webhook's answer; None when unreachable or not configured
    answers: tuple[str, ...] = ()  # <Message> texts in the webhook's TwiML answer


def _uri(account_sid: str, kind: str, sid: str) -> str:
    return f"/{API_VERSION}/Accounts/{account_sid}/{kind}/{sid}.json"


def message_body(m: MessageRecord) -> dict[str, Any]:
    uri = _uri(m.account_sid, "Messages", m.sid)
    return {
        "account_sid": m.account_sid, "api_version": API_VERSION, "body": m.body,
        "date_created": rfc2822(m.created_at), "date_sent": rfc2822(m.sent_at),
        "date_updated": rfc2822(m.updated_at or m.created_at), "direction": m.direction,
        "error_code": m.error_code, "error_message": DELIVERY_ERRORS.get(m.error_code or 0),
        "from": m.from_, "messaging_service_sid": m.messaging_service_sid, "num_media": "0",
        "num_segments": str(m.segments), "price": None, "price_unit": "USD", "sid": m.sid, "status": m.status,
        "subresource_uris": {"media": uri[:-5] + "/Media.json", "feedback": uri[:-5] + "/Feedback.json"},
        "to": m.to, "uri": uri,
    }


def call_body(c: CallRecord) -> dict[str, Any]:
    uri = _uri(c.account_sid, "Calls", c.sid)
    base = uri[:-5]
    return {
        "account_sid": c.account_sid, "annotation": None, "answered_by": None, "api_version": API_VERSION,
        "caller_name": None, "date_created": rfc2822(c.created_at), "date_updated": rfc2822(time.time()),
        "direction": "outbound-api", "duration": None if c.duration is None else str(c.duration),
        "end_time": rfc2822(c.end_time), "forwarded_from": None, "from": c.from_, "from_formatted": c.from_,
        "group_sid": None, "parent_call_sid": None, "phone_number_sid": None, "price": None,
        "price_unit": "USD", "queue_time": "0", "sid": c.sid, "start_time": rfc2822(c.start_time),
        "status": c.status, "to": c.to, "to_formatted": c.to, "trunk_sid": None, "uri": uri,
        "subresource_uris": {name: f"{base}/{name.title().replace('_', '')}.json"
                             for name in ("notifications", "recordings", "events", "streams", "payments")},
    }


# -- lists: GET …/Messages.json and …/Calls.json, filtered and paged like Twilio's --

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50
DAY = 86400.0
DATE_FILTERS = {"Messages": {"DateSent": "sent_at"},
                "Calls": {"StartTime": "start_time", "EndTime": "end_time"}}
EQUAL_FILTERS = {"Messages": {"To": "to", "From": "from_"},
                 "Calls": {"To": "to", "From": "from_", "Status": "status"}}


def parse_date(name: str, value: str) -> tuple[float, bool]:
    """A date filter's value: (UTC seconds, whether only a day was given). Twilio takes
    `YYYY-MM-DD` (its documented form) and the SDK sends `YYYY-MM-DDTHH:MM:SSZ`."""
    try:
        if len(value) == 10:
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=timezone.utc)
            return day.timestamp(), True
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp(), False
    except ValueError:
        raise ApiError(400, 20001, name=name, value=value) from None


def date_matches(at: float | None, op: str, bound: float, day_only: bool) -> bool:
    """`Field>` on or after, `Field<` on or before (a day: all of it), `Field` on that UTC day.
    A resource without the time (a message still queued has no DateSent) never matches."""
    if at is None:
        return False
    if op == ">":
        return at >= bound
    end = bound + DAY if day_only else bound
    if op == "<":
        return at < end if day_only else at <= end
    start = bound - bound % DAY
    return start <= at < start + DAY


def filter_records(kind: str, records: list[Any], query: Mapping[str, str]) -> list[Any]:
    """The records a list's query selects, newest first (by creation, as Twilio lists them)."""
    selected = records
    for param, attr in EQUAL_FILTERS[kind].items():
        if query.get(param):
            selected = [r for r in selected if getattr(r, attr) == query[param]]
    for param, attr in DATE_FILTERS[kind].items():
        for op in ("", "<", ">"):
            value = query.get(param + op)
            if value:
                bound, day_only = parse_date(param + op, value)
                selected = [r for r in selected if date_matches(getattr(r, attr), op, bound, day_only)]
    order = {id(r): i for i, r in enumerate(records)}
    return sorted(selected, key=lambda r: (r.created_at, order[id(r)]), reverse=True)


def list_page(kind: str, account_sid: str, records: list[Any], query: Mapping[str, str],
              body: Any) -> dict[str, Any]:
    """One page of a list, with Twilio's paging fields: `next_page_uri` carries Page and a
    PageToken (the last SID given), so records created meanwhile do not shift the pages."""
    try:
        size = min(max(int(query.get("PageSize") or DEFAULT_PAGE_SIZE), 1), MAX_PAGE_SIZE)
        page = max(int(query.get("Page") or 0), 0)
    except ValueError:
        raise ApiError(400, 20001, name="PageSize", value=str(query.get("PageSize"))) from None
    token = query.get("PageToken") or ""
    start = page * size
    if token.startswith("PA"):
        after = [i for i, r in enumerate(records) if r.sid == token[2:]]
        start = after[0] + 1 if after else len(records)
    chunk = records[start:start + size]
    kept = {k: v for k, v in query.items() if k not in ("Page", "PageSize", "PageToken")}
    path = f"/{API_VERSION}/Accounts/{account_sid}/{kind}.json"

    def uri(number: int, last: str | None = None) -> str:
        params = {**kept, "PageSize": str(size), "Page": str(number), **({"PageToken": f"PA{last}"} if last else {})}
        return f"{path}?{urlencode(params)}"

    more = start + size < len(records)
    return {kind.lower(): [body(r) for r in chunk], "end": start + len(chunk) - 1 if chunk else start,
            "first_page_uri": uri(0), "next_page_uri": uri(page + 1, chunk[-1].sid) if more and chunk else None,
            "page": page, "page_size": size, "previous_page_uri": uri(page - 1) if page else None,
            "start": start, "uri": uri(page)}


# -- TwiML --

@dataclass(frozen=True)
class Gather:
    action: str | None  # absolute, resolved against the document's URL; None: nowhere to post
    method: str = "POST"
    num_digits: int | None = None


@dataclass(frozen=True)
class Document:
    says: tuple[Said, ...]
    gather: Gather | None
    messages: tuple[str, ...] = ()  # <Message> texts (a messaging webhook's answer)


def parse_twiml(text: str, base_url: str | None = None) -> Document:
    """The Says (in document order, inside Gathers too), the first Gather, and any Messages.

    Raises ValueError for anything that is not a TwiML <Response>.
    """
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise ValueError("TwiML must not carry a DOCTYPE")
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from None
    if root.tag != "Response":
        raise ValueError(f"the root element is <{root.tag}>, not <Response>")
    says: list[Said] = []
    gather: Gather | None = None
    for element in root.iter():
        if element.tag == "Say":
            loop = element.get("loop", "1")
            says.append(Said((element.text or "").strip(), element.get("language"), element.get("voice"),
                             int(loop) if loop.isdigit() else 1))
        elif element.tag == "Gather" and gather is None:
            action = element.get("action") or base_url
            if action and base_url:
                action = urljoin(base_url, action)
            elif action and not re.match(r"^https?://", action):
                action = None
            digits = element.get("numDigits")
            gather = Gather(action, (element.get("method") or "POST").upper(),
                            int(digits) if digits and digits.isdigit() else None)
    messages = tuple((m.text or "").strip() for m in root.iter("Message"))
    return Document(tuple(says), gather, messages)
