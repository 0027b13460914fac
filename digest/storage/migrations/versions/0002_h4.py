"""the truth about a send: per-attempt records, the batch's own key, paused sends, installation id

Revision ID: 0002_h4
Revises: 0002_h1
"""
from typing import Sequence, Union
import uuid
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa


revision: str = '0002_h4'
down_revision: Union[str, Sequence[str], None] = '0002_h1'  # chained after main's 0002_h1 at rebase
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('send_attempts',
    sa.Column('id', BigId, nullable=False),
    sa.Column('batch_id', BigId, nullable=False),
    sa.Column('idem_key', sa.String(length=256), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('send_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_send_attempts_batch', ['batch_id'], unique=False)
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idem_key', sa.String(length=256), nullable=True))
    with op.batch_alter_table('issues', schema=None) as batch_op:
        batch_op.add_column(sa.Column('paused_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('pause_reason', sa.Text(), nullable=True))
    installation = op.create_table('installation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('install_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    # Generated once, here: every process of this installation reads the same id.
    op.bulk_insert(installation, [{'id': 1, 'install_id': uuid.uuid4().hex[:16],
                                   'created_at': datetime.now(timezone.utc)}])


def downgrade() -> None:
    op.drop_table('installation')
    with op.batch_alter_table('issues', schema=None) as batch_op:
        batch_op.drop_column('pause_reason')
        batch_op.drop_column('paused_at')
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_column('idem_key')
    with op.batch_alter_table('send_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_send_attempts_batch')
    op.drop_table('send_attempts')
