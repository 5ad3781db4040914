"""notices and roster_asks (issue 14): schedules' messages to people (the daily summary, the
roster refresh's question) and each round of the roster refresh

Revision ID: 0014
Revises: 0013
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import warnd.store.schema

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def _ts() -> warnd.store.schema.UTCDateTime:
    return warnd.store.schema.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'notices',
        sa.Column('id', ID, autoincrement=True, nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('round', sa.String(length=64), nullable=False),
        sa.Column('person_id', sa.String(length=64), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('address', sa.String(length=2000), nullable=False),
        sa.Column('language', sa.String(length=16), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('delivery_id', sa.BigInteger(), nullable=True),
        sa.Column('created_at', _ts(), nullable=False),
        sa.Column('updated_at', _ts(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_notices')),
        sa.UniqueConstraint('kind', 'round', 'person_id', 'channel', name='uq_notices_kind_round_person'),
    )
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.create_index('ix_notices_kind_created', ['kind', 'created_at'], unique=False)
    op.create_table(
        'roster_asks',
        sa.Column('id', ID, autoincrement=True, nullable=False),
        sa.Column('round', sa.String(length=64), nullable=False),
        sa.Column('person_id', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('region', sa.String(length=32), nullable=False),
        sa.Column('phone', sa.String(length=32), nullable=True),
        sa.Column('asked_at', _ts(), nullable=False),
        sa.Column('due_at', _ts(), nullable=False),
        sa.Column('confirmed_at', _ts(), nullable=True),
        sa.Column('inbound_id', sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_roster_asks')),
        sa.UniqueConstraint('round', 'person_id', name='uq_roster_asks_round_person'),
    )
    with op.batch_alter_table('roster_asks', schema=None) as batch_op:
        batch_op.create_index('ix_roster_asks_open', ['round', 'confirmed_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('roster_asks', schema=None) as batch_op:
        batch_op.drop_index('ix_roster_asks_open')
    op.drop_table('roster_asks')
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.drop_index('ix_notices_kind_created')
    op.drop_table('notices')
