"""The channel contract: what the engine, store, HTTP layer and planning know of a channel.

A channel is one module in `channels/` that declares a `ChannelSpec` (its facts and
abilities) and implements `Channel` (render, send, close). Everything outside
`channels/` and the configuration reads the spec, never a channel's name: which
audience it reaches, which address it uses, whether its receivers drop duplicates,
whether its recipients are public outlets, and what it can take in from its provider
(receipts, replies, key presses) through the generic route
`/providers/{channel}/{kind}`. (渠道契约：引擎只读渠道声明的能力，不认渠道名字。)
"""
from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

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
    operator: bool = False  # needs a person, not a retry (the provider refused our credentials)


class Audience(str, enum.Enum):
    """Whom a channel's deliveries go to, which decides where planning finds them."""

    PERSON = "person"  # people of the directory with a role the routing names (by phone)
    SUBSCRIBER = "subscriber"  # downstream systems that subscribed (by URL)
    DEVICE = "device"  # loudspeakers in the target grids (by device id)
    HOUSEHOLD = "household"  # households, in door-to-door follow-ups (by phone)
    GROUP = "group"  # a region's group chat (by the region's group address)


class RecipientKind(str, enum.Enum):
    PERSON = "person"
    SUBSCRIBER = "subscriber"
    SPEAKER = "speaker"
    HOUSEHOLD = "household"
    GROUP = "group"


AUDIENCE_KIND = {Audience.PERSON: RecipientKind.PERSON, Audience.SUBSCRIBER: RecipientKind.SUBSCRIBER,
                 Audience.DEVICE: RecipientKind.SPEAKER, Audience.HOUSEHOLD: RecipientKind.HOUSEHOLD,
                 Audience.GROUP: RecipientKind.GROUP}


@dataclass(frozen=True, slots=True)
class Recipient:
    kind: str  # a RecipientKind value: person / subscriber / speaker / household / group
    id: str
    address: str  # URL, phone number, device id or group address
    language: str = "zh-CN"
    format: str = "cap"  # for subscribers: cap | json
    secret: str = ""  # for subscribers: the Standard Webhooks secret
    public: bool = False  # a public outlet never carries Exercise/Test warnings
    mentions: tuple[str, ...] = ()  # for groups: the phone numbers of the people to mention


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

    def render(self, message: Message) -> Rendered: ...

    async def send(self, message: Message, rendered: Rendered) -> SendResult: ...

    async def close(self) -> None: ...


# --- what a provider says later ----------------------------------------------------------

class ReceiptState(str, enum.Enum):
    SENT = "sent"  # still on its way: nothing new
    DELIVERED = "delivered"
    FAILED = "failed"
    RETRY = "retry"  # not answered, busy: send again per the channel's retry policy


@dataclass(frozen=True)
class Receipt:
    state: ReceiptState
    code: str  # "twilio.delivered", "twilio.30003", "aliyun.DELIVERED" …
    provider_ref: str
    detail: str = ""


@dataclass(frozen=True)
class Reply:
    """A text a person sent us (a webhook, or a provider's log read after a restart)."""

    provider_ref: str  # the provider's id for it: a reply is applied once per id
    from_address: str
    body: str
    received_at: datetime | None = None  # None: now


@dataclass(frozen=True)
class KeyPress:
    delivery_id: int  # the call it was pressed on (signed into the callback URL)
    digits: str
    from_address: str
    provider_ref: str | None  # the call's id: a key press is applied once per call


@dataclass(frozen=True)
class ProviderSend:
    """A message or call as a provider's lookup returns it, read like a status callback."""

    sid: str
    created_at: datetime
    receipt: Receipt  # state SENT while it is still on its way


MATCH_SKEW = timedelta(seconds=5)  # providers' dates are whole seconds, and their clocks are not ours


def send_window(handed_at: datetime | None, created_at: datetime, updated_at: datetime,
                send_seconds: float) -> tuple[datetime, datetime]:
    """When the provider may have created a send: from its hand to the send's deadline
    (`send_seconds`: the channel's timeout and the dispatcher's margin), give or take the
    skew. Sends from before the handed mark: from the delivery's planning to when it
    became uncertain."""
    if handed_at is None:
        return created_at - MATCH_SKEW, updated_at + MATCH_SKEW
    return handed_at - MATCH_SKEW, handed_at + timedelta(seconds=send_seconds) + MATCH_SKEW


def pick(wanted: list[tuple[int, datetime, datetime]], sends: list[ProviderSend],
         taken: set[str]) -> dict[int, ProviderSend | None]:
    """Which provider send is which uncertain delivery (`wanted`: id, window start, end, all
    to one number): earliest window first, each takes the earliest send in its window that
    no delivery owns (`taken`) and no earlier one took; None: the provider does not have it."""
    free = sorted((s for s in sends if s.sid not in taken), key=lambda s: s.created_at)
    picked: dict[int, ProviderSend | None] = {}
    for key, start, end in sorted(wanted, key=lambda w: (w[1], w[0])):
        match = next((s for s in free if start <= s.created_at <= end), None)
        if match is not None:
            free.remove(match)
        picked[key] = match
    return picked


# --- inbound: what the generic route hands a channel, and what the engine does with it ------

class InboundKind(str, enum.Enum):
    RECEIPTS = "receipts"  # delivery reports / status callbacks
    REPLIES = "replies"  # texts people send back (上行短信)
    KEY_PRESSES = "key_presses"  # digits pressed on a call


@dataclass(frozen=True)
class Answered:
    """What the engine made of a reply or key press, for the channel to answer its provider."""

    text: str  # what to tell the sender (their language, 演练 when it is a drill); "" for nothing
    language: str = "zh-CN"
    replayed: bool = False  # applied before: nothing changed, nothing is to be sent back


class InboundSink(Protocol):
    """The engine, as a channel's inbound handler sees it: each call returns once durable."""

    async def receipt(self, channel: str, delivery_id: int | None, receipt: Receipt,
                      attempt: int | None = None) -> bool: ...

    async def reply(self, channel: str, reply: Reply) -> Answered: ...

    async def key_press(self, channel: str, press: KeyPress) -> Answered: ...

    async def presence(self, device_id: str, online: bool, detail: str = "") -> None: ...


@dataclass(frozen=True)
class InboundRequest:
    """One provider request, read by the HTTP layer, checked and parsed by its channel."""

    method: str
    url: str  # as the provider called it: the configured public base URL + path and query
    query: Mapping[str, str]
    headers: Mapping[str, str]
    form: Mapping[str, str]  # a form body's fields ({} for other bodies)
    body: bytes
    # The delivery and attempt signed into a callback URL this node made ("d"), checked
    # for the channel and kind it was made for; raises WarndError when forged or expired.
    signed_delivery: Callable[[], tuple[int, int | None]]


@dataclass(frozen=True)
class InboundResponse:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain"


InboundHandler = Callable[[Any, InboundRequest, InboundSink], Awaitable[InboundResponse]]


@dataclass(frozen=True)
class Inbound:
    kind: InboundKind
    handle: InboundHandler  # (the channel, the request, the engine) → the provider's answer
    legacy_path: str = ""  # an older URL that keeps working (Twilio's /twilio/sms/status …)


# --- the spec --------------------------------------------------------------------------

@dataclass(frozen=True)
class ChannelSpec:
    """What a channel is, declared once in its module and read by everything else."""

    name: str
    audience: Audience
    address: str  # the recipient's field it uses: "phone", "url", "device", "group"
    dedupes: bool  # receivers drop duplicates, so a lost claim may be re-sent safely
    public: bool  # its recipients are public outlets unless the directory says otherwise
    config_model: type  # the channel's configuration section (pydantic), validated at load
    build: Callable[..., Channel]  # (its config, the whole config, callback URLs) → the channel
    inbound: Mapping[str, Inbound] = field(default_factory=dict)  # URL kind → what it takes in
    callbacks: bool = False  # its provider calls back a signed URL given per send (built only with them)
    stream: bool = False  # it holds its own inbound stream (MQTT acks, presence): started with the node
    confirm_by_text: bool = False  # a recipient can answer with a text ("回复1确认"), so it is told how
    status_lookup: bool = False  # the channel can ask its provider about an uncertain send (find/status)
    replies_lookup: bool = False  # the channel can read replies its provider got while warnd was down
    door_list: bool = False  # can carry a door-to-door list's link to the person who walks it
    calls: bool = False  # a voice call: answered counts as told for a not-at-home household
    notices: bool = False  # sends texts of no warning (summaries, roster asks): `send_notice(address, text)`

    def takes(self, kind: InboundKind) -> bool:
        return any(i.kind is kind for i in self.inbound.values())


CallbackUrl = Callable[[str, int], str]  # (inbound kind of this channel, delivery id) → absolute signed URL



# --- policy: drills never reach public outlets ----------------------------------------------

DRILL_PUBLIC = SendResult(Outcome.FAILED, "drill.public", detail="Exercise/Test warnings never reach public outlets")


def reaches_public(recipient: Recipient, channel_public: bool) -> bool:
    """Is this recipient a public outlet? A subscriber says so itself (the directory's
    flag); anyone else is public when the channel is (loudspeakers, by default) or the
    recipient was marked public."""
    if recipient.kind == RecipientKind.SUBSCRIBER.value:
        return recipient.public
    return channel_public or recipient.public


def drill_blocked(alert: Alert, recipient: Recipient, channel_public: bool) -> bool:
    """Decided in planning and checked once more before a send (an Update may have turned
    a warning into an exercise after its deliveries were planned)."""
    return alert.status.is_drill and reaches_public(recipient, channel_public)
