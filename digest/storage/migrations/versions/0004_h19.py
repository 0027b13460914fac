"""a `confirmed` event for every reader on the list before the operator's add wrote one

Revision ID: 0004_h19
Revises: 0003_h18

The list's size over time (`digest stats`, digest.reports.insights.subscribers_by_week) is
rebuilt from events: confirmations and resubscribes in, unsubscribes, bounces and complaints
out. `digest subscribers add --confirmed` (and import) wrote no `confirmed` event before click
tracking, so older installs undercount: their operator-added readers only ever leave.

Each subscriber who was once confirmed and has no `confirmed` event gets one, shaped like the
add's (`{"source": <their consent source>}`, plus `"backfilled": "0004_h19"` to tell it apart).
Once confirmed: active, or a confirmation date, or (unsubscribed, bounced or complained) an
issue sent to them. It is dated at their confirmation (their sign-up when there is none), but
never after the first time they left, so every week's size comes out right, not just today's.
Pending people and those who left before ever confirming get none. Downgrade changes no data
(the events are valid for the code before); running the upgrade again adds nothing twice.
"""
from datetime import datetime, timezone
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0004_h19'
down_revision: Union[str, Sequence[str], None] = '0003_h18'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

MARK = '0004_h19'
LEFT = ('unsubscribed', 'bounced', 'complained')

subscribers = sa.table(
    'subscribers', sa.column('id', sa.Integer), sa.column('status', sa.String),
    sa.column('created_at', sa.DateTime(timezone=True)), sa.column('confirmed_at', sa.DateTime(timezone=True)),
    sa.column('consent_source', sa.String),
)
events = sa.table('events', sa.column('id', sa.Integer), sa.column('kind', sa.String),
                  sa.column('subscriber_id', sa.Integer), sa.column('created_at', sa.DateTime(timezone=True)),
                  sa.column('detail', sa.JSON))
deliveries = sa.table('deliveries', sa.column('subscriber_id', sa.Integer), sa.column('status', sa.String))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def upgrade() -> None:
    conn = op.get_bind()
    has_event = sa.exists().where(events.c.subscriber_id == subscribers.c.id, events.c.kind == 'confirmed')
    got_issue = sa.exists().where(deliveries.c.subscriber_id == subscribers.c.id, deliveries.c.status == 'sent')
    once_confirmed = sa.or_(subscribers.c.status == 'active',
                            sa.and_(subscribers.c.status.in_(LEFT),
                                    sa.or_(subscribers.c.confirmed_at.is_not(None), got_issue)))
    first_left = (sa.select(events.c.subscriber_id, sa.func.min(events.c.created_at).label('at'))
                  .where(events.c.kind.in_(LEFT), events.c.subscriber_id.is_not(None))
                  .group_by(events.c.subscriber_id).subquery())
    rows = conn.execute(
        sa.select(subscribers.c.id, subscribers.c.created_at, subscribers.c.confirmed_at,
                  subscribers.c.consent_source, first_left.c.at)
        .outerjoin(first_left, first_left.c.subscriber_id == subscribers.c.id)
        .where(once_confirmed, ~has_event).order_by(subscribers.c.id)).all()
    backfill = []
    for sid, created, confirmed, source, left_at in rows:
        at = _aware(confirmed or created)
        if left_at is not None:
            at = min(at, _aware(left_at))
        backfill.append({'kind': 'confirmed', 'subscriber_id': sid, 'created_at': at,
                         'detail': {'source': source, 'backfilled': MARK}})
    for start in range(0, len(backfill), 1000):
        conn.execute(events.insert(), backfill[start:start + 1000])


def downgrade() -> None:
    pass  # data only: a confirmed event is valid for the code before this revision too
