"""clicks name their edition: a click token's position is one in its edition's links

Revision ID: 0003_h18
Revises: 0003_h15
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0003_h18'
down_revision: Union[str, Sequence[str], None] = '0003_h15'  # after main's head (0003_h15) when branched
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('clicks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('edition_id', BigId, nullable=True))
        batch_op.create_foreign_key('fk_clicks_edition', 'editions', ['edition_id'], ['id'], ondelete='CASCADE')


def downgrade() -> None:
    with op.batch_alter_table('clicks', schema=None) as batch_op:
        batch_op.drop_constraint('fk_clicks_edition', type_='foreignkey')
        batch_op.drop_column('edition_id')
