"""Alembic migrations build exactly the schema the code uses, on both databases."""
from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from warnd.store.database import sync_url
from warnd.store.migrate import current, upgrade
from warnd.store.schema import metadata


def test_upgrade_to_head_matches_the_schema_and_is_repeatable(db_url):
    upgrade(db_url)
    upgrade(db_url)  # a second run is a no-op
    engine = sa.create_engine(sync_url(db_url))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), metadata)
    engine.dispose()
    assert diff == []
    assert current(db_url) is not None
