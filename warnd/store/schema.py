"""Tables. One schema for SQLite and PostgreSQL; migrations are generated from it.

Times are stored as UTC `DateTime(timezone=True)`; JSON columns hold lists of
codes and filters. Every mutable row that several nodes may race on has a
`version` column for compare-and-set.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (JSON, BigInteger, Boolean, Column, DateTime, ForeignKey, Index, Integer,
                        MetaData, String, Table, Text, UniqueConstraint, false as sa_false)
from sqlalchemy import Double, text
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on both dialects (SQLite would otherwise drop the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:  # noqa: ANN001
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:  # noqa: ANN001
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

TS = UTCDateTime()
# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL wants BIGINT.
ID = BigInteger().with_variant(Integer(), "sqlite")

tokens = Table(
    "tokens", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("department", String(200), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("events", JSON, nullable=False),  # ["*"] or event names
    Column("regions", JSON, nullable=False),  # ["*"] or region code prefixes
    Column("max_level", Integer, nullable=False),
    Column("admin", Boolean, nullable=False, default=False),
    Column("created_at", TS, nullable=False),
    Column("revoked_at", TS),
    Column("role", String(16), nullable=False, default="department", server_default="department"),
    Column("senders", JSON, nullable=False, default=list, server_default="[]"),  # CAP senders; ["*"] = any
    Column("supersede", Boolean, nullable=False, default=False, server_default=sa_false()),
    Column("user_name", String(64)),  # a person's personal token: their account decides its rights
    Column("label", String(200)),
    Column("expires_at", TS),
    Column("last_used_at", TS),
    Column("rotated_from", BigInteger),
)

# Operator accounts (people). Passwords: argon2id hashes only.
users = Table(
    "users", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("display_name", String(200)),
    Column("role", String(16), nullable=False),  # admin / approver / operator / editor / viewer
    Column("department", String(200), nullable=False),
    Column("senders", JSON, nullable=False),
    Column("events", JSON, nullable=False),
    Column("regions", JSON, nullable=False),
    Column("max_level", Integer, nullable=False),
    Column("supersede", Boolean, nullable=False, default=False),
    Column("password_hash", String(200), nullable=False),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", TS),
    Column("last_login_at", TS),
    Column("created_at", TS, nullable=False),
    Column("disabled_at", TS),
    Column("version", Integer, nullable=False, default=1),
)

# Console sessions: the cookie holds a random id; only its hash is stored.
sessions = Table(
    "sessions", metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_name", String(64), nullable=False, index=True),
    Column("csrf", String(64), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("last_seen_at", TS, nullable=False),
    Column("ended_at", TS),
)

# 签发: one row per approver of a warning; a person approves a warning once.
approvals = Table(
    "approvals", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("warning_id", BigInteger, ForeignKey("warnings.id"), nullable=False),
    Column("approver", String(64), nullable=False),  # user name
    Column("decision", String(16), nullable=False),  # approved / rejected
    Column("reason", Text),
    Column("at", TS, nullable=False),
    UniqueConstraint("warning_id", "approver", name="uq_approvals_warning_approver"),
)

regions = Table(
    "regions", metadata,
    Column("code", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # county / township / village / grid
    Column("parent", String(32), index=True),
    Column("polygon", JSON),  # [[lat, lon], …] closed ring, or null
    Column("updated_at", TS, nullable=False),
    # {channel: group address}: a village's or township's group chats (a WeCom robot's key)
    Column("groups", JSON, nullable=False, server_default=text("'{}'")),
)

people = Table(
    "people", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("phone", String(32), index=True),  # replies are matched by the sender's number
    Column("language", String(16), nullable=False, default="zh-CN"),
    Column("region", String(32), nullable=False, index=True),
    Column("roles", JSON, nullable=False),
    Column("backup", String(64)),
    Column("updated_at", TS, nullable=False),
)

households = Table(
    "households", metadata,
    Column("id", String(64), primary_key=True),
    Column("grid", String(32), nullable=False, index=True),
    Column("address", String(400), nullable=False),
    Column("phone", String(32)),
    Column("vulnerable", Boolean, nullable=False, default=False),
    Column("updated_at", TS, nullable=False),
)

speakers = Table(
    "speakers", metadata,
    Column("id", String(64), primary_key=True),
    Column("grid", String(32), nullable=False, index=True),
    Column("updated_at", TS, nullable=False),
)

subscribers = Table(
    "subscribers", metadata,
    Column("id", String(64), primary_key=True),
    Column("url", String(2000), nullable=False),
    Column("secret", String(200), nullable=False),
    Column("format", String(8), nullable=False, default="cap"),  # cap | json
    Column("regions", JSON, nullable=False),  # [] = all
    Column("levels", JSON, nullable=False),
    Column("events", JSON, nullable=False),
    Column("statuses", JSON, nullable=False),
    Column("public", Boolean, nullable=False, default=True),
    Column("active", Boolean, nullable=False, default=True),
    Column("restricted", Boolean, nullable=False, default=False, server_default=sa_false()),
    Column("updated_at", TS, nullable=False),
)

warnings = Table(
    "warnings", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("sender", String(400), nullable=False),
    Column("identifier", String(400), nullable=False),
    Column("sent", TS, nullable=False),
    Column("status", String(16), nullable=False),
    Column("msg_type", String(16), nullable=False),
    Column("level", Integer, nullable=False),
    Column("event", String(400), nullable=False),
    Column("headline", Text),
    Column("expires", TS),
    Column("state", String(16), nullable=False),  # awaiting / rejected / active / superseded / cancelled / expired (warnd/domain/states.py)
    Column("root_id", BigInteger, index=True),  # first warning of an update chain
    Column("previous_id", BigInteger),
    Column("department", String(200)),
    Column("cap_xml", Text, nullable=False),
    Column("notes", JSON, nullable=False),
    Column("regions", JSON, nullable=False),  # resolved target region codes
    Column("created_at", TS, nullable=False),
    Column("version", Integer, nullable=False, default=1),
    # 制作 → 审核 → 签发 → 发布: who submitted, how many approvals it needs, when it went out
    Column("submitted_by", String(200)),
    Column("approvals_needed", Integer, nullable=False, default=0, server_default="0"),
    Column("approved_at", TS),
    Column("published_at", TS),
    Column("rejected_reason", Text),
    UniqueConstraint("sender", "identifier", name="uq_warnings_sender_identifier"),
    Index("ix_warnings_state_expires", "state", "expires"),
)

deliveries = Table(
    "deliveries", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    # no index of its own: ix_deliveries_grid begins with it
    Column("warning_id", BigInteger, ForeignKey("warnings.id"), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("recipient_kind", String(16), nullable=False),  # person / subscriber / speaker / household
    Column("recipient_id", String(64), nullable=False),
    Column("grid", String(32)),  # the grid this send is for: a confirmation there stops it
    Column("purpose", String(16), nullable=False, default="warning", server_default="warning"),  # warning / door_to_door / door_ask
    Column("params", JSON),  # what the purpose needs, e.g. {"list_id": 7}
    Column("address", String(2000), nullable=False),
    Column("language", String(16), nullable=False),
    Column("priority", Integer, nullable=False),  # the level: higher first
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", TS, nullable=False),
    Column("expires", TS),
    Column("claimed_by", String(200)),
    Column("lease_until", TS),
    # written just before the provider is called: a claim a crash left without it
    # never reached the provider and is queued again at once (not `uncertain`)
    Column("handed_at", TS),
    Column("provider_ref", String(200)),
    Column("last_code", String(64)),
    Column("last_detail", Text),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("sent_at", TS),
    Column("done_at", TS),
    Column("version", Integer, nullable=False, default=1),
    # also the recover sweep's (state = 'sending' and a lease run out or a dead claimer: an OR
    # that no index on the lease could serve)
    Index("ix_deliveries_due", "state", "channel", "priority", "next_attempt_at"),
    # a confirmation cancels the queued sends to its grid
    Index("ix_deliveries_grid", "warning_id", "grid", "state"),
)

attempts = Table(
    "delivery_attempts", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("delivery_id", BigInteger, ForeignKey("deliveries.id"), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("node", String(200), nullable=False),
    Column("started_at", TS, nullable=False),
    Column("finished_at", TS, nullable=False),
    Column("outcome", String(16), nullable=False),  # delivered / sent / retry / failed / uncertain
    Column("code", String(64)),
    Column("detail", Text),
)

confirmations = Table(
    "confirmations", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("warning_id", BigInteger, ForeignKey("warnings.id"), nullable=False),  # ix_confirmations_grid's first
    Column("grid", String(32), nullable=False),
    Column("person_id", String(64)),
    Column("backup_id", String(64)),
    Column("deadline", TS, nullable=False),
    Column("state", String(16), nullable=False),  # open / confirmed / covered / closed
    Column("created_at", TS),
    Column("confirmed_at", TS),
    Column("confirmed_by", String(64)),
    Column("channel", String(32)),
    Column("late", Boolean, nullable=False, default=False),
    Column("closed_reason", String(32)),
    Column("reason", Text),  # an operator's reason when recording on someone's behalf
    Column("not_woken_at", TS),  # 未叫醒: on the list handed to the county centre
    Column("covered_at", TS),  # every household marked by the door-to-door visit
    Column("uncovered_at", TS),  # speakers offline or silent
    Column("uncovered_reason", String(64)),
    Column("version", Integer, nullable=False, default=1),
    Index("ix_confirmations_open", "state", "deadline"),
    # "must this recipient confirm?" (every claimed person delivery) and "what does this
    # person answer for?" (every reply): the person first, so both read a handful of rows
    Index("ix_confirmations_person", "person_id", "state", "warning_id"),
    Index("ix_confirmations_backup", "backup_id", "state", "warning_id"),
    # "was this send a rung's question about its grid?" (every claimed person delivery)
    Index("ix_confirmations_grid", "warning_id", "grid", "state"),
)

audit = Table(
    "audit_log", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("at", TS, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(400), nullable=False),
    Column("detail", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
)

settings = Table(
    "settings", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# 有叫有应有记录: every answer that reached warnd, matched or not.
inbound = Table(
    "inbound", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("at", TS, nullable=False),
    Column("channel", String(32), nullable=False),  # sms / voice / link / operator
    Column("from_address", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("provider_ref", String(64)),
    Column("delivery_id", BigInteger),
    Column("person_id", String(64)),
    # confirmed / repeated / negative / question / wrong_code / not_asked / ambiguous / unknown /
    # ignored / reported (a walker's door-to-door count)
    Column("outcome", String(16), nullable=False),
    Column("confirmation_ids", JSON, nullable=False),
    Index("ix_inbound_from", "from_address", "at"),
    # a provider's message (SMS MessageSid, a call's CallSid) is applied once: a replay changes nothing
    UniqueConstraint("channel", "provider_ref", name="uq_inbound_channel_provider_ref"),
)

# Live nodes: each running process beats here, so another node can take over a
# dead one's claims in seconds instead of waiting out the lease.
nodes = Table(
    "nodes", metadata,
    Column("incarnation", String(200), primary_key=True),  # node_id/random: one process life
    Column("node_id", String(200), nullable=False),
    Column("started_at", TS, nullable=False),
    Column("heartbeat_at", TS, nullable=False),
    Column("stopped_at", TS),
)

# The escalation ladder of one confirmation requirement, snapshotted when it was
# planned: later configuration edits do not change a warning in flight.
rungs = Table(
    "rungs", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("confirmation_id", BigInteger, ForeignKey("confirmations.id"), nullable=False),
    Column("warning_id", BigInteger, nullable=False, index=True),
    Column("grid", String(32), nullable=False),
    Column("ladder", String(16), nullable=False),  # level name, or "uncovered"
    Column("step", Integer, nullable=False),
    Column("action", String(16), nullable=False),  # notify / door_to_door / alarm
    Column("params", JSON, nullable=False),
    Column("due_at", TS, nullable=False),
    Column("state", String(16), nullable=False),  # pending / fired / skipped
    Column("fired_at", TS),
    Column("fired_by", String(200)),
    Column("outcome", JSON),
    Column("version", Integer, nullable=False, default=1),
    Index("ix_rungs_due", "state", "due_at"),
    # a confirmation skips the rest of its ladder (without it, SQLite read every pending rung)
    Index("ix_rungs_confirmation", "confirmation_id", "state"),
)

call_lists = Table(
    "call_lists", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("warning_id", BigInteger, nullable=False, index=True),
    Column("confirmation_id", BigInteger, ForeignKey("confirmations.id"), nullable=False),
    Column("grid", String(32), nullable=False),
    Column("assignee_id", String(64)),  # the person who walks the list
    Column("created_at", TS, nullable=False),
    Column("completed_at", TS),
    UniqueConstraint("confirmation_id", name="uq_call_lists_confirmation"),
)

call_list_items = Table(
    "call_list_items", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("list_id", BigInteger, ForeignKey("call_lists.id"), nullable=False, index=True),
    Column("position", Integer, nullable=False),  # vulnerable households first
    Column("household_id", String(64), nullable=False),
    Column("address", String(400), nullable=False),
    Column("phone", String(32)),
    Column("vulnerable", Boolean, nullable=False),
    Column("mark", String(16)),  # notified (told) / moved / not_home / refused / needs_help
    Column("marked_at", TS),
    Column("version", Integer, nullable=False, default=1),
    Column("people", Integer),  # moved: the household's head count
    Column("note", String(200)),  # needs help / refused: what the visitor wrote
    # not-at-home households whose follow-up call was answered (a sweep, every few seconds)
    Index("ix_call_list_items_mark", "mark"),
)

# A walker's SMS report of a list ("已转移12人"): per grid, summed (a running total replaces).
door_reports = Table(
    "door_reports", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("list_id", BigInteger, ForeignKey("call_lists.id"), nullable=False, index=True),
    Column("grid", String(32), nullable=False),
    Column("at", TS, nullable=False),
    Column("person_id", String(64)),
    Column("inbound_id", BigInteger),  # the SMS as recorded in `inbound`
    Column("moved_people", Integer),  # null: the report says nothing of people moved
    Column("cumulative", Boolean, nullable=False, default=False),
    Column("told", Integer, nullable=False, default=0),  # households
    Column("not_home", Integer, nullable=False, default=0),
    Column("refused", Integer, nullable=False, default=0),
    Column("needs_help", Integer, nullable=False, default=0),
)

alarms = Table(
    "alarms", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("at", TS, nullable=False),
    Column("code", String(64), nullable=False),
    Column("warning_id", BigInteger),
    Column("grid", String(32)),
    Column("detail", JSON, nullable=False),
    Column("acknowledged_at", TS),
    Column("acknowledged_by", String(200)),
)

speaker_presence = Table(
    "speaker_presence", metadata,
    Column("speaker_id", String(64), primary_key=True),
    Column("online", Boolean, nullable=False),
    Column("changed_at", TS, nullable=False),
    Column("detail", String(400)),
)

# Provider limits shared by every node on the database (see warnd/domain/rate_limit.py).
rate_limits = Table(
    "rate_limits", metadata,
    Column("key", String(64), primary_key=True),  # the limit: a channel's rate
    Column("tat", Double, nullable=False),  # epoch seconds: the end of the cells reserved so far
)

number_sends = Table(
    "number_sends", metadata,
    Column("channel", String(32), primary_key=True),
    Column("address", String(200), primary_key=True),  # the called number (its first 200 characters)
    Column("sends", Text, nullable=False),  # its recent sends, epoch seconds on warnd's clock, space separated
    Column("updated_at", TS, nullable=False),
    Index("ix_number_sends_updated_at", "updated_at"),
)

# CAP feeds warnd polls (warnd/feeds/): each feed's status, shared by every node, and
# every entry it saw, so a CAP is fetched and applied once across restarts and nodes.
feed_status = Table(
    "feed_status", metadata,
    Column("name", String(64), primary_key=True),  # FeedConfig.name
    Column("created_at", TS, nullable=False),
    Column("last_poll_at", TS),
    Column("last_success_at", TS),
    Column("last_new_alert_at", TS),
    Column("last_error_code", String(64)),
    Column("last_error_detail", String(500)),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("etag", String(500)),  # the validators of the last index received
    Column("last_modified", String(100)),
    Column("next_poll_at", TS),  # no node polls before this: the interval, or the backoff
    Column("alarmed_at", TS),  # the operator alarm raised for this run of failures (cleared on success)
)

feed_entries = Table(
    "feed_entries", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("feed", String(64), nullable=False),
    Column("entry_key", String(64), nullable=False),  # SHA-256 of the entry's id or link and its updated
    Column("ref", String(500), nullable=False),  # the entry's id or link, for people
    Column("at", TS, nullable=False),
    Column("sender", String(200)),  # of the CAP, when it could be read
    Column("identifier", String(200)),
    Column("code", String(64)),  # null: applied; else the error code it was refused with
    Column("detail", String(500)),
    Column("warning_id", BigInteger),
    UniqueConstraint("feed", "entry_key", name="uq_feed_entries_feed_entry_key"),
    Index("ix_feed_entries_sender_identifier", "sender", "identifier"),
)

# Messages to people that belong to no warning (a schedule's: the daily summary, the roster
# refresh's question), written as an outbox as deliveries are; see warnd/store/roster.py.
notices = Table(
    "notices", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # summary / roster
    Column("round", String(64), nullable=False),  # which firing: its scheduled time, e.g. 2027-03-01T01:00Z
    Column("person_id", String(64), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("address", String(2000), nullable=False),
    Column("language", String(16), nullable=False),
    Column("body", Text, nullable=False),
    Column("state", String(16), nullable=False),  # pending / sending / sent / failed / uncertain (warnd/store/notices.py)
    Column("delivery_id", BigInteger),  # the send, once notices are sent through the dispatcher
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    # one per round, person and channel: a job fired twice (two nodes, a restart) asks once
    UniqueConstraint("kind", "round", "person_id", "channel", name="uq_notices_kind_round_person"),
    Index("ix_notices_kind_created", "kind", "created_at"),
)

# 名册核对: each round of the roster refresh asks every responsible person to confirm their number.
roster_asks = Table(
    "roster_asks", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("round", String(64), nullable=False),
    Column("person_id", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("region", String(32), nullable=False),
    Column("phone", String(32)),  # as the directory had it when asked; null: nobody could be asked
    Column("asked_at", TS, nullable=False),
    Column("due_at", TS, nullable=False),  # a reply after this does not count
    Column("confirmed_at", TS),
    Column("inbound_id", BigInteger),  # the reply that confirmed it (inbound.id)
    UniqueConstraint("round", "person_id", name="uq_roster_asks_round_person"),
    Index("ix_roster_asks_open", "round", "confirmed_at"),
)
