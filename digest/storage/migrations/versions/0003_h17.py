"""IDN domains of addresses stored before normalisation: rewritten to punycode, as sign-ups store them

Revision ID: 0003_h17
Revises: 0002_h4

Rows written before the normaliser stored an international domain in its ASCII (punycode) form
still hold e.g. `anna@bücher.example`; a sign-up for the same mailbox now looks for
`anna@xn--bcher-kva.example` and would add a second row. Each such row is rewritten with the
sign-up's normaliser as it was when this migration was written (copied below: a migration must not
change meaning when live code changes), and with it:

- the address on its past deliveries (erasure finds them by address);
- its suppression entry, added under the new spelling's hash as well (a sign-up checks that hash).

When both spellings already have a row (a collision), one row is kept: the confirmed one
(earliest confirmation), else the older one. The other row's consent records, events and
deliveries move to it (a delivery of an issue the kept row also got stays, unlinked, under the
new address), its queued transactional mail is dropped, and it is deleted. The kept row's state is
the person's strongest or latest word: a bounce or complaint on either row stays; otherwise the
later decision (a confirmation or an unsubscribe) wins; a pending row never overrides a decision.
A `merged` event on the kept row records the other row's id, spelling and state.

Rows whose address the current normaliser refuses are left as they are. Downgrade changes no
data: the punycode spelling is valid for the old code too.
"""
import hashlib
from datetime import datetime, timezone
from typing import Any, Sequence, Union

import sqlalchemy as sa
from alembic import op
from email_validator import EmailNotValidError, validate_email

revision: str = '0003_h17'
down_revision: Union[str, Sequence[str], None] = '0002_h4'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

STOPPED_FOR_GOOD = ('complained', 'bounced')  # suppressed: no later click undoes these

subscribers = sa.table(
    'subscribers', sa.column('id', sa.Integer), sa.column('email', sa.String), sa.column('name', sa.String),
    sa.column('status', sa.String), sa.column('created_at', sa.DateTime(timezone=True)),
    sa.column('confirmed_at', sa.DateTime(timezone=True)), sa.column('unsubscribed_at', sa.DateTime(timezone=True)),
    sa.column('unsubscribe_reason', sa.Text), sa.column('consent_at', sa.DateTime(timezone=True)),
    sa.column('consent_ip', sa.String), sa.column('consent_user_agent', sa.String),
    sa.column('consent_source', sa.String),
)
deliveries = sa.table('deliveries', sa.column('id', sa.Integer), sa.column('issue_id', sa.Integer),
                      sa.column('subscriber_id', sa.Integer), sa.column('email', sa.String))
suppressions = sa.table('suppressions', sa.column('email_hash', sa.String), sa.column('reason', sa.String),
                        sa.column('created_at', sa.DateTime(timezone=True)))
events = sa.table('events', sa.column('kind', sa.String), sa.column('subscriber_id', sa.Integer),
                  sa.column('created_at', sa.DateTime(timezone=True)), sa.column('detail', sa.JSON))
consent_records = sa.table('consent_records', sa.column('subscriber_id', sa.Integer))
outgoing_mail = sa.table('outgoing_mail', sa.column('subscriber_id', sa.Integer))


class AddressError(ValueError):
    pass


def normalize_email(raw: str) -> str:
    """subscribers.addresses.normalize_email of 0003_h17's day: punycode domain, lower case."""
    value = (raw or '').strip()
    if not value or any(c in value for c in '\r\n\0') or len(value) > 254:
        raise AddressError(value)
    try:
        info = validate_email(value, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError:
        raise AddressError(value) from None
    address = f'{info.local_part}@{info.ascii_domain}' if info.ascii_domain else info.normalized
    return address.lower()


def email_hash(email: str) -> str:
    """digest.links.email_hash of 0003_h17's day: the suppression list's key."""
    return hashlib.sha256(email.strip().lower().encode('utf-8')).hexdigest()


def upgrade() -> None:
    conn = op.get_bind()
    candidates = [(sid, email) for sid, email in conn.execute(sa.select(subscribers.c.id, subscribers.c.email))
                  if not email.rpartition('@')[2].isascii()]
    for sid, old in candidates:
        try:
            new = normalize_email(old)
        except AddressError:
            continue
        if new == old:
            continue
        _copy_suppression(conn, email_hash(old), email_hash(new))
        other = conn.execute(sa.select(subscribers).where(subscribers.c.email == new)).mappings().first()
        if other is not None:
            row = conn.execute(sa.select(subscribers).where(subscribers.c.id == sid)).mappings().one()
            _merge(conn, dict(row), dict(other), new)
        else:
            conn.execute(subscribers.update().where(subscribers.c.id == sid).values(email=new))
        conn.execute(deliveries.update().where(deliveries.c.email == old).values(email=new))


def _copy_suppression(conn: Any, old_hash: str, new_hash: str) -> None:
    found = conn.execute(sa.select(suppressions.c.reason, suppressions.c.created_at)
                         .where(suppressions.c.email_hash == old_hash)).first()
    if found is None:
        return
    if conn.execute(sa.select(suppressions.c.email_hash).where(suppressions.c.email_hash == new_hash)).first():
        return
    conn.execute(suppressions.insert().values(email_hash=new_hash, reason=found.reason, created_at=found.created_at))


def _aware(value: Any) -> Any:
    """SQLite hands back naive datetimes (stored as UTC) and PostgreSQL aware ones: compare them as one."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _decided_at(row: dict[str, Any]) -> Any:
    """When the person last said yes or no on this row (None: still pending, no decision)."""
    if row['status'] == 'pending':
        return None
    if row['status'] == 'active':
        return _aware(row['confirmed_at'] or row['consent_at'] or row['created_at'])
    return _aware(row['unsubscribed_at'] or row['confirmed_at'] or row['created_at'])


def _merge(conn: Any, a: dict[str, Any], b: dict[str, Any], new: str) -> None:
    """Two rows for one mailbox: keep the confirmed (else the older) one and move the other's history to it."""
    def keep_key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r['confirmed_at'] is None, _aware(r['confirmed_at'] or r['created_at']), _aware(r['created_at']),
                r['id'])

    keep, drop = sorted((a, b), key=keep_key)
    state = {k: keep[k] for k in ('status', 'confirmed_at', 'unsubscribed_at', 'unsubscribe_reason')}
    stopped = [r for r in (keep, drop) if r['status'] in STOPPED_FOR_GOOD]
    if stopped:
        worst = 'complained' if any(r['status'] == 'complained' for r in stopped) else 'bounced'
        state['status'] = worst
        state['unsubscribed_at'] = keep['unsubscribed_at'] or drop['unsubscribed_at']
    else:
        decided = [r for r in (keep, drop) if _decided_at(r) is not None]
        if decided:
            latest = max(decided, key=lambda r: (_decided_at(r), r is keep))
            state.update({k: latest[k] for k in ('status', 'unsubscribed_at', 'unsubscribe_reason')})
            if latest['status'] == 'active':
                confirmed = [_aware(r['confirmed_at']) for r in (keep, drop) if r['confirmed_at'] is not None]
                state['confirmed_at'] = min(confirmed) if confirmed else keep['confirmed_at']
                state['unsubscribed_at'] = state['unsubscribe_reason'] = None
    for field in ('name', 'consent_at', 'consent_ip', 'consent_user_agent', 'consent_source'):
        if keep[field] is None and drop[field] is not None:
            state[field] = drop[field]

    conn.execute(consent_records.update().where(consent_records.c.subscriber_id == drop['id'])
                 .values(subscriber_id=keep['id']))
    conn.execute(events.update().where(events.c.subscriber_id == drop['id']).values(subscriber_id=keep['id']))
    kept_issues = sa.select(deliveries.c.issue_id).where(deliveries.c.subscriber_id == keep['id']).scalar_subquery()
    conn.execute(deliveries.update().where(deliveries.c.subscriber_id == drop['id'],
                                           deliveries.c.issue_id.not_in(kept_issues))
                 .values(subscriber_id=keep['id']))
    conn.execute(deliveries.update().where(deliveries.c.subscriber_id == drop['id'])
                 .values(subscriber_id=None, email=new))
    conn.execute(outgoing_mail.delete().where(outgoing_mail.c.subscriber_id == drop['id']))
    conn.execute(subscribers.delete().where(subscribers.c.id == drop['id']))
    conn.execute(subscribers.update().where(subscribers.c.id == keep['id']).values(email=new, **state))
    conn.execute(events.insert().values(
        kind='merged', subscriber_id=keep['id'], created_at=datetime.now(timezone.utc),
        detail={'merged_subscriber_id': drop['id'], 'merged_email': drop['email'], 'merged_status': drop['status'],
                'why': 'same mailbox once the domain is stored in punycode (migration 0003_h17)'}))


def downgrade() -> None:
    pass  # data only: the punycode spelling is valid for the code before this revision too
