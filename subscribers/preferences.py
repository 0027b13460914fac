"""A reader's own choices: topics, frequency and a pause that ends by itself; each change an event.

Changes come from the reader's signed link (preference centre, the unsubscribe page's "monthly
instead") or the sign-up form's topic boxes. Each one that changes something adds an event
`preferences` (who: the subscriber and the channel; when; what: the new values and which changed),
exported with the subscriber and erased by `forget`.
"""

from __future__ import annotations

import re
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from digest.runtime import Runtime
from digest.selection import topics as topic_catalogue
from digest.selection.topics import Topics
from digest.storage.models import Event, Frequency, Subscriber, SubscriberEventKind, SubscriberStatus
from digest.weeks import as_utc, iso_utc, utcnow
from subscribers import lifecycle

KIND = SubscriberEventKind.PREFERENCES
PAUSE_WEEKS = (2, 4, 8)
MAX_TOPICS = 50
_TOPIC_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
# The event a sign-up for an address still pending writes (subscribers.signup): its topics are the latest choice.
SIGNUP_AGAIN = SubscriberEventKind.SIGNUP_AGAIN
CATALOGUE_TTL = 60.0  # seconds: sign-up pages list the topics without reading every comparison each time
_catalogues: weakref.WeakKeyDictionary[Engine, tuple[float, Topics]] = weakref.WeakKeyDictionary()


class PreferenceError(ValueError):
    """A posted choice that is not one of the offered ones: a clear message, nothing changes."""


@dataclass(frozen=True)
class Change:
    topics: tuple[str, ...] | None = None  # None: unchanged; (): every topic
    frequency: Frequency | None = None
    pause_weeks: int | None = None  # None: unchanged; 0: resume now


def offered(rt: Runtime, session: Session | None = None) -> Topics:
    """The topics readers choose from, read at most once a minute per process (through `session`
    when the caller is inside a transaction: SQLite allows one writer)."""
    now = time.monotonic()
    cached = _catalogues.get(rt.engine)
    if cached is None or now - cached[0] > CATALOGUE_TTL:
        if session is not None:
            cached = (now, topic_catalogue.load(session, rt.settings.topics))
        else:
            with rt.sessions() as own:
                cached = (now, topic_catalogue.load(own, rt.settings.topics))
        if cached[1].topics:  # none yet (no comparisons ingested): cheap to look again next time
            _catalogues[rt.engine] = cached
    return cached[1]


def signup_topics(raw: str) -> tuple[str, ...]:
    """Topic keys posted with a sign-up ("a+b", "a,b" or repeated `topic` fields joined by the reader);
    checked for shape only: which ones are offered is settled when the person confirms."""
    keys = [k.strip() for k in re.split(r"[+,\s]+", raw or "") if k.strip()]
    if len(keys) > MAX_TOPICS:
        raise PreferenceError(f"at most {MAX_TOPICS} topics")
    for k in keys:
        if not _TOPIC_KEY.match(k):
            raise PreferenceError(f"{k[:40]!r} is not a topic")
    return tuple(sorted(set(keys)))


def apply_signup_topics(session: Session, sub: Subscriber, rt: Runtime, now: datetime | None = None) -> None:
    """On confirmation: the topics ticked on the sign-up form the person just confirmed (their latest
    sign-up's), unless they have chosen topics since. A stranger's sign-up never changes an active reader."""
    detail = session.scalar(
        select(Event.detail)
        .where(Event.subscriber_id == sub.id, Event.kind.in_([SubscriberEventKind.SUBSCRIBED, SIGNUP_AGAIN]))
        .order_by(Event.id.desc())
        .limit(1)
    )
    asked = (detail or {}).get("topics") if isinstance(detail, dict) else None
    if not asked or sub.topics:
        return
    chosen = offered(rt, session).normalize(str(k) for k in asked)
    if chosen:
        apply(session, sub, Change(topics=chosen), by="reader: sign-up form", now=now)


def parse_topics(values: list[str], catalogue: Topics) -> tuple[str, ...]:
    """Posted topic keys: each must be offered (none ticked = every topic)."""
    offered = set(catalogue.keys())
    for v in values:
        if v not in offered:
            raise PreferenceError(f"{v[:60]!r} is not one of the topics")
    return catalogue.normalize(values)


def parse_form(pairs: list[tuple[str, str]], catalogue: Topics) -> Change:
    """The preference centre's form: every `topic` box, `frequency`, `pause` (weeks, or "" / 0)."""
    fields = dict(pairs)
    frequency = fields.get("frequency", Frequency.WEEKLY.value)
    if frequency not in {f.value for f in Frequency}:
        raise PreferenceError("frequency must be weekly or monthly")
    raw_pause = fields.get("pause", "") or "0"
    if raw_pause not in {"0", "keep"} | {str(w) for w in PAUSE_WEEKS}:
        raise PreferenceError(f"pause must be one of {', '.join(map(str, PAUSE_WEEKS))} weeks")
    pause = None if raw_pause == "keep" else int(raw_pause)
    # No topics offered (no comparisons yet, or all hidden): the form had no boxes and says nothing of topics.
    topics = parse_topics([v for k, v in pairs if k == "topic"], catalogue) if catalogue.topics else None
    return Change(topics, Frequency(frequency), pause)


def is_paused(sub: Subscriber, now: datetime | None = None) -> bool:
    return sub.paused_until is not None and as_utc(sub.paused_until) > (now or utcnow())


def apply(session: Session, sub: Subscriber, change: Change, *, by: str, now: datetime | None = None) -> list[str]:
    """Apply `change` to `sub` (caller commits); returns what changed and records it as an event."""
    now = now or utcnow()
    changed = []
    if change.topics is not None and topic_catalogue.join(change.topics) != (sub.topics or ""):
        sub.topics = topic_catalogue.join(change.topics)
        changed.append("topics")
    if change.frequency is not None and change.frequency != sub.frequency:
        sub.frequency = change.frequency
        changed.append("frequency")
    if change.pause_weeks is not None:
        until = now + timedelta(weeks=change.pause_weeks) if change.pause_weeks else None
        if until is not None or is_paused(sub, now):
            sub.paused_until = until
            changed.append("pause" if until else "resume")
    if changed:
        session.add(
            Event(
                kind=KIND,
                subscriber_id=sub.id,
                created_at=now,
                detail={
                    "by": by,
                    "changed": changed,
                    "topics": [k for k in (sub.topics or "").split("+") if k],
                    "frequency": Frequency(sub.frequency).value,
                    "paused_until": iso_utc(sub.paused_until),
                },
            )
        )
        session.flush()
    return changed


def monthly_instead(
    session: Session,
    sub: Subscriber,
    *,
    issue_id: int | None,
    ip: str | None,
    user_agent: str | None,
    now: datetime | None = None,
) -> bool:
    """The unsubscribe page's "Too many emails" offer: monthly, and back on the list if they had left.
    True when the reader now gets the monthly edition (also when they already did: a second click)."""
    if sub.status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED):
        return False
    lifecycle.resubscribe(session, sub, issue_id=issue_id, ip=ip, user_agent=user_agent, now=now)
    apply(session, sub, Change(frequency=Frequency.MONTHLY), by="reader: unsubscribe page", now=now)
    return True


def histories(session: Session, subscriber_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Each subscriber's changes, oldest first (for the export)."""
    out: dict[int, list[dict[str, Any]]] = {}
    rows = session.execute(
        select(Event.subscriber_id, Event.created_at, Event.detail)
        .where(Event.subscriber_id.in_(subscriber_ids), Event.kind == KIND)
        .order_by(Event.id)
    ).all()
    for sid, at, detail in rows:
        if sid is not None:
            out.setdefault(sid, []).append({"at": iso_utc(at), **detail})
    return out


def erase(session: Session, subscriber_id: int) -> None:
    """`forget`: a person's choices go with them (other events stay, anonymous)."""
    session.execute(delete(Event).where(Event.subscriber_id == subscriber_id, Event.kind == KIND))
