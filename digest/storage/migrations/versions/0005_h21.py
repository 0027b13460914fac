"""transactional mail keeps its provider id; a click row counts its repeats

Revision ID: 0005_h21
Revises: 0004_h19

- `outgoing_mail.provider_id`: the id the transport gave a confirmation or welcome mail, so a
  provider's event about it names our row, and the person comes from that row, never from the
  address the event carries (issue 21, a forged report must not point at anyone else).
- `clicks.hits`: repeated requests for one link of one message within a short window add to
  the row's count instead of adding a row each (a flood of one token writes one row).
Downgrade drops both; the repeats folded into `hits` are then counted once.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0005_h21'
down_revision: Union[str, Sequence[str], None] = '0004_h19'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('outgoing_mail', schema=None) as batch_op:
        batch_op.add_column(sa.Column('provider_id', sa.String(length=100), nullable=True))
        batch_op.create_index('ix_outgoing_mail_provider_id', ['provider_id'], unique=False)
    with op.batch_alter_table('clicks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hits', sa.Integer(), nullable=False, server_default='1'))


def downgrade() -> None:
    with op.batch_alter_table('clicks', schema=None) as batch_op:
        batch_op.drop_column('hits')
    with op.batch_alter_table('outgoing_mail', schema=None) as batch_op:
        batch_op.drop_index('ix_outgoing_mail_provider_id')
        batch_op.drop_column('provider_id')
