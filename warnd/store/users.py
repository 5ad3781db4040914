"""Operator accounts (people): argon2id passwords, console sessions, login throttling.

Passwords are stored only as argon2id hashes (argon2-cffi's defaults, RFC 9106's
low-memory profile). Hashing costs a tenth of a second of CPU on purpose, so it
runs on a worker thread: a login never stalls the event loop that sends warnings.
A wrong password and an unknown name fail the same way and take the same time.

A console session is a random id in a cookie; the database keeps only its
SHA-256 (like API tokens: 256 random bits need no stretching) and the session's
CSRF token. Every request looks the session up, so a logout or a disabled
account ends it on every node at once.
"""
from __future__ import annotations

import asyncio
import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError

from warnd.clock import Clock
from warnd.config import AccountsConfig
from warnd.domain.authority import PERSON_ROLES, Role, Scope
from warnd.domain.errors import WarndError, error
from warnd.domain.model import Level
from warnd.store import audit
from warnd.store.database import Database
from warnd.store.schema import sessions, users
from warnd.store.queries import record_json
from warnd.store.tokens import TokenStore, scope_of_row, token_hash

NAME = re.compile(r"[a-z0-9._-]{2,64}")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 takes any length; this only bounds what a request can make us hash
TOUCH_EVERY = timedelta(seconds=60)  # last_seen_at is written at most this often per session


@dataclass(frozen=True)
class UserInfo:
    """What `user list` and the API show: never the password hash."""

    name: str
    display_name: str | None
    role: str
    department: str
    senders: tuple[str, ...]
    events: tuple[str, ...]
    regions: tuple[str, ...]
    max_level: str
    supersede: bool
    failed_logins: int
    locked_until: datetime | None
    last_login_at: datetime | None
    created_at: datetime
    disabled_at: datetime | None

    def json(self) -> dict:
        return record_json(self)


def _info(row) -> UserInfo:  # noqa: ANN001 - a users row
    return UserInfo(row.name, row.display_name, row.role, row.department, tuple(row.senders), tuple(row.events),
                    tuple(row.regions), Level(row.max_level).label, bool(row.supersede), row.failed_logins,
                    row.locked_until, row.last_login_at, row.created_at, row.disabled_at)


def _person_scope(row) -> Scope:  # noqa: ANN001 - a users row
    scope = scope_of_row(row, f"user:{row.name}")
    return Scope(scope.department, scope.events, scope.regions, scope.max_level, scope.role, scope.senders,
                 scope.supersede, scope.actor, row.name)


def check_name(name: str) -> None:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise error("request.invalid", "name", "a user name is 2-64 of a-z, 0-9, '.', '_' and '-'",
                    "用户名须为 2-64 个小写字母、数字或 . _ - 字符")


def check_password(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise error("request.invalid", "password", f"a password needs at least {MIN_PASSWORD} characters",
                    f"密码至少需要 {MIN_PASSWORD} 个字符")
    if len(password) > MAX_PASSWORD:
        raise error("request.invalid", "password", f"a password has at most {MAX_PASSWORD} characters",
                    f"密码最多 {MAX_PASSWORD} 个字符")


def person_role(role: Role | str) -> Role:
    """A role a person may hold (a department's role belongs to API tokens only)."""
    try:
        parsed = Role(role)
    except ValueError:
        parsed = None
    if parsed not in PERSON_ROLES:
        allowed = ", ".join(r.value for r in PERSON_ROLES)
        raise error("request.invalid", "role", f"a person's role is one of {allowed}",
                    f"人员角色须为以下之一：{allowed}")
    return parsed


def _codes(values: Iterable[str], field: str) -> list[str]:
    out = list(values)
    if not out or not all(isinstance(v, str) and v.strip() for v in out):
        raise error("request.invalid", field, f"{field} must be a non-empty list of names (or *)",
                    f"{field} 须为非空名称列表（或 *）")
    return [v.strip() for v in out]


def _subject(name: str) -> str:
    return f"user:{name[:64]}"  # a failed login's name is whatever was typed


class UserStore:
    def __init__(self, db: Database, clock: Clock, settings: AccountsConfig) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.tokens = TokenStore(db, clock)
        self.hasher = PasswordHasher()  # argon2id
        self._dummy_hash: str | None = None  # verified against for unknown names, to take the same time

    # -- accounts --

    async def create(self, name: str, role: Role | str, department: str | None, password: str, *,
                     senders: Iterable[str] = (), events: Iterable[str] = ("*",),
                     regions: Iterable[str] = ("*",), max_level: Level = Level.RED, supersede: bool = False,
                     display_name: str | None = None, actor: str = "cli") -> UserInfo:
        check_name(name)
        role = person_role(role)
        check_password(password)
        department = (department or "").strip()
        senders = [s.strip() for s in senders if s and s.strip()]
        if role is Role.EDITOR and not department:
            raise error("request.invalid", "department", "an editor writes for a department: name it",
                        "制作人员须指定所属单位")
        if role is Role.EDITOR and not senders:
            raise error("request.invalid", "senders", "an editor needs at least one CAP sender to issue as",
                        "制作人员须至少指定一个 CAP 发送方")
        events, regions = _codes(events, "events"), _codes(regions, "regions")
        level = _level(max_level)
        password_hash = await asyncio.to_thread(self.hasher.hash, password)
        now = self.clock.now()
        row = dict(name=name, display_name=display_name or None, role=role.value, department=department,
                   senders=senders, events=events, regions=regions, max_level=int(level),
                   supersede=bool(supersede), password_hash=password_hash, failed_logins=0, created_at=now,
                   version=1)
        try:
            async with self.db.write() as conn:
                taken = (await conn.execute(sa.select(users.c.id).where(users.c.name == name))).first()
                if taken is None:
                    await conn.execute(sa.insert(users).values(**row))
                    await audit.append(conn, self.db, now, actor, "user.create", _subject(name), {
                        "role": role.value, "department": department, "senders": senders, "events": events,
                        "regions": regions, "max_level": level.label, "supersede": bool(supersede),
                        "display_name": display_name or None})
        except IntegrityError:
            taken = True  # created by someone else between our check and our insert
        if taken is not None:
            raise error("request.invalid", "name", f"a user named {name} already exists", f"用户 {name} 已存在")
        return await self.get(name)

    async def list(self) -> list[UserInfo]:
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(users).order_by(users.c.name))).all()
        return [_info(r) for r in rows]

    async def get(self, name: str) -> UserInfo:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.name == name))).first()
        if row is None:
            raise _unknown(name)
        return _info(row)

    async def disable(self, name: str, actor: str = "cli") -> bool:
        """Disable the account and end everything that speaks for it, in one transaction.

        True if it was active; False if it already was disabled.
        """
        now = self.clock.now()
        async with self.db.write() as conn:
            row = (await conn.execute(sa.select(users.c.disabled_at).where(users.c.name == name))).first()
            if row is None:
                raise _unknown(name)
            if row.disabled_at is not None:
                return False
            await conn.execute(sa.update(users).where(users.c.name == name)
                               .values(disabled_at=now, version=users.c.version + 1))
            ended = await _end_sessions(conn, name, now)
            revoked = await self.tokens.revoke_user(conn, name, now)
            await audit.append(conn, self.db, now, actor, "user.disable", _subject(name),
                               {"sessions_ended": ended, "tokens_revoked": revoked})
        return True

    async def set_password(self, name: str, password: str, actor: str = "cli") -> None:
        """A new password; it also unlocks the account and ends its console sessions
        (whoever knew the old one is logged out). Personal tokens stay: revoke those apart."""
        check_password(password)
        await self.get(name)  # before spending a hash on it
        password_hash = await asyncio.to_thread(self.hasher.hash, password)
        now = self.clock.now()
        async with self.db.write() as conn:
            n = (await conn.execute(sa.update(users).where(users.c.name == name).values(
                password_hash=password_hash, failed_logins=0, locked_until=None,
                version=users.c.version + 1))).rowcount
            if not n:
                raise _unknown(name)
            ended = await _end_sessions(conn, name, now)
            await audit.append(conn, self.db, now, actor, "user.password", _subject(name), {"sessions_ended": ended})

    async def scope(self, name: str) -> Scope | None:
        """What this person may do now; None if the account is unknown or disabled."""
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.name == name))).first()
        if row is None or row.disabled_at is not None:
            return None
        return _person_scope(row)

    # -- logins --

    async def authenticate(self, name: str, password: str, ip: str | None = None) -> Scope:
        """The person's scope if the password is right; else auth.login_failed or auth.locked.

        `max_failed_logins` wrong passwords in a row lock the account for
        `lockout_minutes`; a success, or the lock itself, starts the count again.
        """
        now = self.clock.now()
        detail = {"ip": ip}
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.name == name))).first()
        if row is None or row.disabled_at is not None:
            await self._verify(await self._dummy(), password)  # the same time as a wrong password
            await self._audit_failure(name, now, {**detail, "reason": "unknown" if row is None else "disabled"})
            raise WarndError("auth.login_failed")
        if row.locked_until is not None and row.locked_until > now:
            await self._audit_failure(name, now, {**detail, "reason": "locked"})
            raise _locked(row.locked_until, now)
        ok = await self._verify(row.password_hash, password)
        rehashed = (await asyncio.to_thread(self.hasher.hash, password)
                    if ok and self.hasher.check_needs_rehash(row.password_hash) else None)
        outcome = await self._record_attempt(name, ok, rehashed, now, detail)
        if isinstance(outcome, WarndError):
            raise outcome
        return outcome

    async def _record_attempt(self, name: str, ok: bool, rehashed: str | None, now: datetime,
                              detail: dict) -> Scope | WarndError:
        """Count the attempt under the row's lock; the error is returned, not raised, so it commits."""
        async with self.db.write() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.name == name).with_for_update())).first()
            if row is None or row.disabled_at is not None:  # disabled while the hash was checked
                await audit.append(conn, self.db, now, _actor(detail), "user.login_failed", _subject(name),
                                   {**detail, "reason": "disabled"})
                return WarndError("auth.login_failed")
            if row.locked_until is not None and row.locked_until > now:  # locked by a parallel attempt
                await audit.append(conn, self.db, now, _actor(detail), "user.login_failed", _subject(name),
                                   {**detail, "reason": "locked"})
                return _locked(row.locked_until, now)
            if ok:
                values = dict(failed_logins=0, locked_until=None, last_login_at=now, version=row.version + 1)
                if rehashed:
                    values["password_hash"] = rehashed
                await conn.execute(sa.update(users).where(users.c.name == name).values(**values))
                await audit.append(conn, self.db, now, f"user:{name}", "user.login", _subject(name), detail)
                return _person_scope(row)
            failed = row.failed_logins + 1
            locks = failed >= self.settings.max_failed_logins
            until = now + timedelta(minutes=self.settings.lockout_minutes) if locks else None
            await conn.execute(sa.update(users).where(users.c.name == name).values(
                failed_logins=0 if locks else failed, locked_until=until, version=row.version + 1))
            # the audit entries last: its lock is held only until the commit
            await audit.append(conn, self.db, now, _actor(detail), "user.login_failed", _subject(name),
                               {**detail, "reason": "password", "failed": failed})
            if not locks:
                return WarndError("auth.login_failed")
            await audit.append(conn, self.db, now, _actor(detail), "user.locked", _subject(name),
                               {**detail, "failed": failed, "until": until.isoformat()})
            return _locked(until, now)

    async def _audit_failure(self, name: str, now: datetime, detail: dict) -> None:
        async with self.db.write() as conn:
            await audit.append(conn, self.db, now, _actor(detail), "user.login_failed", _subject(name), detail)

    async def _verify(self, password_hash: str, password: str) -> bool:
        if not isinstance(password, str) or len(password) > MAX_PASSWORD:
            password = ""  # still spend the time
        try:
            return await asyncio.to_thread(self.hasher.verify, password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(self.hasher.hash, secrets.token_urlsafe(16))
        return self._dummy_hash

    # -- console sessions --

    async def start_session(self, name: str) -> tuple[str, str]:
        """A new session for someone just authenticated: (session id for the cookie, CSRF token)."""
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self.clock.now()
        async with self.db.write() as conn:
            await conn.execute(sa.insert(sessions).values(id_hash=token_hash(session_id), user_name=name,
                                                          csrf=csrf, created_at=now, last_seen_at=now))
        return session_id, csrf

    async def session(self, session_id: str) -> tuple[Scope, str] | None:
        """The scope and CSRF token of a live session; None once it has ended.

        A session ends at logout, after `idle_minutes` unused, `max_hours` after
        login, or when its account is disabled.
        """
        now = self.clock.now()
        s = sessions.c
        q = (sa.select(s.id_hash, s.csrf, s.last_seen_at, s.created_at.label("started_at"), users)
             .select_from(sessions.join(users, users.c.name == s.user_name))
             .where(s.id_hash == token_hash(session_id), s.ended_at.is_(None)))
        async with self.db.read() as conn:
            row = (await conn.execute(q)).first()
        if row is None or row.disabled_at is not None:
            return None
        if now - row.last_seen_at >= timedelta(minutes=self.settings.idle_minutes):
            return None
        if now - row.started_at >= timedelta(hours=self.settings.max_hours):
            return None
        if now - row.last_seen_at >= TOUCH_EVERY:
            async with self.db.write() as conn:
                await conn.execute(sa.update(sessions).where(s.id_hash == row.id_hash).values(last_seen_at=now))
        return _person_scope(row), row.csrf

    async def end_session(self, session_id: str, actor: str) -> bool:
        """Logout; False if the session had already ended."""
        now = self.clock.now()
        async with self.db.write() as conn:
            row = (await conn.execute(sa.select(sessions.c.user_name).where(
                sessions.c.id_hash == token_hash(session_id), sessions.c.ended_at.is_(None)))).first()
            if row is None:
                return False
            await conn.execute(sa.update(sessions).where(sessions.c.id_hash == token_hash(session_id))
                               .values(ended_at=now))
            await audit.append(conn, self.db, now, actor, "user.logout", _subject(row.user_name), {})
        return True


    async def purge_sessions(self) -> int:
        """Forget sessions that can no longer be used (the audit log keeps the logins and logouts)."""
        s = sessions.c
        now = self.clock.now()
        idle = now - timedelta(minutes=self.settings.idle_minutes)
        async with self.db.write() as conn:
            return (await conn.execute(sa.delete(sessions).where(sa.or_(
                s.ended_at.is_not(None), s.last_seen_at <= idle,  # as `session` judges: at the limit it has ended
                s.created_at <= now - timedelta(hours=self.settings.max_hours))))).rowcount


async def _end_sessions(conn, name: str, now: datetime) -> int:  # noqa: ANN001 - an open write transaction
    return (await conn.execute(sa.update(sessions).where(sessions.c.user_name == name, sessions.c.ended_at.is_(None))
                               .values(ended_at=now))).rowcount


def _actor(detail: dict) -> str:
    """Whoever tried a login is not yet anyone: the audit names where it came from."""
    return f"ip:{detail['ip']}" if detail.get("ip") else "anonymous"


def _unknown(name: str) -> WarndError:
    return error("request.not_found", "name", f"no user named {name}", f"无用户 {name}")


def _locked(until: datetime, now: datetime) -> WarndError:
    minutes = max(1, math.ceil((until - now).total_seconds() / 60))
    return error("auth.locked", "name", f"too many failed logins; try again in {minutes} min",
                 f"登录失败次数过多，请 {minutes} 分钟后再试")


def _level(value: Level | str | int) -> Level:
    try:
        return Level.parse(value) if isinstance(value, str) else Level(value)
    except ValueError:
        raise error("request.invalid", "max_level", f"unknown level {value}; one of red, orange, yellow, blue",
                    f"未知级别 {value}；可选：红、橙、黄、蓝") from None
