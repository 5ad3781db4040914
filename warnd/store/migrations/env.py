"""Alembic environment: synchronous engine, warnd's metadata, a lock on PostgreSQL
so that several nodes starting at once do not migrate concurrently."""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from warnd.store.schema import metadata

MIGRATION_LOCK = 0x57415244  # "WARD"


def run() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
            conn.commit()
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True,
                          compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
            conn.commit()
    engine.dispose()


run()
