"""Typed configuration, validated once at load.

Levels, deadlines, routing and channel limits are data here, not code. Every
field has a production-sensible default, so an empty file is a valid config.
Every key can be set by an environment variable, `WARND_<SECTION>__<KEY>` (upper
case, `__` between levels: WARND_SMS__ENABLED=true, WARND_TWILIO__AUTH_TOKEN=…,
WARND_DATABASE_URL for a top-level key), its value read as a YAML scalar; it beats the
file, and a command-line option beats both. A WARND_ variable without `__` that names no
top-level key belongs to another tool (WARND_CONFIG, WARND_TOKEN) and is left alone; one
with `__` that names no key is refused like an unknown key in the file.
"""
from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from typing import Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from warnd.domain.errors import Problem, WarndError
from warnd.domain.model import Level, Status
from warnd.ingest.limits import Limits


SIMULATOR_AUTH_TOKEN = "simulator-auth-token"  # public: shipped with warnd's Twilio simulator
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DATABASES = ("sqlite", "postgresql", "postgres")  # a URL's scheme, before any +driver


class ConfigProblem(ValueError):
    """A mistake a validator found, with the key it is about and what to do, in both languages."""

    def __init__(self, key: str, en: str, zh: str) -> None:
        super().__init__(en)
        self.key, self.en, self.zh = key, en, zh


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LevelPolicy(Strict):
    confirm_minutes: float | None = None  # None: no confirmation required


class RoutingRule(Strict):
    """Which channels and roles a warning reaches, by level and status."""

    levels: list[str] = ["red", "orange", "yellow", "blue"]
    statuses: list[Status] = [Status.ACTUAL, Status.EXERCISE, Status.TEST]
    channels: list[str]
    roles: list[str] = []  # person roles; empty for channels with own recipients

    @field_validator("levels")
    @classmethod
    def _known_levels(cls, v: list[str]) -> list[str]:
        for name in v:
            Level.parse(name)
        return v

    def matches(self, level: Level, status: Status) -> bool:
        return level in {Level.parse(n) for n in self.levels} and status in self.statuses


# The channels a rung uses unless it names its own (also for ladders planned before a rung
# could name them).
NOTIFY_CHANNELS = ("sms", "voice")  # notify: the people a rung asks
DOOR_LIST_CHANNELS = ("sms",)  # door_to_door: the walker's list
HOUSEHOLD_CALL_CHANNELS = ("voice",)  # door_to_door with call_households


class RungConfig(Strict):
    """One step of an escalation ladder, `after_minutes` from when the warning was planned."""

    after_minutes: float = Field(ge=0)
    action: Literal["notify", "door_to_door", "alarm"]
    to: list[str] = []  # notify: responsible, backup, superior, liaison, village_head, county_duty
    channels: list[str] = list(NOTIFY_CHANNELS)
    not_woken: bool = False  # put the responsible person on the 未叫醒 list
    ask_door: bool = False  # ask whoever is notified to go to the door
    assign: list[str] = ["backup", "liaison", "superior"]  # door_to_door: who walks it (first found)
    call_households: bool = False  # door_to_door: also call households with a phone
    list_channels: list[str] = list(DOOR_LIST_CHANNELS)  # door_to_door: the list's link to its walker
    household_channels: list[str] = list(HOUSEHOLD_CALL_CHANNELS)  # door_to_door: calls to households


class DoorConfig(Strict):
    """Door-to-door outcomes: what a household's mark (or a walker's SMS report) sets off."""

    not_home_channels: list[str] = ["voice", "sms"]  # 不在家: the household's phone is called and texted
    alarm_to: list[str] = ["superior"]  # 拒绝转移 / 需要帮助: who is told (superior = township duty)
    alarm_channels: list[str] = ["sms"]
    # a not-at-home household's follow-up answered on these channels marks it 已通知 (told):
    # somebody there heard the warning (an SMS delivered proves nobody read it)
    told_by_answered: list[str] = ["voice"]


def _default_ladders() -> dict[str, list[RungConfig]]:
    def ladder(notify: float, door: float, alarm: float) -> list[RungConfig]:
        return [RungConfig(after_minutes=notify, action="notify", to=["backup", "superior"], not_woken=True,
                           ask_door=True),
                RungConfig(after_minutes=door, action="door_to_door", call_households=True),
                RungConfig(after_minutes=alarm, action="alarm")]
    return {"red": ladder(5, 10, 15), "orange": ladder(15, 25, 30),
            "uncovered": [RungConfig(after_minutes=0, action="door_to_door", assign=["liaison", "backup", "superior"],
                                     call_households=True),
                          RungConfig(after_minutes=10, action="alarm")]}


class RetryPolicy(Strict):
    max_attempts: int = Field(8, ge=1)
    base_seconds: float = Field(2.0, gt=0)
    max_seconds: float = Field(300.0, gt=0)


class PerNumber(Strict):
    """Sends one called number may get per sliding minute, hour and day (null: no cap).

    A send over a cap waits (its next_attempt_at) until the cap lets it through: never
    dropped, and the wait is not an attempt. Counted on warnd's clock, per channel."""

    minute: int | None = Field(None, ge=1)
    hour: int | None = Field(None, ge=1)
    day: int | None = Field(None, ge=1)


class ChannelConfig(Strict):
    enabled: bool = True
    concurrency: int = Field(64, ge=1)
    # Shared by every node on the database; SMS count segments, other sends one each.
    rate_per_second: float = Field(500.0, gt=0)
    timeout_seconds: float = Field(10.0, gt=0)
    public: bool = False  # public channels never carry Exercise/Test warnings
    retry: RetryPolicy = RetryPolicy()
    # For this long after a delivery was planned, a send the provider refused (HTTP 429 or
    # 5xx: nothing was sent) is tried again after its Retry-After without using up one of
    # `retry.max_attempts` (a call's redials are for calls that rang); later it counts.
    # 0: a refusal always counts. Next to `retry`, not in it, so overriding one keeps the other.
    refused_free_minutes: float = Field(0.0, ge=0)
    per_number: PerNumber = PerNumber()
    # Messages to people who must confirm carry a signed confirmation link (channels that
    # carry text for people; their own default).
    confirm_link: bool = False

    @field_validator("retry", "per_number", mode="before")
    @classmethod
    def _over_channel_defaults(cls, value: Any, info: ValidationInfo) -> Any:
        """A partial override keeps this channel's other defaults: `voice: {per_number:
        {minute: 10}}` keeps voice's hour and day caps (write null to lift one)."""
        default = cls.model_fields[info.field_name].default
        if isinstance(value, dict) and isinstance(default, BaseModel):
            return {**default.model_dump(), **value}
        return value


class WebhookConfig(ChannelConfig):
    public: bool = True
    allow_private_urls: bool = False  # SSRF guard; tests and demos allow loopback


class TwilioConfig(Strict):
    """Credentials and endpoint; `api_base_url` points the SDK at the simulator."""

    account_sid: str = "AC" + "0" * 32
    auth_token: str = SIMULATOR_AUTH_TOKEN  # the simulator's: refused against the real Twilio
    api_base_url: str | None = None  # None: the real Twilio API
    from_number: str | None = None  # E.164 sender, or …
    messaging_service_sid: str | None = None  # … a Messaging Service (MG…)
    connection_limit: int = Field(32, ge=1)
    # A send still `sent` this long after the last word on it is looked up at Twilio
    # (a status callback may have been lost: warnd down, network); only sends of the
    # last `reconcile_hours` are looked up.
    reconcile_after_seconds: float = Field(300.0, gt=0)
    reconcile_hours: float = Field(24.0, gt=0)
    # An SMS or call left `uncertain` (handed to Twilio, outcome unknown: a crash, a timeout)
    # is looked up in Twilio's Messages / Calls lists once it was handed this long ago (a
    # message Twilio just took may still be `queued`, without a DateSent): found → settled
    # from its status, not found → sent again at once, lookup failed → asked again next sweep.
    lookup_uncertain_after_seconds: float = Field(10.0, ge=0)
    # Last resort only, for channels that cannot be looked up (SMS and voice always can):
    # such an `uncertain` send with no word this long is sent again. null: never.
    resend_uncertain_after_seconds: float | None = Field(600.0, gt=0)
    # At start, replies Twilio received while warnd was down are fetched from its message
    # log (since the newest one warnd had, at most this far back) and applied once each,
    # at the time they were received. 0: never.
    catch_up_hours: float = Field(24.0, ge=0)


class SmsConfig(ChannelConfig):
    enabled: bool = False  # needs Twilio credentials (or the simulator)
    rate_per_second: float = Field(1.0, gt=0)  # per sender: long codes ≈1 segment/s
    concurrency: int = Field(16, ge=1)
    signature: str = "【县预警中心】"
    confirm_words: list[str] = ["1", "收到", "确认", "OK", "ok", "好", "收"]
    confirm_link: bool = True  # add a signed confirmation link to messages for people who must confirm
    refused_free_minutes: float = Field(60.0, ge=0)
    # Chinese providers cap SMS per number: Alibaba Cloud verification codes 1/min, 5/h,
    # 10/day, notifications at most 50 a day; these leave room for a warning, its update,
    # door-to-door asks for several grids and a cancel.
    per_number: PerNumber = PerNumber(minute=5, hour=20, day=50)


class TtsVoice(Strict):
    """The voice of a <Say> (Twilio's Amazon Polly or Google voice name) and the language it speaks."""

    voice: str = Field(min_length=1)
    language: str | None = None  # the <Say language>; null: the recipient's (zh → zh-CN, en → en-US)


def _default_tts() -> dict[str, TtsVoice]:
    return {"zh-CN": TtsVoice(voice="Polly.Zhiyu", language="cmn-CN"),
            "en-US": TtsVoice(voice="Polly.Joanna", language="en-US")}


class VoiceConfig(ChannelConfig):
    enabled: bool = False
    rate_per_second: float = Field(1.0, gt=0)  # Twilio's default: 1 call/s
    concurrency: int = Field(16, ge=1)
    repeat: int = Field(2, ge=1, le=5)  # how often the warning is spoken
    ring_seconds: int = Field(30, ge=5, le=600)
    retry: RetryPolicy = RetryPolicy(max_attempts=4, base_seconds=60, max_seconds=120)  # redial within ~5 min
    refused_free_minutes: float = Field(60.0, ge=0)  # a create Twilio refused rang nobody: not a redial
    # a person is called, redialled and asked to go to the door: a few calls a minute at most
    per_number: PerNumber = PerNumber(minute=3, hour=10, day=30)
    # The TTS voice of every <Say>, by recipient language; other languages: the account's default.
    tts: dict[str, TtsVoice] = Field(default_factory=_default_tts)


class MqttConfig(Strict):
    """The broker speakers listen on; no url: warnd runs an embedded broker."""

    url: str | None = None  # mqtt://user:pass@host:1883
    protocol: int = Field(5, description="5 (MQTT 5) or 4 (MQTT 3.1.1)")
    topic_prefix: str = "warnd/speakers"
    client_id: str = ""  # default: warnd-<node name>
    inflight: int = Field(1000, ge=1, le=65535)  # un-acknowledged QoS 1 publishes at once
    shared_group: str = "warnd"  # $share/<group>/… so several nodes split the acks
    embedded_port: int = Field(1883, ge=0, le=65535)


class SpeakerConfig(ChannelConfig):
    enabled: bool = False
    public: bool = True  # village loudspeakers are public: never for drills unless routed privately
    concurrency: int = Field(500, ge=1)
    rate_per_second: float = Field(2000.0, gt=0)
    repeat: int = Field(3, ge=1, le=10)
    volume: int = Field(90, ge=0, le=100)
    ack_timeout_seconds: float = Field(120.0, gt=0)  # no played-ack by then: the grid is uncovered
    rebroadcast_minutes: dict[str, float] = {"red": 10.0, "orange": 20.0}


class ApprovalRule(Strict):
    """Approvals a warning needs before it is planned and sent, by level (0: publishes at once)."""

    red: int = Field(2, ge=0, le=5)
    orange: int = Field(1, ge=0, le=5)
    yellow: int = Field(0, ge=0, le=5)
    blue: int = Field(0, ge=0, le=5)

    def needed(self, level: Level) -> int:
        return getattr(self, level.label)


class ApprovalConfig(Strict):
    """制作 → 审核 → 签发 → 发布. Approvers are people other than the author, each counted once."""

    levels: ApprovalRule = ApprovalRule()
    cancel: int = Field(0, ge=0, le=5)  # a Cancel stops escalations: by default it never waits
    departments: dict[str, ApprovalRule] = {}  # per-department overrides of `levels`
    # 绿色通道: departments (and their feeds) whose warnings publish at once in an emergency
    green_channel: list[str] = []
    remind_minutes: float = Field(10.0, gt=0)  # waiting longer raises an operator alarm

    def needed(self, department: str, level: Level, cancel: bool) -> int:
        if department in self.green_channel:
            return 0
        if cancel:
            return self.cancel
        return self.departments.get(department, self.levels).needed(level)


class AccountsConfig(Strict):
    """Operator accounts: how long a console session lives, and how logins are throttled."""

    idle_minutes: float = Field(30, gt=0)  # a session unused this long ends
    max_hours: float = Field(12, gt=0)  # and every session ends this long after its login
    max_failed_logins: int = Field(5, ge=1)  # wrong passwords in a row that lock the account …
    lockout_minutes: float = Field(15, gt=0)  # … for this long
    cookie_secure: bool | None = None  # None: Secure when public_base_url is https


class DispatcherConfig(Strict):
    batch_size: int = Field(200, ge=1)
    poll_seconds: float = Field(0.5, gt=0)
    lease_seconds: float = Field(60.0, gt=0)
    # Each node beats in the `nodes` table; another node takes over the claims of one
    # whose beat is older than `takeover_seconds` (or that stopped) without waiting out
    # the lease. Several beats must fit in it: one slow beat is not a death.
    heartbeat_seconds: float = Field(2.0, gt=0)
    takeover_seconds: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _beats_fit_the_takeover(self) -> DispatcherConfig:
        if self.takeover_seconds < 3 * self.heartbeat_seconds:
            raise ValueError("dispatcher.takeover_seconds must be at least 3 × heartbeat_seconds "
                             "(a node that missed one or two beats is not dead)")
        return self


class SweepConfig(Strict):
    recover_seconds: float = Field(5.0, gt=0)
    expire_seconds: float = Field(5.0, gt=0)
    escalate_seconds: float = Field(0.5, gt=0)  # how often due rungs are looked for
    speaker_seconds: float = Field(5.0, gt=0)  # uncovered grids and re-broadcasts
    reconcile_seconds: float = Field(60.0, gt=0)  # sends whose status callback is overdue


def _default_levels() -> dict[str, LevelPolicy]:
    return {"red": LevelPolicy(confirm_minutes=5), "orange": LevelPolicy(confirm_minutes=15),
            "yellow": LevelPolicy(confirm_minutes=30), "blue": LevelPolicy()}


def _default_routing() -> list[RoutingRule]:
    return [RoutingRule(channels=["webhook"])]


LEASE_MARGIN_SECONDS = 10.0  # the dispatcher's watchdog margin (5 s) and a result's trip to the database


class ConfirmationConfig(Strict):
    """Who confirms a grid (叫应): its responsible person (A角), or whoever a rung asked for it."""

    # true: a backup's (B角) "1" confirms every grid they back up from the first wave on,
    # without being asked; false: only once a rung asked them, or when they name the grid.
    backups_confirm_first_wave: bool = False


class EventTemplate(Strict):
    """One prefilled warning a department's editor starts from (hazard × level)."""
    hazard: str = Field(min_length=1)  # e.g. 暴雨 (rainstorm)
    level: str
    event: str = Field(min_length=1)  # CAP <event>
    category: str = "Met"
    urgency: str = "Immediate"
    severity: str = "Extreme"
    certainty: str = "Likely"
    headline: str = ""
    description: str = ""
    instruction: str = ""
    expires_hours: float = Field(6.0, gt=0)

    @field_validator("level")
    @classmethod
    def _level_known(cls, v: str) -> str:
        return Level.parse(v).label


class DrillTargets(Strict):
    """What a drill is evaluated against (the drill report's 评估)."""
    reach_minutes: float = Field(10.0, gt=0)  # every responsible person reached (sent to) within this
    complete_minutes: float = Field(60.0, gt=0)  # every grid confirmed or covered within this


def _default_event_templates() -> dict[str, list[EventTemplate]]:
    path = Path(__file__).parent / "console" / "event_templates.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {dept: [EventTemplate.model_validate(t) for t in items] for dept, items in data.items()}


class ConsoleConfig(Strict):
    """The operator console at /console/ (warnd/console)."""
    enabled: bool = True
    tile_url: str | None = None  # e.g. https://tiles.example.cn/{z}/{x}/{y}.png; None: region outlines only
    tile_attribution: str = ""
    # Event templates per department name ("*": offered to every department).
    templates: dict[str, list[EventTemplate]] = Field(default_factory=_default_event_templates)
    live_poll_seconds: float = Field(1.0, gt=0)  # how often a live view's snapshot is re-read
    max_streams: int = Field(200, ge=1)  # live views open at once (server-sent event streams)
    drill_targets: DrillTargets = DrillTargets()

    @field_validator("tile_url")
    @classmethod
    def _tiles_http(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("https://", "http://")):
            raise ValueError("console.tile_url must be an http(s) URL template with {z}/{x}/{y}")
        return v


class FeedConfig(Strict):
    """One CAP feed warnd polls (Atom or RSS index, or CAP in entries): see warnd/feeds/.

    A feed issues as its department's token would: `senders`, `events`, `regions` and
    `max_level` are that token's scope (warnd/domain/authority.py), and the department's
    approval policy (approval.departments, green_channel) decides whether its warnings
    wait for 签发. Secrets are named so the audit log's redaction hides them
    (`basic_password`, `bearer_token`); credentials go only to the feed's own host.
    """

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    url: str
    department: str = Field(min_length=1)  # the department it issues for: its authority applies, approval included
    senders: list[str] = Field(min_length=1)  # the CAP <sender>s it issues as, as a department token names them
    events: list[str] = ["*"]
    regions: list[str] = ["*"]  # codes covering their descendants in the directory
    max_level: str = "red"
    interval_seconds: float = Field(60.0, ge=1)
    timeout_seconds: float = Field(20.0, gt=0)  # one request, connect to last byte
    headers: dict[str, str] = {}  # sent with every request (not secret: use the credentials below)
    basic_user: str | None = None
    basic_password: str | None = None
    bearer_token: str | None = None
    # Hosts, besides the feed's own, that entries may link CAP on (an aggregator's index).
    link_hosts: list[str] = []
    untyped_links: bool = False  # an Atom entry's untyped link is its CAP (NWS-style indexes)
    signed: bool = False  # every CAP must carry an XML signature by one of trusted_certs
    trusted_certs: list[str] = []  # PEM certificate files
    max_index_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    max_message_bytes: int | None = Field(None, ge=1024)  # None: the API's max_body_bytes
    backoff_max_seconds: float = Field(3600.0, ge=1)  # failed polls back off, doubling, up to this
    alarm_after_polls: int = Field(5, ge=1)  # this many failed polls in a row: an operator alarm

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        from urllib.parse import urlsplit
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("a feed url is an http(s) URL")
        if parts.username or parts.password:
            raise ValueError("put a feed's credentials in basic_user / basic_password, not in its url")
        return v

    @field_validator("max_level")
    @classmethod
    def _level_known(cls, v: str) -> str:
        return Level.parse(v).label

    @field_validator("headers")
    @classmethod
    def _no_secret_headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if name.lower() in ("authorization", "cookie", "proxy-authorization"):
                raise ValueError(f"header {name} would be logged unredacted: use basic_user/basic_password "
                                 "or bearer_token")
        return v

    @model_validator(mode="after")
    def _credentials_and_certs(self) -> FeedConfig:
        if self.bearer_token and (self.basic_user or self.basic_password):
            raise ValueError(f"feed {self.name}: basic credentials or a bearer token, not both")
        if (self.basic_user is None) != (self.basic_password is None):
            raise ValueError(f"feed {self.name}: basic_user and basic_password go together")
        if self.signed and not self.trusted_certs:
            raise ValueError(f"feed {self.name}: a signed feed needs trusted_certs")
        from cryptography import x509
        for path in self.trusted_certs:
            try:
                x509.load_pem_x509_certificates(Path(path).read_bytes())
            except (OSError, ValueError) as exc:
                raise ValueError(f"feed {self.name}: trusted certificate {path}: {exc}") from None
        return self


def _crontab(value: str) -> str:
    """A 5-field cron expression (minute hour day month weekday), as the scheduler reads it."""
    from apscheduler.triggers.cron import CronTrigger  # here: only config loading needs it
    try:
        CronTrigger.from_crontab(value, timezone="UTC")
    except ValueError as exc:
        raise ValueError(f"not a 5-field cron expression (minute hour day month weekday): {exc}") from None
    return value


class CronJob(Strict):
    """A job run on a cron schedule; a bad expression is refused at load, naming its key."""

    cron: str

    @field_validator("cron")
    @classmethod
    def _cron_valid(cls, v: str) -> str:
        return _crontab(v)


class DrillSchedule(CronJob):
    """A scheduled drill (演练): an Exercise warning from a template to regions, like a monthly
    proficiency test. Submitted with its department's authority (approval policy applies); its
    drill report is kept as every drill's. One warning per scheduled minute, however many
    nodes fire it (the CAP identifier is made of the name and the fire time)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    cron: str
    department: str = Field(min_length=1)  # its token's scope is the drill's authority
    regions: list[str] = Field(min_length=1)  # region codes (GB2260 geocodes)
    template: EventTemplate  # the console's event-template format
    sender: str | None = None  # CAP <sender>; None: the department's own (its token's senders)


class SummarySchedule(CronJob):
    """The daily summary (值班日报) of the last `hours` to the duty officer(s)."""

    cron: str = "0 8 * * *"
    to: list[str] = Field(["county_duty"], min_length=1)  # person roles told
    channels: list[str] = Field(["sms"], min_length=1)
    hours: float = Field(24.0, gt=0, le=24 * 31)


class RosterSchedule(CronJob):
    """The yearly roster refresh (名册核对): every person of `roles` is asked to confirm their
    number; whoever has not answered within `confirm_days` is listed (GET /api/v1/roster)."""

    cron: str = "0 9 1 3 *"  # 1 March, 09:00 in the display time zone
    roles: list[str] = Field(["grid_responsible"], min_length=1)
    channels: list[str] = Field(["sms"], min_length=1)
    confirm_days: float = Field(14.0, gt=0)


class RetentionSchedule(CronJob):
    """Delivery attempts and inbound answers older than `days` are deleted, `batch` rows per
    transaction. The audit log is never purged (it stays verifiable)."""

    cron: str = "30 3 * * *"
    days: float = Field(180.0, ge=1)
    batch: int = Field(5000, ge=100, le=100_000)


class ScheduleConfig(Strict):
    """Cron jobs: scheduled drills, the daily summary, the roster refresh, retention (see
    warnd/engine/schedules.py). Cron expressions run in `display_timezone`. Drills, the
    summary and the roster are off until configured; retention is on (180 days; null: off)."""

    drills: list[DrillSchedule] = []
    summary: SummarySchedule | None = None
    roster: RosterSchedule | None = None
    retention: RetentionSchedule | None = RetentionSchedule()

    @field_validator("drills")
    @classmethod
    def _names_unique(cls, v: list[DrillSchedule]) -> list[DrillSchedule]:
        names = [d.name for d in v]
        if len(set(names)) != len(names):
            raise ValueError(f"drill names must be unique: {sorted(n for n in set(names) if names.count(n) > 1)}")
        return v


class Config(Strict):
    database_url: str = "sqlite:///warnd.db"
    host: str = "127.0.0.1"
    port: int = 8080
    public_base_url: str = "http://127.0.0.1:8080"
    node_id: str = ""  # unique per running process; default "<hostname>:<port>"
    max_body_bytes: int = Field(1_048_576, ge=1024)
    limits: Limits = Limits()  # points, areas, nesting… of one message (warnd/ingest/limits.py)
    unknown_severity_level: str = "blue"
    geocode_names: list[str] = ["warnd", "region", "GB2260", "GB/T 2260", "adcode", "ADCODE"]
    levels: dict[str, LevelPolicy] = Field(default_factory=_default_levels)
    routing: list[RoutingRule] = Field(default_factory=_default_routing)
    # Escalation ladders by level, plus "uncovered" for grids whose speakers did not play.
    ladders: dict[str, list[RungConfig]] = Field(default_factory=_default_ladders)
    link_days: float = Field(2.0, gt=0)  # how long confirmation and call-list links stay valid
    confirmation: ConfirmationConfig = ConfirmationConfig()
    door: DoorConfig = DoorConfig()
    webhook: WebhookConfig = WebhookConfig()
    twilio: TwilioConfig = TwilioConfig()
    sms: SmsConfig = SmsConfig()
    voice: VoiceConfig = VoiceConfig()
    mqtt: MqttConfig = MqttConfig()
    speaker: SpeakerConfig = SpeakerConfig()
    secret_key: str = ""  # signs callback and ack links; empty: generated once and kept in the database
    dispatcher: DispatcherConfig = DispatcherConfig()
    accounts: AccountsConfig = AccountsConfig()
    approval: ApprovalConfig = ApprovalConfig()
    sweeps: SweepConfig = SweepConfig()
    console: ConsoleConfig = ConsoleConfig()
    feeds: list[FeedConfig] = []  # CAP feeds polled (each one job); see *Feeds* in the README
    schedules: ScheduleConfig = ScheduleConfig()
    log_level: str = "INFO"  # DEBUG, INFO, WARNING or ERROR (any case)
    # The readiness check (warnd/domain/readiness.py) refuses to start when a level's routing
    # or ladder, as this file writes it, can reach nobody; true (or a list of levels) says
    # that is meant, e.g. a test bench with webhooks only. The built-in defaults only warn.
    allow_silent_ladders: bool | list[str] = False
    # The sections of channels whose configuration model lives in their own module
    # (channels/<name>.py), keyed by channel name and written at the top level like
    # `sms:` (`aliyun_sms: {...}`); each is validated by its channel's model at load.
    channel_sections: dict[str, Any] = Field(default_factory=dict)
    # Times people read (door-to-door pages): an IANA zone; China has one, without DST.
    display_timezone: str = "Asia/Shanghai"

    @model_validator(mode="before")
    @classmethod
    def _gather_channel_sections(cls, data: Any) -> Any:
        """Top-level sections named after a registered channel with its own model move
        into `channel_sections` (validated after, by that model)."""
        if not isinstance(data, dict):
            return data
        from warnd_channels.registry import SPECS  # here: the channels import this module
        own = {name for name in SPECS if name not in cls.model_fields}
        data = dict(data)
        sections = dict(data.pop("channel_sections", None) or {})
        sections.update({name: data.pop(name) for name in list(data) if name in own})
        data["channel_sections"] = sections
        return data

    @model_validator(mode="after")
    def _validate_channel_sections(self) -> Config:
        from warnd_channels.registry import SPECS
        problems = []
        for name, spec in SPECS.items():
            if name in type(self).model_fields:
                continue
            raw = self.channel_sections.get(name)
            if isinstance(raw, spec.config_model):
                continue
            try:
                self.channel_sections[name] = spec.config_model.model_validate(raw or {})
            except ValidationError as exc:
                problems += [f"{name}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        unknown = sorted(set(self.channel_sections) - set(SPECS))
        problems += [f"{name}: no such channel" for name in unknown]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @field_validator("feeds")
    @classmethod
    def _feed_names_unique(cls, v: list[FeedConfig]) -> list[FeedConfig]:
        names = [f.name for f in v]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"feed names must be unique: {', '.join(twice)} given more than once")
        return v

    @field_validator("levels")
    @classmethod
    def _levels_known(cls, v: dict[str, LevelPolicy]) -> dict[str, LevelPolicy]:
        for name in v:
            Level.parse(name)
        return v

    @field_validator("ladders")
    @classmethod
    def _ladders_known(cls, v: dict[str, list[RungConfig]]) -> dict[str, list[RungConfig]]:
        for name in v:
            if name != "uncovered":
                Level.parse(name)
        return v

    def ladder(self, name: str) -> list[RungConfig]:
        """The ladder for a level (by any of its names) or for "uncovered"."""
        for key, rungs in self.ladders.items():
            if key == name or (key != "uncovered" and name != "uncovered" and Level.parse(key) == Level.parse(name)):
                return rungs
        return []

    @field_validator("display_timezone")
    @classmethod
    def _zone_known(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (an IANA name such as Asia/Shanghai)") from None
        return v

    @property
    def display_zone(self) -> ZoneInfo:
        return ZoneInfo(self.display_timezone)

    @field_validator("log_level")
    @classmethod
    def _log_level_known(cls, v: str) -> str:
        if not isinstance(v, str) or v.upper() not in LOG_LEVELS:
            raise ConfigProblem("log_level", f"{v!r} is not a log level: use one of {', '.join(LOG_LEVELS)}",
                                f"{v!r} 不是日志级别：请用 {'、'.join(LOG_LEVELS)} 之一")
        return v.upper()

    @field_validator("database_url")
    @classmethod
    def _database_supported(cls, v: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError
        try:
            scheme = make_url(v).drivername.partition("+")[0]
        except ArgumentError:
            scheme = None
        if scheme not in DATABASES:
            raise ConfigProblem("database_url", f"{_hide_password(v)!r}: warnd runs on PostgreSQL "
                                "(postgresql://user:password@host:5432/warnd) or SQLite (sqlite:///warnd.db)",
                                f"{_hide_password(v)!r}：warnd 只支持 PostgreSQL（postgresql://用户:密码@主机:5432/warnd）"
                                "或 SQLite（sqlite:///warnd.db）")
        return v

    @field_validator("allow_silent_ladders")
    @classmethod
    def _silent_levels_known(cls, v: bool | list[str]) -> bool | list[str]:
        if isinstance(v, list):
            return [Level.parse(name).label for name in v]
        return v

    def silence_allowed(self, level: Level) -> bool:
        """Whether the configuration says a level reaching nobody is meant (allow_silent_ladders)."""
        if isinstance(self.allow_silent_ladders, bool):
            return self.allow_silent_ladders
        return level.label in self.allow_silent_ladders

    @field_validator("unknown_severity_level")
    @classmethod
    def _unknown_known(cls, v: str) -> str:
        Level.parse(v)
        return v

    @model_validator(mode="after")
    def _lease_outlasts_sends(self) -> Config:
        # A claim whose lease ran out is recovered, even from this very process (a
        # backstop for a row it lost track of): no send may outlive the lease.
        channels = [value for value in (getattr(self, name) for name in type(self).model_fields)
                    if isinstance(value, ChannelConfig)]
        channels += [value for value in self.channel_sections.values() if isinstance(value, ChannelConfig)]
        longest = max(channel.timeout_seconds for channel in channels) + LEASE_MARGIN_SECONDS
        if self.dispatcher.lease_seconds <= longest:
            raise ValueError(f"dispatcher.lease_seconds must exceed the longest channel timeout_seconds "
                             f"by more than {LEASE_MARGIN_SECONDS:g} s (> {longest:g})")
        return self

    @model_validator(mode="after")
    def _real_twilio_needs_real_credentials(self) -> Config:
        # The simulator's token is public: against the real Twilio it would let anyone
        # forge status callbacks, replies and key presses (confirm a grid, stop a ladder).
        uses_twilio = self.sms.enabled or self.voice.enabled
        if uses_twilio and self.twilio.api_base_url is None and self.twilio.auth_token == SIMULATOR_AUTH_TOKEN:
            raise ConfigProblem("twilio.auth_token", "sms/voice point at the real Twilio but twilio.auth_token is "
                                "the simulator's public token: set your account's auth token (or "
                                "twilio.api_base_url for a simulator)",
                                "sms/voice 指向真实的 Twilio，但 twilio.auth_token 是模拟器的公开令牌："
                                "请填写账户的 auth token（或为模拟器设置 twilio.api_base_url）")
        return self

    @model_validator(mode="after")
    def _twilio_has_a_sender(self) -> Config:
        if self.sms.enabled and not (self.twilio.from_number or self.twilio.messaging_service_sid):
            raise ConfigProblem("twilio.from_number", "sms.enabled is true but Twilio has no sender: set "
                                "twilio.from_number (+8613800000000) or twilio.messaging_service_sid (MG…)",
                                "已启用 sms（sms.enabled: true），但 Twilio 没有发送方：请设置 twilio.from_number"
                                "（+8613800000000）或 twilio.messaging_service_sid（MG…）")
        if self.voice.enabled and not self.twilio.from_number:
            raise ConfigProblem("twilio.from_number", "voice.enabled is true but twilio.from_number is not set "
                                "(calls need a number; a Messaging Service cannot call)",
                                "已启用 voice（voice.enabled: true），但未设置 twilio.from_number"
                                "（语音呼叫需要号码，Messaging Service 不能呼叫）")
        return self

    def level_policy(self, level: Level) -> LevelPolicy:
        for name, policy in self.levels.items():
            if Level.parse(name) == level:
                return policy
        return LevelPolicy()

    @property
    def node_name(self) -> str:
        return self.node_id or f"{os.uname().nodename}:{self.port}"

    def enabled_channels(self) -> list[str]:
        """The names of the channels whose section is enabled."""
        fields = [name for name in type(self).model_fields if isinstance(getattr(self, name), ChannelConfig)]
        return [name for name in fields + sorted(self.channel_sections) if self.channel(name).enabled]

    def channel(self, name: str) -> ChannelConfig:
        """A channel's section: a field of this model, or one in `channel_sections`."""
        if name in type(self).model_fields:
            return getattr(self, name)
        return self.channel_sections[name]


def load_config(path: str | Path | None = None, **overrides: object) -> Config:
    """Read YAML (or nothing), apply environment and explicit overrides, validate.

    Every mistake is one `config.invalid` error whose problems name the key, and where it
    was written: the file, the environment variable, or the command line."""
    source = str(path) if path is not None else "defaults"
    data = _read_yaml(Path(path)) if path is not None else {}
    env, problems = _apply_environment(data, os.environ)
    given = {k: v for k, v in overrides.items() if v is not None}
    data.update(given)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += [_problem(e, source, env, given) for e in exc.errors()]
        config = None
    if problems:
        raise WarndError("config.invalid", problems) from None
    return config


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WarndError("config.invalid", [Problem(str(path), f"cannot read the file: {exc.strerror or exc}",
                                                    f"无法读取配置文件：{exc.strerror or exc}")]) from None
    except UnicodeDecodeError:
        raise WarndError("config.invalid", [Problem(str(path), "not UTF-8 text: save the file as UTF-8",
                                                    "不是 UTF-8 文本：请以 UTF-8 编码保存")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        zh_where = f"第 {mark.line + 1} 行第 {mark.column + 1} 列" if mark else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise WarndError("config.invalid", [Problem(f"{path}:{mark.line + 1}" if mark else str(path),
                                                    f"not valid YAML at {where}: {what}",
                                                    f"YAML 格式错误（{zh_where}）：{what}")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        raise WarndError("config.invalid", [Problem(
            str(path), f"the top level is {kind}; it must be keys and values (port: 8080, sms: {{enabled: true}})",
            f"顶层是{'列表' if isinstance(data, list) else '单个值'}，须为“键: 值”的映射（如 port: 8080）")]) from None
    return data


# ---------------------------------------------------------------- keys: where they are, what they hold

def _sections() -> dict[str, type[BaseModel]]:
    """Top-level keys with their own model: Config's fields and the channels' own sections."""
    from warnd_channels.registry import SPECS
    return {name: spec.config_model for name, spec in SPECS.items() if name not in Config.model_fields}


def _unwrap(tp: Any) -> Any:
    """`X | None` → X; a union of a model and something else → the model (`bool | list[str]` stays)."""
    import types
    import typing
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if models else (args[0] if len(args) == 1 else tp)
    return tp


def _step(tp: Any, part: str | int) -> tuple[Any, list[str] | None]:
    """The type one step into `tp`; (None, the keys it has) if `part` is not one of them."""
    import typing
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        sections = _sections() if tp is Config else {}
        if part in tp.model_fields and part != "channel_sections":
            return tp.model_fields[part].annotation, None
        if part in sections:
            return sections[part], None
        return None, sorted(set(tp.model_fields) - {"channel_sections"} | set(sections))
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (dict, Mapping) and args:
        return args[1], None
    if origin in (list, tuple) and args and isinstance(part, int):
        return args[0], None
    return Any, None


def _nearest(name: str, keys: list[str]) -> str | None:
    found = difflib.get_close_matches(name, keys, n=1, cutoff=0.6)
    return found[0] if found else None


def _unknown_key(name: str, keys: list[str], label: str | None = None) -> tuple[str, str]:
    label = label or name
    near = _nearest(name, keys)
    if near:
        return f"unknown key {label!r}: did you mean {near}?", f"未知的配置项 {label!r}：是否应为 {near}？"
    return (f"unknown key {label!r} (known here: {', '.join(keys)})",
            f"未知的配置项 {label!r}（此处可用：{', '.join(keys)}）")


def _apply_environment(data: dict, environ: Mapping[str, str]) -> tuple[dict[tuple, str], list[Problem]]:
    """Set WARND_<SECTION>__<KEY> variables into `data`; return path → variable, and the refused."""
    applied: dict[tuple, str] = {}
    problems: list[Problem] = []
    for name in sorted(environ):
        value = environ[name]
        if not name.startswith("WARND_") or not value:
            continue
        parts = name[len("WARND_"):].lower().split("__")
        tp: Any = Config
        for depth, part in enumerate(parts):
            tp, keys = _step(tp, part)
            if keys is not None:
                break
        if keys is not None and len(parts) == 1:
            continue  # another tool's variable (WARND_CONFIG, WARND_TOKEN, WARND_TEST_PG)
        if keys is not None or not all(parts):
            spelled = ["WARND_" + "__".join([*parts[:depth], k, *parts[depth + 1:]]).upper() for k in keys or []]
            en, zh = _unknown_key(name, spelled)
            problems.append(Problem(name, f"{en} (environment)", f"{zh}（环境变量）"))
            continue
        into = data
        for part in parts[:-1]:
            if not isinstance(into.get(part, {}), dict):
                into = None
                break
            into = into.setdefault(part, {})
        if into is None:
            problems.append(Problem(name, "sets a key inside a value that is not a section",
                                    "所设的键所在的值不是配置节"))
            continue
        into[parts[-1]] = value if _unwrap(tp) is str else _scalar(value)
        applied[tuple(parts)] = name
    return applied, problems


def _scalar(text: str) -> Any:
    """An environment value as YAML reads it: true, 8080, 1.5, null, [sms, voice]; else the text."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL at all: nothing to hide
        return url


_ZH = {"missing": "为必填项", "bool_parsing": "须为 true 或 false", "bool_type": "须为 true 或 false",
       "int_parsing": "须为整数", "int_type": "须为整数", "int_from_float": "须为整数",
       "float_parsing": "须为数字", "float_type": "须为数字", "string_type": "须为文本",
       "list_type": "须为列表", "dict_type": "须为映射（键: 值）", "model_type": "须为映射（键: 值）",
       "literal_error": "取值不在允许范围内", "greater_than": "取值过小", "greater_than_equal": "取值过小",
       "less_than": "取值过大", "less_than_equal": "取值过大", "enum": "取值不在允许范围内"}


def _problem(e: Mapping[str, Any], source: str, env: Mapping[tuple, str], given: Mapping[str, object]) -> Problem:
    """One pydantic error as a Problem naming the key, where it was set, and what to do."""
    loc = tuple(e["loc"])
    key = ".".join(str(p) for p in loc)
    error = (e.get("ctx") or {}).get("error")
    if isinstance(error, ConfigProblem):
        key, en, zh = error.key if not key else key, error.en, error.zh
        loc = tuple(int(p) if p.isdigit() else p for p in key.split("."))
    elif e["type"] == "extra_forbidden":
        tp: Any = Config
        for part in loc[:-1]:
            tp, _ = _step(tp, part)
        _, keys = _step(tp, str(loc[-1]))
        en, zh = _unknown_key(str(loc[-1]), keys or [], key)
    else:
        en = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        if not isinstance(got, (dict, list)) and e["type"] != "missing":
            en += f" (got {got!r})"
        zh = f"{_ZH.get(e['type'], '配置无效')}：{en}"
    for n in range(len(loc), 0, -1):  # where it was written: a variable, the command line, the file
        if loc[:n] in env:
            return Problem(env[loc[:n]], f"{key}: {en} (environment)", f"{key}：{zh}（环境变量）")
    if loc and loc[0] in given:
        return Problem(key, f"{en} (command line)", f"{zh}（命令行参数）")
    return Problem(key or source, f"{en} (in {source})" if key else en, f"{zh}（{source} 中）" if key else zh)
