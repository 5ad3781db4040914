"""Shared fixtures: real databases (a SQLite file and a fresh PostgreSQL database).

PostgreSQL is reached at WARND_TEST_PG (default the local test server). When it
is unreachable the PostgreSQL variants skip locally, but fail under CI=true:
the store's tests may never silently skip there.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from warnd.clock import ManualClock
from warnd.store.database import Database
from warnd.store.schema import metadata

PG_ADMIN_URL = os.environ.get("WARND_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "cap"


def _pg_unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(f"PostgreSQL not reachable: {reason}")


def create_pg_database() -> str:
    """Create a uniquely named database; return its URL."""
    name = f"warnd_t_{uuid.uuid4().hex[:10]}"
    try:
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    except sa.exc.OperationalError as exc:
        _pg_unavailable(str(exc).splitlines()[0])
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A URL to an empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warnd.db'}"
        return
    url = create_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture
async def database(db_url):
    db = Database(db_url)
    async with db.write() as conn:
        await conn.run_sync(metadata.create_all)
    yield db
    await db.close()


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CAP corpus missing at {CORPUS}")
        pytest.skip(f"CAP corpus missing at {CORPUS}")
    return CORPUS
