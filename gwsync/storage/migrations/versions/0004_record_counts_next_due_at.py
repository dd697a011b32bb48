"""record counts and the scheduler's due index

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 22:00:00.000000

`record_counts` is filled from `records` once, here; from then on the record store keeps
it. `next_due_at` starts in the past for every row, so the first tick after the upgrade
looks at each row once and sets it a sync interval ahead.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('record_counts',
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('feature', sa.String(length=40), nullable=False),
    sa.Column('records', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', 'feature')
    )
    op.execute(
        "INSERT INTO record_counts (account_id, feature, records) "
        "SELECT account_id, feature, count(*) FROM records "
        "WHERE kind NOT LIKE 'derived:%' GROUP BY account_id, feature")
    with op.batch_alter_table('sync_states', schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            'next_due_at', sa.DateTime(timezone=True), nullable=False,
            server_default=sa.text("'1970-01-01 00:00:00.000000'")))
        batch_op.create_index('ix_sync_states_next_due_at',
                              ['next_due_at', 'account_id', 'feature'], unique=False)
        batch_op.create_index('ix_sync_states_status_started_at', ['status', 'started_at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sync_states', schema=None) as batch_op:
        batch_op.drop_index('ix_sync_states_status_started_at')
        batch_op.drop_index('ix_sync_states_next_due_at')
        batch_op.drop_column('next_due_at')
    op.drop_table('record_counts')
