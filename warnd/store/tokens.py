"""Department API tokens: random, shown once, stored only as a SHA-256 hash.

The tokens are 256-bit random values, so a fast hash is enough (no password
stretching needed): an attacker with the table cannot guess a preimage.
"""
from __future__ import annotations

import hashlib
import secrets

import sqlalchemy as sa

from warnd.clock import Clock
from warnd.domain.authority import Scope
from warnd.domain.model import Level
from warnd.store import audit
from warnd.store.database import Database
from warnd.store.schema import tokens

PREFIX = "wdt_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def create(self, scope: Scope) -> str:
        """Store a new token for the scope; return the token itself (never stored)."""
        token = PREFIX + secrets.token_urlsafe(32)
        now = self.clock.now()
        async with self.db.write() as conn:
            tid = (await conn.execute(sa.insert(tokens).values(
                department=scope.department, token_hash=token_hash(token), events=list(scope.events),
                regions=list(scope.regions), max_level=int(scope.max_level), admin=scope.admin,
                created_at=now).returning(tokens.c.id))).scalar_one()
            await audit.append(conn, self.db, now, "cli", "token.create", f"token:{tid}",
                               {"department": scope.department, "events": list(scope.events),
                                "regions": list(scope.regions), "max_level": scope.max_level.label,
                                "admin": scope.admin})
        return token

    async def lookup(self, token: str) -> Scope | None:
        t = tokens.c
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(tokens).where(t.token_hash == token_hash(token),
                                                              t.revoked_at.is_(None)))).first()
        if row is None:
            return None
        return Scope(row.department, tuple(row.events), tuple(row.regions), Level(row.max_level), row.admin)

    async def revoke(self, department: str) -> int:
        now = self.clock.now()
        async with self.db.write() as conn:
            n = (await conn.execute(sa.update(tokens).where(tokens.c.department == department,
                                                            tokens.c.revoked_at.is_(None))
                                    .values(revoked_at=now))).rowcount
            await audit.append(conn, self.db, now, "cli", "token.revoke", f"department:{department}", {"count": n})
        return n
