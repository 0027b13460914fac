"""erasure by index: deliveries that kept an address without a subscriber, queued mail by subscriber

Revision ID: 0007_h23_import
Revises: 0006_h22

`forget` finds a person's deliveries by subscriber id (already indexed) and, through
`ix_deliveries_unlinked_email`, the few that name the address without a subscriber (a merged
spelling, 0003_h17): a partial index holding only those rows, so it stays tiny however many
issues the table keeps. It scanned every delivery by address before (seconds at a million
rows). Deleting the subscriber cascades to `outgoing_mail`, which had no index on
`subscriber_id`: `ix_outgoing_mail_subscriber_id` (an import of a million pending readers
queues a million confirmations). Downgrade drops both; no data changes.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0007_h23_import'
down_revision: Union[str, Sequence[str], None] = '0006_h22'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

UNLINKED = "subscriber_id IS NULL AND email <> ''"


def upgrade() -> None:
    op.create_index('ix_deliveries_unlinked_email', 'deliveries', ['email'], unique=False,
                    postgresql_where=sa.text(UNLINKED), sqlite_where=sa.text(UNLINKED))
    op.create_index('ix_outgoing_mail_subscriber_id', 'outgoing_mail', ['subscriber_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_outgoing_mail_subscriber_id', table_name='outgoing_mail')
    op.drop_index('ix_deliveries_unlinked_email', table_name='deliveries')
