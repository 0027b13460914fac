"""issue_items.snapshot: the comparison as it was when the issue was frozen

The archive feed must show what readers got, not the comparison as the site edited it later.

Revision ID: 0002_h3
Revises: 0001
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0002_h3'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('issue_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('snapshot', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('issue_items', schema=None) as batch_op:
        batch_op.drop_column('snapshot')
