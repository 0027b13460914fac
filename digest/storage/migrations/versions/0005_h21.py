"""transactional mail keeps its provider id; a click row counts its repeats

Revision ID: 0005_h21
Revises: 0004_h19

- `outgoing_mail.provider_id`: the id the transport gave a confirmation or welcome mail, so a
  provider's event about it names our row, and the person comes from that row, never from the
  address the event carries (issue 21, a forged report must not point at anyone else).
- `clicks.hits`: repeated requests for one link of one message within a short window add to
  the row's count instead of adding a row each (a flood of one token writes one row).
- `installation.message_ids_from_issue`: Message-IDs now mix in the installation's id, so a staging
  copy sharing production's secret never repeats them; issues that exist at upgrade keep the ids
  their batches were first sent with (a batch retried after the upgrade must send the same payload
  under its idempotency key), so the rule starts at the next issue.
Downgrade drops all three; the repeats folded into `hits` are then counted once.
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
    with op.batch_alter_table('installation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('message_ids_from_issue', sa.Integer(), nullable=False, server_default='0'))
    op.execute("UPDATE installation SET message_ids_from_issue = (SELECT COALESCE(MAX(id), 0) + 1 FROM issues)")


def downgrade() -> None:
    with op.batch_alter_table('installation', schema=None) as batch_op:
        batch_op.drop_column('message_ids_from_issue')
    with op.batch_alter_table('clicks', schema=None) as batch_op:
        batch_op.drop_column('hits')
    with op.batch_alter_table('outgoing_mail', schema=None) as batch_op:
        batch_op.drop_index('ix_outgoing_mail_provider_id')
        batch_op.drop_column('provider_id')
