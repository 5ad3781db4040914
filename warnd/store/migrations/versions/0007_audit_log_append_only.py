"""audit_log append-only: triggers refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 09:00:00

The statements are warnd.store.audit's, the same that `metadata.create_all`
runs. On SQLite a later batch migration that rebuilds audit_log (copy, drop,
rename) loses the triggers with the old table: such a migration must create
them again.
"""
from __future__ import annotations

from alembic import op

from warnd.store.audit import APPEND_ONLY, DROP_APPEND_ONLY

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in APPEND_ONLY[op.get_bind().dialect.name]:
        op.execute(statement)


def downgrade() -> None:
    for statement in DROP_APPEND_ONLY[op.get_bind().dialect.name]:
        op.execute(statement)
