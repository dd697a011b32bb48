"""keyring: master key ids on wrapped keys, per-feature data keys, the pseudonym key

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 01:30:00.000000

Existing data keys keep a NULL `master_key_id` (wrapped before keyrings, under the raw
master key) and existing pseudonyms stay bare SHA-256 until `gwsync keys rotate`
re-wraps the keys and re-computes the pseudonyms it has the inputs for.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('data_keys') as batch:
        batch.add_column(sa.Column('master_key_id', sa.String(length=24), nullable=True))
        batch.create_index('ix_data_keys_master_key_id', ['master_key_id'], unique=False)
    op.create_table(
        'feature_keys',
        sa.Column('account_id', sa.String(length=36), nullable=False),
        sa.Column('feature', sa.String(length=40), nullable=False),
        sa.Column('wrapped_key', sa.LargeBinary(), nullable=False),
        sa.Column('master_key_id', sa.String(length=24), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('account_id', 'feature'),
    )
    op.create_index('ix_feature_keys_master_key_id', 'feature_keys', ['master_key_id'])
    op.create_table(
        'pseudonym_keys',
        sa.Column('slot', sa.String(length=20), nullable=False),
        sa.Column('key_id', sa.String(length=9), nullable=False),
        sa.Column('wrapped_key', sa.LargeBinary(), nullable=False),
        sa.Column('master_key_id', sa.String(length=24), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('slot'),
    )


def downgrade() -> None:
    op.drop_table('pseudonym_keys')
    op.drop_index('ix_feature_keys_master_key_id', table_name='feature_keys')
    op.drop_table('feature_keys')
    with op.batch_alter_table('data_keys') as batch:
        batch.drop_index('ix_data_keys_master_key_id')
        batch.drop_column('master_key_id')
