"""inbound applied once, handed-to-provider mark, node heartbeats

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 07:57:28.857840
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import warnd.store.schema

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('nodes',
    sa.Column('incarnation', sa.String(length=200), nullable=False),
    sa.Column('node_id', sa.String(length=200), nullable=False),
    sa.Column('started_at', warnd.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', warnd.store.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('stopped_at', warnd.store.schema.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('incarnation', name=op.f('pk_nodes'))
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('handed_at', warnd.store.schema.UTCDateTime(timezone=True), nullable=True))

    # The same provider message stored more than once before this revision: the first
    # one keeps its reference, the later copies are marked (a record is never deleted).
    conn = op.get_bind()
    dupes = conn.execute(sa.text(
        "SELECT i.id, i.provider_ref FROM inbound i WHERE i.provider_ref IS NOT NULL AND EXISTS ("
        "SELECT 1 FROM inbound j WHERE j.channel = i.channel AND j.provider_ref = i.provider_ref AND j.id < i.id)")).all()
    for row_id, ref in dupes:
        conn.execute(sa.text("UPDATE inbound SET provider_ref = :ref WHERE id = :id"),
                     {"ref": f"{ref}#replay-{row_id}"[:64], "id": row_id})
    with op.batch_alter_table('inbound', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_inbound_channel_provider_ref', ['channel', 'provider_ref'])



def downgrade() -> None:
    with op.batch_alter_table('inbound', schema=None) as batch_op:
        batch_op.drop_constraint('uq_inbound_channel_provider_ref', type_='unique')

    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('handed_at')

    op.drop_table('nodes')
