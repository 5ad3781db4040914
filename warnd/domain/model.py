"""The warning as warnd sees it: CAP 1.2 content in frozen dataclasses.

Field names follow CAP element names (snake_case) so that XML, JSON and the
database all speak the same vocabulary.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class Level(enum.IntEnum):
    """Chinese warning levels; a higher number is more urgent (sorts first)."""

    BLUE = 1  # IV 蓝
    YELLOW = 2  # III 黄
    ORANGE = 3  # II 橙
    RED = 4  # I 红

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def zh(self) -> str:
        return {1: "蓝色", 2: "黄色", 3: "橙色", 4: "红色"}[self.value]

    @property
    def roman(self) -> str:
        return {1: "IV", 2: "III", 3: "II", 4: "I"}[self.value]

    @classmethod
    def parse(cls, text: str) -> "Level":
        """Accept red / 红 / 红色 / I / 1 … ; raise ValueError for anything else."""
        key = text.strip().lower()
        for level in cls:
            names = {level.label, level.zh, level.zh[0], level.roman.lower(),
                     str(5 - level.value)}
            if key in names:
                return level
        raise ValueError(text)


SEVERITY_LEVELS = {"Extreme": Level.RED, "Severe": Level.ORANGE,
                   "Moderate": Level.YELLOW, "Minor": Level.BLUE}


class Status(str, enum.Enum):
    ACTUAL = "Actual"
    EXERCISE = "Exercise"
    SYSTEM = "System"
    TEST = "Test"
    DRAFT = "Draft"

    @property
    def is_drill(self) -> bool:
        """Exercise and Test (演练) never reach public channels."""
        return self in (Status.EXERCISE, Status.TEST)


class MsgType(str, enum.Enum):
    ALERT = "Alert"
    UPDATE = "Update"
    CANCEL = "Cancel"
    ACK = "Ack"
    ERROR = "Error"


@dataclass(frozen=True)
class Reference:
    sender: str
    identifier: str
    sent: str  # kept as written; only (sender, identifier) identifies a message

    def __str__(self) -> str:
        return f"{self.sender},{self.identifier},{self.sent}"


@dataclass(frozen=True)
class Circle:
    lat: float
    lon: float
    radius_km: float


@dataclass(frozen=True)
class Area:
    area_desc: str
    polygons: tuple[tuple[tuple[float, float], ...], ...] = ()  # (lat, lon) rings
    circles: tuple[Circle, ...] = ()
    geocodes: tuple[tuple[str, str], ...] = ()  # (valueName, value)
    altitude: float | None = None
    ceiling: float | None = None


@dataclass(frozen=True)
class Resource:
    resource_desc: str
    mime_type: str
    size: int | None = None
    uri: str | None = None
    digest: str | None = None
    has_deref_uri: bool = False


@dataclass(frozen=True)
class Info:
    language: str
    categories: tuple[str, ...]
    event: str
    urgency: str
    severity: str
    certainty: str
    response_types: tuple[str, ...] = ()
    audience: str | None = None
    event_codes: tuple[tuple[str, str], ...] = ()
    effective: datetime | None = None
    onset: datetime | None = None
    expires: datetime | None = None
    sender_name: str | None = None
    headline: str | None = None
    description: str | None = None
    instruction: str | None = None
    web: str | None = None
    contact: str | None = None
    parameters: tuple[tuple[str, str], ...] = ()
    resources: tuple[Resource, ...] = ()
    areas: tuple[Area, ...] = ()


@dataclass(frozen=True)
class Alert:
    """One CAP message. `cap_version` is "1.2" or "1.1"."""

    identifier: str
    sender: str
    sent: datetime
    status: Status
    msg_type: MsgType
    scope: str
    cap_version: str = "1.2"
    source: str | None = None
    restriction: str | None = None
    addresses: str | None = None
    codes: tuple[str, ...] = ()
    note: str | None = None
    references: tuple[Reference, ...] = ()
    incidents: str | None = None
    infos: tuple[Info, ...] = ()

    @property
    def expires(self) -> datetime | None:
        """When every info block has expired; None if any block never expires."""
        times = [i.expires for i in self.infos]
        if not times or any(t is None for t in times):
            return None
        return max(times)

    @property
    def drill_or_closed(self) -> bool:
        """Never for public outlets: drills (演练), and CAP scope Restricted or Private."""
        return self.status.is_drill or self.scope in ("Restricted", "Private")

    @property
    def address_list(self) -> tuple[str, ...]:
        """CAP <addresses>: space-separated, an address with spaces in double quotes."""
        text, out = self.addresses or "", []
        while text.strip():
            text = text.strip()
            if text.startswith('"'):
                end = text.find('"', 1)
                end = len(text) if end < 0 else end
                out.append(text[1:end])
                text = text[end + 1:]
            else:
                word, _, text = text.partition(" ")
                out.append(word)
        return tuple(a for a in out if a)

    @property
    def areas(self) -> tuple[Area, ...]:
        return tuple(a for i in self.infos for a in i.areas)

    def info_for(self, language: str) -> Info | None:
        """The info block best matching a recipient language (zh-CN ~ zh-*)."""
        if not self.infos:
            return None
        want = language.lower()
        for info in self.infos:
            if info.language.lower() == want:
                return info
        prefix = want.split("-")[0]
        for info in self.infos:
            if info.language.lower().split("-")[0] == prefix:
                return info
        return self.infos[0]


@dataclass(frozen=True)
class ValidationNote:
    """A non-fatal finding: the alert is accepted, and the note is reported."""

    code: str
    field: str
    message_en: str
    message_zh: str


@dataclass(frozen=True)
class ParsedAlert:
    """What ingestion hands to the engine: the alert, its canonical XML, notes."""

    alert: Alert
    cap_xml: str
    notes: tuple[ValidationNote, ...] = field(default_factory=tuple)
