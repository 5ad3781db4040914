"""Node-wide settings kept in the database (so every node and every restart agree)."""
from __future__ import annotations

import secrets

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from warnd.store.database import Database
from warnd.store.schema import settings

SECRET_KEY = "secret_key"


async def get_or_create(db: Database, key: str, make) -> str:  # noqa: ANN001 - a zero-argument factory
    """The stored value; the first caller anywhere creates it, the rest read it."""
    async with db.read() as conn:
        value = (await conn.execute(sa.select(settings.c.value).where(settings.c.key == key))).scalar()
    if value is not None:
        return value
    try:
        async with db.write() as conn:
            await conn.execute(sa.insert(settings).values(key=key, value=make()))
    except IntegrityError:
        pass  # another node created it first
    async with db.read() as conn:
        return (await conn.execute(sa.select(settings.c.value).where(settings.c.key == key))).scalar_one()


async def secret_key(db: Database, configured: str) -> bytes:
    """The key that signs links and callbacks: configured, or generated once and kept."""
    if configured:
        return configured.encode()
    return (await get_or_create(db, SECRET_KEY, lambda: secrets.token_urlsafe(32))).encode()
