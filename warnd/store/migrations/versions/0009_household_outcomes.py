"""household outcomes and roll-ups (issue 11): head counts and notes on marks, walkers' SMS reports

Revision ID: 0009
Revises: 0008
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import warnd.store.schema

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Marks recorded before keep their value: "notified" is 已通知 (told), as it always was.
    with op.batch_alter_table('call_list_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('people', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('note', sa.String(length=200), nullable=True))

    op.create_table('door_reports',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('list_id', sa.BigInteger(), nullable=False),
    sa.Column('grid', sa.String(length=32), nullable=False),
    sa.Column('at', warnd.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('person_id', sa.String(length=64), nullable=True),
    sa.Column('inbound_id', sa.BigInteger(), nullable=True),
    sa.Column('moved_people', sa.Integer(), nullable=True),
    sa.Column('cumulative', sa.Boolean(), nullable=False),
    sa.Column('told', sa.Integer(), nullable=False),
    sa.Column('not_home', sa.Integer(), nullable=False),
    sa.Column('refused', sa.Integer(), nullable=False),
    sa.Column('needs_help', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['list_id'], ['call_lists.id'], name=op.f('fk_door_reports_list_id_call_lists')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_door_reports'))
    )
    with op.batch_alter_table('door_reports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_door_reports_list_id'), ['list_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('door_reports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_door_reports_list_id'))
    op.drop_table('door_reports')

    with op.batch_alter_table('call_list_items', schema=None) as batch_op:
        batch_op.drop_column('note')
        batch_op.drop_column('people')
