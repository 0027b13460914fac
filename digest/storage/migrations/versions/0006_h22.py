"""an issue's content lives in its editions only

Revision ID: 0006_h22
Revises: 0005_h21

Issues and their picks kept a copy of their every-topic weekly edition ("weekly/all"): subject,
preheader, html, text, placeholder nonce, tracked links, and one `issue_items` row per pick. Readers
had to know which copy to read. Now the edition rows are the only copy:

- an issue frozen before editions existed (it has no "weekly/all" edition) gets one, made from its
  own columns and picks, with its deliveries as its recipients. Its deliveries and click rows keep
  naming no edition: the sender and the click redirect read the main edition for those, so a batch
  retried after the upgrade sends the bytes it sent before (its idempotency key holds them);
- an issue frozen with editions already has that edition (compiled from the same email): nothing moves;
- drafts and skipped weeks hold no content (picks are only stored when an issue is frozen);
- then `issues.subject`, `preheader`, `html`, `text`, `placeholder_nonce`, `links` and the
  `issue_items` table go.

Downgrade puts the columns and the table back, filled from the "weekly/all" edition, and removes
the editions this upgrade made (an issue with one edition that none of its deliveries names).
Self-contained: no live code is imported.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0006_h22'
down_revision: Union[str, Sequence[str], None] = '0005_h21'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

MAIN = 'weekly/all'  # digest.cycle.editions.edition_key(Frequency.WEEKLY, ()) when this was written
MAIN_LABEL = 'All topics, weekly'  # its label (digest.cycle.editions.edition_label)
COPIED = ('subject', 'preheader', 'html', 'text', 'placeholder_nonce', 'links')
FROZEN = ('sending', 'sent')

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
meta = sa.MetaData()
issues = sa.Table(
    'issues', meta, sa.Column('id', BigId), sa.Column('status', sa.String(16)),
    sa.Column('created_at', sa.DateTime(timezone=True)), sa.Column('enqueued_at', sa.DateTime(timezone=True)),
    sa.Column('subject', sa.String(300)), sa.Column('preheader', sa.String(300)), sa.Column('html', sa.Text()),
    sa.Column('text', sa.Text()), sa.Column('placeholder_nonce', sa.String(32)), sa.Column('links', sa.JSON()))
issue_items = sa.Table(
    'issue_items', meta, sa.Column('id', BigId), sa.Column('issue_id', BigId), sa.Column('comparison_id', BigId),
    sa.Column('rank', sa.Integer()), sa.Column('score', sa.Float()), sa.Column('score_parts', sa.JSON()),
    sa.Column('pinned', sa.Boolean()), sa.Column('snapshot', sa.JSON()))
editions = sa.Table(
    'editions', meta, sa.Column('id', BigId), sa.Column('issue_id', BigId), sa.Column('key', sa.String(1000)),
    sa.Column('label', sa.String(1000)), sa.Column('frequency', sa.String(16)), sa.Column('topics', sa.JSON()),
    sa.Column('recipients', sa.Integer()), sa.Column('filled', sa.Integer()), sa.Column('subject', sa.String(300)),
    sa.Column('preheader', sa.String(300)), sa.Column('html', sa.Text()), sa.Column('text', sa.Text()),
    sa.Column('placeholder_nonce', sa.String(32)), sa.Column('links', sa.JSON()),
    sa.Column('created_at', sa.DateTime(timezone=True)))
edition_items = sa.Table(
    'edition_items', meta, sa.Column('id', BigId), sa.Column('edition_id', BigId), sa.Column('comparison_id', BigId),
    sa.Column('rank', sa.Integer()), sa.Column('score', sa.Float()), sa.Column('score_parts', sa.JSON()),
    sa.Column('pinned', sa.Boolean()), sa.Column('filler', sa.Boolean()), sa.Column('snapshot', sa.JSON()))
deliveries = sa.Table('deliveries', meta, sa.Column('id', BigId), sa.Column('issue_id', BigId),
                      sa.Column('edition_id', BigId))


def upgrade() -> None:
    conn = op.get_bind()
    has_main = sa.select(editions.c.id).where(editions.c.issue_id == issues.c.id, editions.c.key == MAIN).exists()
    frozen = sa.or_(issues.c.status.in_(FROZEN), issues.c.html.is_not(None))
    for issue in conn.execute(sa.select(issues).where(frozen, ~has_main).order_by(issues.c.id)).mappings().all():
        recipients = conn.scalar(sa.select(sa.func.count()).select_from(deliveries)
                                 .where(deliveries.c.issue_id == issue['id'])) or 0
        edition_id = conn.execute(editions.insert().returning(editions.c.id).values(
            issue_id=issue['id'], key=MAIN, label=MAIN_LABEL, frequency='weekly', topics=[],
            recipients=recipients, filled=0, created_at=issue['enqueued_at'] or issue['created_at'],
            **{name: issue[name] for name in COPIED})).scalar_one()
        items = conn.execute(sa.select(issue_items).where(issue_items.c.issue_id == issue['id'])
                             .order_by(issue_items.c.rank)).mappings().all()
        if items:
            conn.execute(edition_items.insert(), [
                {'edition_id': edition_id, 'comparison_id': i['comparison_id'], 'rank': i['rank'],
                 'score': i['score'], 'score_parts': i['score_parts'], 'pinned': i['pinned'], 'filler': False,
                 'snapshot': i['snapshot']} for i in items])
    op.drop_table('issue_items')
    for name in COPIED:  # plain columns: no table rebuild (SQLite's would cascade through the foreign keys)
        op.execute(f'ALTER TABLE issues DROP COLUMN {name}')


def downgrade() -> None:
    conn = op.get_bind()
    op.add_column('issues', sa.Column('subject', sa.String(length=300), nullable=True))
    op.add_column('issues', sa.Column('preheader', sa.String(length=300), nullable=True))
    op.add_column('issues', sa.Column('html', sa.Text(), nullable=True))
    op.add_column('issues', sa.Column('text', sa.Text(), nullable=True))
    op.add_column('issues', sa.Column('placeholder_nonce', sa.String(length=32), nullable=True))
    op.add_column('issues', sa.Column('links', sa.JSON(), nullable=True))
    op.create_table(
        'issue_items',
        sa.Column('id', BigId, nullable=False),
        sa.Column('issue_id', BigId, nullable=False),
        sa.Column('comparison_id', BigId, nullable=False),
        sa.Column('rank', sa.Integer(), nullable=False),
        sa.Column('score', sa.Float(), nullable=False),
        sa.Column('score_parts', sa.JSON(), nullable=False),
        sa.Column('pinned', sa.Boolean(), nullable=False),
        sa.Column('snapshot', sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(['comparison_id'], ['comparisons.id']),
        sa.ForeignKeyConstraint(['issue_id'], ['issues.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('issue_id', 'comparison_id'),
        sa.UniqueConstraint('issue_id', 'rank'),
    )
    for main in conn.execute(sa.select(editions).where(editions.c.key == MAIN)).mappings().all():
        conn.execute(issues.update().where(issues.c.id == main['issue_id'])
                     .values(**{name: main[name] for name in COPIED}))
        items = conn.execute(sa.select(edition_items).where(edition_items.c.edition_id == main['id'])
                             .order_by(edition_items.c.rank)).mappings().all()
        if items:
            conn.execute(issue_items.insert(), [
                {'issue_id': main['issue_id'], 'comparison_id': i['comparison_id'], 'rank': i['rank'],
                 'score': i['score'], 'score_parts': i['score_parts'], 'pinned': i['pinned'],
                 'snapshot': i['snapshot']} for i in items])
        if _made_by_upgrade(conn, main['issue_id']):
            conn.execute(editions.delete().where(editions.c.id == main['id']))  # its items cascade


def _made_by_upgrade(conn: sa.Connection, issue_id: int) -> bool:
    """An issue frozen before editions: its one edition, named by none of its deliveries."""
    count = conn.scalar(sa.select(sa.func.count()).select_from(editions).where(editions.c.issue_id == issue_id))
    named = conn.scalar(sa.select(deliveries.c.id).where(deliveries.c.issue_id == issue_id,
                                                          deliveries.c.edition_id.is_not(None)).limit(1))
    return count == 1 and named is None
