"""Group commit (Database.write_grouped), on SQLite and PostgreSQL: concurrent callers
share one transaction, each gets its own result once committed, and one caller's
failure is rolled back alone."""
from __future__ import annotations

import asyncio
import pytest
import sqlalchemy as sa

from warnd.store.schema import settings

def put(key: str, fail: bool = False):  # noqa: ANN201
    async def work(conn) -> str:  # noqa: ANN001
        await conn.execute(sa.insert(settings).values(key=key, value="v"))
        if fail:
            raise ValueError(f"{key} refused")
        return key
    return work


async def test_concurrent_writes_commit_together_and_a_failure_stays_its_own(database):
    calls = [database.write_grouped(put(f"k{i}", fail=(i == 3))) for i in range(8)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert [r if not isinstance(r, Exception) else str(r) for r in results] == \
        ["k0", "k1", "k2", "k3 refused", "k4", "k5", "k6", "k7"]
    async with database.read() as conn:
        keys = set((await conn.execute(sa.select(settings.c.key))).scalars())
    assert keys == {f"k{i}" for i in range(8)} - {"k3"}


async def test_a_database_error_fails_only_its_caller(database):
    await database.write_grouped(put("taken"))
    again, free = await asyncio.gather(database.write_grouped(put("taken")), database.write_grouped(put("free")),
                                       return_exceptions=True)
    assert isinstance(again, sa.exc.IntegrityError) and free == "free"
