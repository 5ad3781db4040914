"""The append-only, hash-chained audit log (有叫有应有记录).

Each entry's hash covers its content and the previous entry's hash, so any
edit or deletion breaks the chain from that point on (`check`). Appends are
serialised: SQLite write transactions already are; on PostgreSQL an advisory
transaction lock keeps two nodes from forking the chain. Callers append in
the transaction of the change an entry records, as its last statement, so the
lock is never held while waiting for a row lock. (In a group commit the works
after it in the group still follow; should two nodes' groups meet in a
deadlock, PostgreSQL ends one and only that work's caller gets the error.)

The database itself refuses to change the log: triggers abort every UPDATE and
DELETE (and TRUNCATE on PostgreSQL). `metadata.create_all` creates them with
the table (see the listeners below); migration 0007 creates them for
databases built by Alembic. Nothing shortens the chain: there is no purge.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from warnd.domain.errors import error
from warnd.store.database import Database
from warnd.store.schema import audit

GENESIS = "0" * 64
LOCK_KEY = 0x5741524E  # "WARN"
PAGE = 1000  # entries per read when walking the whole log
REFUSED = "audit_log is append-only"

# -- the database refuses changes: one definition, used by create_all and by migration 0007

APPEND_ONLY: dict[str, tuple[str, ...]] = {
    "sqlite": (
        f"CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log "
        f"BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END",
        f"CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log "
        f"BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END",
    ),
    "postgresql": (
        f"CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN RAISE EXCEPTION '{REFUSED}' USING HINT = 'audit entries are never changed or removed'; END $$",
        "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
    ),
}
DROP_APPEND_ONLY: dict[str, tuple[str, ...]] = {
    "sqlite": ("DROP TRIGGER IF EXISTS audit_log_no_update", "DROP TRIGGER IF EXISTS audit_log_no_delete"),
    "postgresql": ("DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log",
                   "DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log",
                   "DROP FUNCTION IF EXISTS audit_log_append_only()"),
}

for _dialect, _statements in APPEND_ONLY.items():
    for _statement in _statements:
        sa.event.listen(audit, "after_create", sa.DDL(_statement).execute_if(dialect=_dialect))


# -- entries

@dataclass(frozen=True)
class Entry:
    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: dict
    prev_hash: str
    hash: str

    def json(self) -> dict:
        return {"id": self.id, "at": self.at.isoformat(), "actor": self.actor, "action": self.action,
                "subject": self.subject, "detail": self.detail, "prev_hash": self.prev_hash, "hash": self.hash}

    def follows(self, prev: str) -> bool:
        """Does this entry chain onto `prev`, with its content unchanged?"""
        return self.prev_hash == prev and self.hash == entry_hash(prev, self.at, self.actor, self.action,
                                                                  self.subject, self.detail)


def entry_hash(prev: str, at: datetime, actor: str, action: str, subject: str, detail: dict) -> str:
    body = json.dumps([prev, at.isoformat(), actor, action, subject, detail], sort_keys=True,
                      ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


async def append(conn: AsyncConnection, db: Database, at: datetime, actor: str, action: str,
                 subject: str, detail: dict) -> None:
    # Hashed as read back later: the time in UTC (the column's), the detail as JSON gives it back.
    at = at.astimezone(timezone.utc)
    detail = json.loads(json.dumps(detail, ensure_ascii=False))
    if not db.is_sqlite:
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
    prev = (await conn.execute(sa.select(audit.c.hash).order_by(audit.c.id.desc()).limit(1))).scalar() or GENESIS
    await conn.execute(sa.insert(audit).values(
        at=at, actor=actor, action=action, subject=subject, detail=detail, prev_hash=prev,
        hash=entry_hash(prev, at, actor, action, subject, detail)))


# -- reading

@dataclass(frozen=True)
class Filter:
    """Which entries: every field given narrows the selection."""

    actor: str | None = None
    action: str | None = None  # exact, or a prefix with a trailing "*" ("directory.*")
    subject: str | None = None
    since: datetime | None = None  # at >= since
    until: datetime | None = None  # at < until: consecutive exports neither overlap nor leave gaps
    after: int = 0  # id > after (the cursor of the page before)

    def where(self) -> list[sa.ColumnElement[bool]]:
        c = audit.c
        out: list[sa.ColumnElement[bool]] = [c.id > self.after]
        if self.actor is not None:
            out.append(c.actor == self.actor)
        if self.action is not None:
            out.append(c.action.startswith(self.action[:-1], autoescape=True) if self.action.endswith("*")
                       else c.action == self.action)
        if self.subject is not None:
            out.append(c.subject == self.subject)
        if self.since is not None:
            out.append(c.at >= self.since)
        if self.until is not None:
            out.append(c.at < self.until)
        return out


def parse_time(text: str, field: str) -> datetime:
    """An ISO 8601 time with its offset (a bare time is ambiguous: UTC or Beijing time?)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise error("request.invalid", field, f"{field} must be an ISO 8601 time with offset, "
                    "e.g. 2026-07-01T08:00:00+08:00", f"{field} 须为带时区的 ISO 8601 时间，"
                    "例如 2026-07-01T08:00:00+08:00") from None
    if moment.tzinfo is None:
        raise error("request.invalid", field, f"{field} needs a time-zone offset (+08:00 or Z)",
                    f"{field} 须带时区（+08:00 或 Z）")
    return moment


def _entry(row: Any) -> Entry:
    return Entry(row.id, row.at, row.actor, row.action, row.subject, row.detail, row.prev_hash, row.hash)


async def entries(db: Database, where: Filter = Filter(), limit: int = 100) -> list[Entry]:
    """The first `limit` matching entries, oldest first."""
    q = sa.select(audit).where(*where.where()).order_by(audit.c.id).limit(limit)
    async with db.read() as conn:
        return [_entry(r) for r in await conn.execute(q)]


async def walk(db: Database, where: Filter = Filter()) -> AsyncIterator[Entry]:
    """Every matching entry, oldest first, a page per short read transaction (a long log never
    holds one read open: on SQLite that would keep the WAL from being checkpointed)."""
    while True:
        page = await entries(db, where, PAGE)
        for e in page:
            yield e
        if len(page) < PAGE:
            return
        where = replace(where, after=page[-1].id)


async def count(db: Database, where: Filter = Filter()) -> int:
    async with db.read() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(audit).where(*where.where()))).scalar_one()


@dataclass(frozen=True)
class Verdict:
    entries: int
    first_broken: Entry | None  # the first entry that does not chain onto the one before it
    last: Entry | None  # the newest entry: note its hash elsewhere to detect a shortened log

    @property
    def intact(self) -> bool:
        return self.first_broken is None


async def check(db: Database) -> Verdict:
    """Walk the whole chain. An edited entry breaks at itself; a deleted one at the entry after it."""
    prev, n, broken, last = GENESIS, 0, None, None
    async for e in walk(db):
        if broken is None and not e.follows(prev):
            broken = e
        prev, n, last = e.hash, n + 1, e
    return Verdict(n, broken, last)


async def verify(db: Database) -> Entry | None:
    """The first entry that breaks the chain, or None if it is intact."""
    return (await check(db)).first_broken


COLUMNS = ("id", "at", "actor", "action", "subject", "detail", "prev_hash", "hash")


def csv_row(e: Entry) -> list[Any]:
    """An entry as a CSV row of COLUMNS: the detail as JSON, as it was hashed (keys sorted)."""
    return [e.id, e.at.isoformat(), e.actor, e.action, e.subject,
            json.dumps(e.detail, ensure_ascii=False, sort_keys=True), e.prev_hash, e.hash]


# -- what may be recorded

SECRET_KEYS = frozenset({"auth_token", "secret_key", "secret", "password", "token", "key"})
SECRET_SUFFIXES = ("_secret", "_token", "_password")  # a channel's own: access_key_secret, push_token …


def _secret(key: object) -> bool:
    return isinstance(key, str) and (key in SECRET_KEYS or key.endswith(SECRET_SUFFIXES))
REDACTED = "***"


def redact(data: Any) -> Any:
    """A copy of configuration data fit for the audit log (pure).

    Values of secret keys (twilio.auth_token, secret_key, …) at any depth are
    replaced, and so is the password of any URL (database_url, mqtt.url, …).
    An empty secret stays empty: it says "not configured", which is worth knowing.
    """
    if isinstance(data, Mapping):
        return {k: REDACTED if _secret(k) and data[k] else redact(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [redact(v) for v in data]
    if isinstance(data, str):
        return _without_password(data)
    return data


def _without_password(text: str) -> str:
    if "://" not in text or "@" not in text:
        return text
    try:
        parts = urlsplit(text)
        password = parts.password
    except ValueError:  # not a URL urllib can take apart: keep nothing that could be a password
        return REDACTED
    if password is None:
        return text
    userinfo, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:{REDACTED}@{host}"))
