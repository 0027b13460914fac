"""consent history: consent_records, appended and never updated

Revision ID: 0002_h1
Revises: 0002_h3
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0002_h1'
down_revision: Union[str, Sequence[str], None] = '0002_h3'  # chained after main's 0002_h3 at rebase
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'consent_records',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('subscriber_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ip', sa.String(length=64), nullable=True),
        sa.Column('user_agent', sa.String(length=500), nullable=True),
        sa.Column('source', sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('consent_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_consent_records_subscriber_id'), ['subscriber_id'], unique=False)
    # What was known before: each subscriber's consent fields become their first record.
    op.execute(
        "INSERT INTO consent_records (subscriber_id, kind, created_at, ip, user_agent, source)"
        " SELECT id, CASE WHEN consent_source LIKE 'import:%' THEN 'imported'"
        " WHEN consent_source = 'cli' THEN 'added'"
        " WHEN consent_source = 'web:resubscribe link' THEN 'resubscribed' ELSE 'signed_up' END,"
        " consent_at, consent_ip, consent_user_agent, consent_source"
        " FROM subscribers WHERE consent_at IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table('consent_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_consent_records_subscriber_id'))
    op.drop_table('consent_records')
