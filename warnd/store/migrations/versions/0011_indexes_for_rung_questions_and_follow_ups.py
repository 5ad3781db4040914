"""indexes (issue 11): confirmations by (warning, grid, state), a rung's question found per claim;
call-list items by mark, the not-at-home households a follow-up call may have told

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
    with op.batch_alter_table('call_list_items', schema=None) as batch_op:
        batch_op.create_index('ix_call_list_items_mark', ['mark'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('call_list_items', schema=None) as batch_op:
        batch_op.drop_index('ix_call_list_items_mark')
    with op.batch_alter_table('confirmations', schema=None) as batch_op:
        batch_op.drop_index('ix_confirmations_grid')
