"""feed_status and feed_entries (issue 14): the CAP feeds warnd polls and what it saw in them

Revision ID: 0013
Revises: 0012
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'feed_status',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_poll_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_success_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_new_alert_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error_code', sa.String(length=64), nullable=True),
        sa.Column('last_error_detail', sa.String(length=500), nullable=True),
        sa.Column('consecutive_failures', sa.Integer(), nullable=False),
        sa.Column('etag', sa.String(length=500), nullable=True),
        sa.Column('last_modified', sa.String(length=100), nullable=True),
        sa.Column('next_poll_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('alarmed_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_feed_status')),
    )
    op.create_table(
        'feed_entries',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('feed', sa.String(length=64), nullable=False),
        sa.Column('entry_key', sa.String(length=64), nullable=False),
        sa.Column('ref', sa.String(length=500), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('sender', sa.String(length=200), nullable=True),
        sa.Column('identifier', sa.String(length=200), nullable=True),
        sa.Column('code', sa.String(length=64), nullable=True),
        sa.Column('detail', sa.String(length=500), nullable=True),
        sa.Column('warning_id', sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_feed_entries')),
        sa.UniqueConstraint('feed', 'entry_key', name='uq_feed_entries_feed_entry_key'),
    )
    op.create_index('ix_feed_entries_sender_identifier', 'feed_entries', ['sender', 'identifier'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_feed_entries_sender_identifier', table_name='feed_entries')
    op.drop_table('feed_entries')
    op.drop_table('feed_status')
