"""index confirmations by (warning, grid, state) (issue 11): a rung's question is found per claim

Revision ID: 0011
Revises: 0010
"""
from __future__ import annotations

from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('confirmations', schema=None) as batch_op:
        batch_op.create_index('ix_confirmations_grid', ['warning_id', 'grid', 'state'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('confirmations', schema=None) as batch_op:
        batch_op.drop_index('ix_confirmations_grid')
