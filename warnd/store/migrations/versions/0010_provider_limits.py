"""provider limits shared by nodes (issue 11): rate cells, sends per called number

Revision ID: 0010
Revises: 0009
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import warnd.store.schema

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rate_limits',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('tat', sa.Double(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_rate_limits'))
    )
    op.create_table('number_sends',
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('address', sa.String(length=200), nullable=False),
    sa.Column('sends', sa.Text(), nullable=False),
    sa.Column('updated_at', warnd.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('channel', 'address', name=op.f('pk_number_sends'))
    )
    with op.batch_alter_table('number_sends', schema=None) as batch_op:
        batch_op.create_index('ix_number_sends_updated_at', ['updated_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('number_sends', schema=None) as batch_op:
        batch_op.drop_index('ix_number_sends_updated_at')
    op.drop_table('number_sends')
    op.drop_table('rate_limits')
