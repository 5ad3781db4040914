"""indexes for confirming: a reply's requirements, the grid's queued sends, the ladder's rest

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 13:50:00
"""
from __future__ import annotations

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('confirmations', schema=None) as batch_op:
        batch_op.drop_index('ix_confirmations_person')
        batch_op.drop_index('ix_confirmations_backup')
        batch_op.create_index('ix_confirmations_person', ['person_id', 'state', 'warning_id'], unique=False)
        batch_op.create_index('ix_confirmations_backup', ['backup_id', 'state', 'warning_id'], unique=False)

    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_grid', ['warning_id', 'grid', 'state'], unique=False)

    with op.batch_alter_table('rungs', schema=None) as batch_op:
        batch_op.drop_index('ix_rungs_confirmation_id')
        batch_op.create_index('ix_rungs_confirmation', ['confirmation_id', 'state'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('rungs', schema=None) as batch_op:
        batch_op.drop_index('ix_rungs_confirmation')
        batch_op.create_index('ix_rungs_confirmation_id', ['confirmation_id'], unique=False)

    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_grid')

    with op.batch_alter_table('confirmations', schema=None) as batch_op:
        batch_op.drop_index('ix_confirmations_backup')
        batch_op.drop_index('ix_confirmations_person')
        batch_op.create_index('ix_confirmations_person', ['warning_id', 'person_id'], unique=False)
        batch_op.create_index('ix_confirmations_backup', ['warning_id', 'backup_id'], unique=False)
