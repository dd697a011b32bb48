"""app webhooks: the outbox of events for the main app

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 01:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'app_webhooks',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('type', sa.String(length=40), nullable=False),
        sa.Column('account_id', sa.String(length=36), nullable=False),
        sa.Column('erasure_id', sa.String(length=36), nullable=True),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('body_ciphertext', sa.LargeBinary(), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.String(length=100), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_app_webhooks_status_next', 'app_webhooks',
                    ['status', 'next_attempt_at'])
    op.create_index('ix_app_webhooks_account_id', 'app_webhooks', ['account_id'])
    op.create_index('ix_app_webhooks_erasure_id', 'app_webhooks', ['erasure_id'])


def downgrade() -> None:
    op.drop_index('ix_app_webhooks_erasure_id', table_name='app_webhooks')
    op.drop_index('ix_app_webhooks_account_id', table_name='app_webhooks')
    op.drop_index('ix_app_webhooks_status_next', table_name='app_webhooks')
    op.drop_table('app_webhooks')
