"""reader preferences and editions: topics, frequency and pause per subscriber; one edition per choice in use

Revision ID: 0003_h15
Revises: 0003_h16
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0003_h15'
down_revision: Union[str, Sequence[str], None] = '0003_h16'  # chained after main's 0003_h16 at rebase
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('topics', sa.String(length=1000), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('frequency', sa.String(length=16), nullable=False, server_default='weekly'))
        batch_op.add_column(sa.Column('paused_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_subscribers_choice', ['status', 'frequency', 'topics'], unique=False)
    with op.batch_alter_table('issues', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reader_skips', sa.JSON(), nullable=True))
    op.create_table('editions',
    sa.Column('id', BigId, nullable=False),
    sa.Column('issue_id', BigId, nullable=False),
    sa.Column('key', sa.String(length=1000), nullable=False),
    sa.Column('label', sa.String(length=1000), nullable=False),
    sa.Column('frequency', sa.String(length=16), nullable=False),
    sa.Column('topics', sa.JSON(), nullable=False),
    sa.Column('recipients', sa.Integer(), nullable=False),
    sa.Column('filled', sa.Integer(), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=True),
    sa.Column('preheader', sa.String(length=300), nullable=True),
    sa.Column('html', sa.Text(), nullable=True),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('placeholder_nonce', sa.String(length=32), nullable=True),
    sa.Column('links', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['issue_id'], ['issues.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('issue_id', 'key'),
    sa.UniqueConstraint('id', 'issue_id'),
    )
    op.create_table('edition_items',
    sa.Column('id', BigId, nullable=False),
    sa.Column('edition_id', BigId, nullable=False),
    sa.Column('comparison_id', BigId, nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('score_parts', sa.JSON(), nullable=False),
    sa.Column('pinned', sa.Boolean(), nullable=False),
    sa.Column('filler', sa.Boolean(), nullable=False),
    sa.Column('snapshot', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['comparison_id'], ['comparisons.id']),
    sa.ForeignKeyConstraint(['edition_id'], ['editions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('edition_id', 'comparison_id'),
    sa.UniqueConstraint('edition_id', 'rank'),
    )
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('edition_id', BigId, nullable=True))
        batch_op.create_foreign_key('fk_batches_edition', 'editions', ['edition_id'], ['id'], ondelete='CASCADE')
    # The edition of a delivery must be one of its own issue's: with (issue, subscriber) unique and the
    # issue unique per week, nobody can hold two editions of one week.
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('edition_id', BigId, nullable=True))
        batch_op.create_index('ix_deliveries_edition_id', ['edition_id'], unique=False)
        batch_op.create_foreign_key('fk_deliveries_edition_of_issue', 'editions', ['edition_id', 'issue_id'],
                                    ['id', 'issue_id'], ondelete='CASCADE')


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_constraint('fk_deliveries_edition_of_issue', type_='foreignkey')
        batch_op.drop_index('ix_deliveries_edition_id')
        batch_op.drop_column('edition_id')
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_constraint('fk_batches_edition', type_='foreignkey')
        batch_op.drop_column('edition_id')
    op.drop_table('edition_items')
    op.drop_table('editions')
    with op.batch_alter_table('issues', schema=None) as batch_op:
        batch_op.drop_column('reader_skips')
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.drop_index('ix_subscribers_choice')
        batch_op.drop_column('paused_until')
        batch_op.drop_column('frequency')
        batch_op.drop_column('topics')
