"""insights: the compiled issue's tracked links, and one row per click or pixel open

Revision ID: 0003_h16
Revises: 0003_h17
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0003_h16'
down_revision: Union[str, Sequence[str], None] = '0003_h17'  # chained after main's 0003_h17 at rebase (0002_h4 before)
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('issues', schema=None) as batch_op:
        batch_op.add_column(sa.Column('links', sa.JSON(), nullable=True))
    op.create_table('clicks',
    sa.Column('id', BigId, nullable=False),
    sa.Column('issue_id', BigId, nullable=False),
    sa.Column('delivery_id', BigId, nullable=True),
    sa.Column('reader', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('link', sa.Integer(), nullable=False),
    sa.Column('method', sa.String(length=8), nullable=False),
    sa.Column('agent', sa.String(length=40), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['issue_id'], ['issues.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['delivery_id'], ['deliveries.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('clicks', schema=None) as batch_op:
        batch_op.create_index('ix_clicks_issue_link', ['issue_id', 'link'], unique=False)
        batch_op.create_index(batch_op.f('ix_clicks_delivery_id'), ['delivery_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_clicks_at'), ['at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('clicks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_clicks_at'))
        batch_op.drop_index(batch_op.f('ix_clicks_delivery_id'))
        batch_op.drop_index('ix_clicks_issue_link')
    op.drop_table('clicks')
    with op.batch_alter_table('issues', schema=None) as batch_op:
        batch_op.drop_column('links')
