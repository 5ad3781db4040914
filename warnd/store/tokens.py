"""API tokens: random, shown once, stored only as a SHA-256 hash.

The tokens are 256-bit random values, so a fast hash is enough (no password
stretching needed): an attacker with the table cannot guess a preimage.
Every request looks its token up in the database, so a revoked token is
refused at once on every node. A person's personal token carries no rights
of its own: the account behind it decides them on every use (a disabled
account's tokens stop working with it).
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from warnd.clock import Clock
from warnd.domain.authority import Role, Scope
from warnd.domain.errors import WarndError, error
from warnd.domain.model import Level
from warnd.store import audit
from warnd.store.database import Database
from warnd.store.queries import record_json
from warnd.store.schema import tokens, users

PREFIX = "wdt_"
TOUCH_EVERY = timedelta(seconds=60)  # last_used_at is written at most this often per token


def token_hash(token: str) -> str:
    """What is stored of a random secret (a token, a session id): its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    """What `token list` shows: never the token, never its hash."""

    id: int
    department: str
    role: str
    senders: tuple[str, ...]
    events: tuple[str, ...]
    regions: tuple[str, ...]
    max_level: str
    supersede: bool
    user_name: str | None
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    def json(self) -> dict:
        return record_json(self)


def scope_of_row(row, actor: str) -> Scope:  # noqa: ANN001 - a tokens or users row
    return Scope(row.department, tuple(row.events), tuple(row.regions), Level(row.max_level), Role(row.role),
                 tuple(row.senders), bool(row.supersede), actor)


class TokenStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def create(self, scope: Scope, *, actor: str = "cli", user_name: str | None = None,
                     label: str | None = None, expires_at: datetime | None = None) -> str:
        """Store a new token; return the token itself (never stored).

        With `user_name` it is that person's personal token: the scope given is
        ignored, the account's is used on every request.
        """
        token = PREFIX + secrets.token_urlsafe(32)
        now = self.clock.now()
        async with self.db.write() as conn:
            await self._insert(conn, token, scope, user_name, label, expires_at, now, None)
            tid = await self._id_of(conn, token)
            await audit.append(conn, self.db, now, actor, "token.create", f"token:{tid}",
                               {**_describe(scope, user_name, label, expires_at)})
        return token

    async def lookup(self, token: str) -> Scope | None:
        """The scope of a valid token; None if unknown or revoked. Expired: an error saying so."""
        t, u = tokens.c, users.c
        now = self.clock.now()
        q = (sa.select(tokens, u.role.label("u_role"), u.department.label("u_department"),
                       u.senders.label("u_senders"), u.events.label("u_events"), u.regions.label("u_regions"),
                       u.max_level.label("u_max_level"), u.supersede.label("u_supersede"),
                       u.disabled_at.label("u_disabled_at"))
             .select_from(tokens.outerjoin(users, u.name == t.user_name))
             .where(t.token_hash == token_hash(token), t.revoked_at.is_(None)))
        async with self.db.read() as conn:
            row = (await conn.execute(q)).first()
        if row is None:
            return None
        if row.expires_at is not None and row.expires_at <= now:
            raise WarndError("auth.expired")
        if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY:
            async with self.db.write() as conn:
                await conn.execute(sa.update(tokens).where(t.id == row.id).values(last_used_at=now))
        if row.user_name is None:
            return scope_of_row(row, f"token:{row.id}")
        if row.u_role is None or row.u_disabled_at is not None:
            return None  # the account is gone or disabled: so are its tokens
        return Scope(row.u_department, tuple(row.u_events), tuple(row.u_regions), Level(row.u_max_level),
                     Role(row.u_role), tuple(row.u_senders), bool(row.u_supersede), f"user:{row.user_name}",
                     row.user_name)

    async def list(self, *, include_revoked: bool = False) -> list[TokenInfo]:
        q = sa.select(tokens).order_by(tokens.c.id)
        if not include_revoked:
            q = q.where(tokens.c.revoked_at.is_(None))
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        return [TokenInfo(r.id, r.department, r.role, tuple(r.senders), tuple(r.events), tuple(r.regions),
                          Level(r.max_level).label, bool(r.supersede), r.user_name, r.label, r.created_at,
                          r.expires_at, r.last_used_at, r.revoked_at) for r in rows]

    async def revoke(self, token_id: int, *, actor: str = "cli") -> bool:
        now = self.clock.now()
        async with self.db.write() as conn:
            n = (await conn.execute(sa.update(tokens).where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
                                    .values(revoked_at=now))).rowcount
            if n:
                await audit.append(conn, self.db, now, actor, "token.revoke", f"token:{token_id}", {})
        return bool(n)

    async def revoke_user(self, conn: AsyncConnection, user_name: str, now: datetime) -> int:
        """Inside another transaction (an account being disabled): its personal tokens end."""
        return (await conn.execute(sa.update(tokens).where(tokens.c.user_name == user_name,
                                                           tokens.c.revoked_at.is_(None))
                                   .values(revoked_at=now))).rowcount

    async def rotate(self, token_id: int, *, actor: str = "cli", expires_at: datetime | None = None) -> str:
        """A new secret with the same rights; the old one is revoked in the same transaction."""
        token = PREFIX + secrets.token_urlsafe(32)
        now = self.clock.now()
        async with self.db.write() as conn:
            row = (await conn.execute(sa.select(tokens).where(tokens.c.id == token_id,
                                                              tokens.c.revoked_at.is_(None)))).first()
            if row is None:
                raise error("request.not_found", "id", f"no active token {token_id}", f"无有效令牌 {token_id}")
            await conn.execute(sa.update(tokens).where(tokens.c.id == token_id).values(revoked_at=now))
            scope = scope_of_row(row, "")
            await self._insert(conn, token, scope, row.user_name, row.label,
                               expires_at if expires_at is not None else row.expires_at, now, token_id)
            new_id = await self._id_of(conn, token)
            await audit.append(conn, self.db, now, actor, "token.rotate", f"token:{token_id}",
                               {"new_token": new_id})
        return token

    @staticmethod
    async def _insert(conn: AsyncConnection, token: str, scope: Scope, user_name: str | None,
                      label: str | None, expires_at: datetime | None, now: datetime,
                      rotated_from: int | None) -> None:
        await conn.execute(sa.insert(tokens).values(
            department=scope.department, token_hash=token_hash(token), events=list(scope.events),
            regions=list(scope.regions), max_level=int(scope.max_level), admin=scope.admin,
            role=scope.role.value, senders=list(scope.senders), supersede=scope.supersede, user_name=user_name,
            label=label, expires_at=expires_at, created_at=now, rotated_from=rotated_from))

    @staticmethod
    async def _id_of(conn: AsyncConnection, token: str) -> int:
        return (await conn.execute(sa.select(tokens.c.id).where(tokens.c.token_hash == token_hash(token)))).scalar_one()


def _describe(scope: Scope, user_name: str | None, label: str | None, expires_at: datetime | None) -> dict:
    if user_name is not None:
        return {"user": user_name, "label": label, "expires_at": expires_at.isoformat() if expires_at else None}
    return {"department": scope.department, "role": scope.role.value, "senders": list(scope.senders),
            "events": list(scope.events), "regions": list(scope.regions), "max_level": scope.max_level.label,
            "supersede": scope.supersede, "label": label,
            "expires_at": expires_at.isoformat() if expires_at else None}
