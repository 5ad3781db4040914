"""drop three indexes (issue 16) that a longer index on the same table already begins with:
deliveries(warning_id) (ix_deliveries_grid begins with it), confirmations(warning_id)
(ix_confirmations_grid) and deliveries(state, lease_until): the recover sweep's one question
about leases is an OR, so it only ever used the state, which ix_deliveries_due begins with.
Every row a province-wide warning plans paid for them, and every claim and result the last one.

Revision ID: 0015
Revises: 0014
"""
from __future__ import annotations

from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_warning_id')
        batch_op.drop_index('ix_deliveries_claim')
    with op.batch_alter_table('confirmations', schema=None) as batch_op:
        batch_op.drop_index('ix_confirmations_warning_id')


def downgrade() -> None:
    with op.batch_alter_table('confirmations', schema=None) as batch_op:
        batch_op.create_index('ix_confirmations_warning_id', ['warning_id'], unique=False)
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_claim', ['state', 'lease_until'], unique=False)
        batch_op.create_index('ix_deliveries_warning_id', ['warning_id'], unique=False)
