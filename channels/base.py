"""The one small interface every channel implements.

A channel holds only the provider: it renders a message for one recipient,
sends it, and says what happened as a typed `SendResult`. It never touches the
database, the scheduler or retries: the dispatcher owns those.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from warnd.domain.model import Alert, Level


class Outcome(str, enum.Enum):
    DELIVERED = "delivered"  # the receiver confirmed it has the message (webhook 2xx)
    SENT = "sent"  # the provider accepted it; a receipt comes later
    RETRY = "retry"  # transient: try again later
    FAILED = "failed"  # permanent: do not try again
    UNCERTAIN = "uncertain"  # may or may not have arrived


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    code: str  # stable: "http.200", "http.429", "timeout", "connect", …
    provider_ref: str | None = None
    retry_after: float | None = None  # seconds, when the provider said so
    detail: str = ""


@dataclass(frozen=True)
class Recipient:
    kind: str  # person / subscriber / speaker / household
    id: str
    address: str  # URL, phone number or topic
    language: str = "zh-CN"
    format: str = "cap"  # for subscribers: cap | json
    secret: str = ""  # for subscribers: the Standard Webhooks secret
    public: bool = False  # a public outlet never carries Exercise/Test warnings


@dataclass(frozen=True)
class Message:
    """Everything a channel needs to render one delivery, and nothing more."""

    delivery_id: int
    warning_id: int
    alert: Alert
    cap_xml: str
    level: Level
    recipient: Recipient
    attempt: int
    created_at: datetime
    must_confirm: bool = False  # the recipient has an open confirmation (叫应) for this warning
    short_code: str = ""  # the warning's reply code, e.g. "W1A" ("回复1确认" or "回复W1A确认")
    purpose: str = "warning"  # warning / door_ask (go to the door) / door_to_door (walk a list) / household
    link: str = ""  # a signed link for the recipient: confirm, or the door-to-door list
    about: Mapping[str, str] | None = None  # door_ask: the grid and the person to wake (grid_name, person, phone)


@dataclass(frozen=True)
class Rendered:
    body: bytes
    content_type: str
    text: str  # human-readable preview (for logs, the API, segment counts)


class Channel(Protocol):
    name: str
    dedupes: bool  # receivers drop duplicates, so a lost claim may be re-sent safely

    def render(self, message: Message) -> Rendered: ...

    async def send(self, message: Message, rendered: Rendered) -> SendResult: ...

    async def close(self) -> None: ...


class ReceiptSink(Protocol):
    """What a channel with its own inbound stream (MQTT acks, presence) reports to the engine."""

    async def receipt(self, channel: str, delivery_id: int, state: str, code: str,
                      provider_ref: str | None, detail: str = "") -> None: ...

    async def presence(self, device_id: str, online: bool, detail: str = "") -> None: ...
