"""accounts, sessions, approvals, tokens bound to senders

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 07:07:47.402992
"""
from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

import warnd.store.schema

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sessions',
    sa.Column('id_hash', sa.String(length=64), nullable=False),
    sa.Column('user_name', sa.String(length=64), nullable=False),
    sa.Column('csrf', sa.String(length=64), nullable=False),
    sa.Column('created_at', warnd.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', warnd.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', warnd.store.schema.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id_hash', name=op.f('pk_sessions'))
    )
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sessions_user_name'), ['user_name'], unique=False)

    op.create_table('users',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('department', sa.String(length=200), nullable=False),
    sa.Column('senders', sa.JSON(), nullable=False),
    sa.Column('events', sa.JSON(), nullable=False),
    sa.Column('regions', sa.JSON(), nullable=False),
    sa.Column('max_level', sa.Integer(), nullable=False),
    sa.Column('supersede', sa.Boolean(), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('failed_logins', sa.Integer(), nullable=False),
    sa.Column('locked_until', warnd.store.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_login_at', warnd.store.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', warnd.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('disabled_at', warnd.store.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('name', name=op.f('uq_users_name'))
    )
    op.create_table('approvals',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('warning_id', sa.BigInteger(), nullable=False),
    sa.Column('approver', sa.String(length=64), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('at', warnd.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['warning_id'], ['warnings.id'], name=op.f('fk_approvals_warning_id_warnings')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_approvals')),
    sa.UniqueConstraint('warning_id', 'approver', name='uq_approvals_warning_approver')
    )
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('role', sa.String(length=16), server_default='department', nullable=False))
        batch_op.add_column(sa.Column('senders', sa.JSON(), server_default='[]', nullable=False))
        batch_op.add_column(sa.Column('supersede', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('user_name', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('label', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('expires_at', warnd.store.schema.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_used_at', warnd.store.schema.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('rotated_from', sa.BigInteger(), nullable=True))

    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('restricted', sa.Boolean(), server_default=sa.false(), nullable=False))

    with op.batch_alter_table('warnings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('submitted_by', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('approvals_needed', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('approved_at', warnd.store.schema.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('published_at', warnd.store.schema.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('rejected_reason', sa.Text(), nullable=True))

    # Tokens made before this revision: admin tokens stay admin (any sender); a
    # department's token is bound to the CAP senders its department has issued as.
    conn = op.get_bind()
    conn.execute(sa.text("UPDATE tokens SET role = 'admin', senders = '[\"*\"]' WHERE admin"))
    rows = conn.execute(sa.text("SELECT DISTINCT t.id, w.sender FROM tokens t JOIN warnings w "
                                "ON w.department = t.department WHERE NOT t.admin")).all()
    bound: dict[int, list[str]] = {}
    for tid, sender in rows:
        bound.setdefault(tid, []).append(sender)
    for tid, senders in bound.items():
        value = "CAST(:s AS JSON)" if conn.dialect.name == "postgresql" else ":s"
        conn.execute(sa.text(f"UPDATE tokens SET senders = {value} WHERE id = :id"),
                     {"s": json.dumps(sorted(senders)), "id": tid})



def downgrade() -> None:
    with op.batch_alter_table('warnings', schema=None) as batch_op:
        batch_op.drop_column('rejected_reason')
        batch_op.drop_column('published_at')
        batch_op.drop_column('approved_at')
        batch_op.drop_column('approvals_needed')
        batch_op.drop_column('submitted_by')

    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.drop_column('restricted')

    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.drop_column('rotated_from')
        batch_op.drop_column('last_used_at')
        batch_op.drop_column('expires_at')
        batch_op.drop_column('label')
        batch_op.drop_column('user_name')
        batch_op.drop_column('supersede')
        batch_op.drop_column('senders')
        batch_op.drop_column('role')

    op.drop_table('approvals')
    op.drop_table('users')
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sessions_user_name'))

    op.drop_table('sessions')
