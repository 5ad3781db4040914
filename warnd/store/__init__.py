"""Storage: one SQLAlchemy Core schema for SQLite and PostgreSQL.

`audit` is imported here so that its append-only triggers are attached to the
schema wherever the schema is used (`metadata.create_all` included).
"""
from warnd.store import audit as _audit  # noqa: F401
