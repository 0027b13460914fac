"""The database schema. One module so the whole data model reads in one place.

Statuses and kinds are `StrEnum`s stored as their values in VARCHAR columns (portable between
SQLite and PostgreSQL, no native enum types to migrate); raw SQL binds the same members. Code names
the members (`SubscriberStatus.ACTIVE`), never the bare values.

Long because the whole data model reads in one place (one table per class).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    Unicode,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from digest.weeks import utcnow


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON, list[Any]: JSON}


def values_of(enum: type[StrEnum], length: int = 16) -> Enum:
    """A VARCHAR column holding an enum's values (not its member names); reads give back members."""
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=length,
        validate_strings=True,
        values_callable=lambda members: [m.value for m in members],
    )


# Integer primary keys that are BIGINT on PostgreSQL but the rowid alias on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Comparison(Base):
    """One "A vs B" page of the site, upserted by slug."""

    __tablename__ = "comparisons"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    url: Mapped[str] = mapped_column(String(2000))
    published_at: Mapped[datetime] = mapped_column(index=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    community_votes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The normalized comparison (tools, quotes, intro) as digest.ingest.schema.ComparisonData.
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class IssueStatus(StrEnum):
    DRAFT = "draft"  # selection may still change (pins, excludes)
    SKIPPED = "skipped"  # too few picks at the last attempt; may be retried
    SENDING = "sending"  # rendered and enqueued: picks and payload are frozen
    SENT = "sent"  # every batch finished (some deliveries may have failed)


# The key of an issue's every-topic weekly edition (digest.cycle.editions.edition_key(WEEKLY, ())).
MAIN_EDITION_KEY = "weekly/all"


class Issue(Base):
    """One per ISO week: the unique week key is invariant 1."""

    __tablename__ = "issues"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    week: Mapped[str] = mapped_column(String(8), unique=True)
    number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[IssueStatus] = mapped_column(values_of(IssueStatus), default=IssueStatus.DRAFT)
    pins: Mapped[list[Any]] = mapped_column(JSON, default=list)
    excludes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    editor_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    scheduled_for: Mapped[datetime | None] = mapped_column(nullable=True)
    cutoff_at: Mapped[datetime | None] = mapped_column(nullable=True)
    skip_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # An outage paused the send (invariant 6): since when, and why. Cleared by the next accepted batch.
    paused_at: Mapped[datetime | None] = mapped_column(nullable=True)
    pause_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Readers left out when it was frozen: {"paused": n, "monthly_waiting": n, "first_of_month": bool}.
    reader_skips: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)

    # The issue's content is its editions (digest.cycle.freeze): this one is every topic, weekly,
    # the one the archive shows, and the one deliveries and click tokens made before editions read.
    main_edition: Mapped[Edition | None] = relationship(
        primaryjoin=f"and_(Issue.id == foreign(Edition.issue_id), Edition.key == '{MAIN_EDITION_KEY}')",
        viewonly=True,
        uselist=False,
    )


class Frequency(StrEnum):
    WEEKLY = "weekly"  # every issue
    MONTHLY = "monthly"  # the best of the month, on the first scheduled slot of each month


class Edition(Base):
    """One version of a week's issue for one choice in use (topic set x frequency), compiled once.

    `key` is stable across weeks ("weekly/all", "weekly/open-models+developer-tools", "monthly/all"):
    reports group by it. The issue's content is its editions only; "weekly/all" is its main one.
    """

    __tablename__ = "editions"
    __table_args__ = (UniqueConstraint("issue_id", "key"), UniqueConstraint("id", "issue_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(1000))
    label: Mapped[str] = mapped_column(String(1000))
    frequency: Mapped[Frequency] = mapped_column(values_of(Frequency))
    topics: Mapped[list[Any]] = mapped_column(JSON, default=list)  # topic keys; [] = every topic
    recipients: Mapped[int] = mapped_column(Integer, default=0)
    filled: Mapped[int] = mapped_column(Integer, default=0)  # picks from outside its topics (too few inside)
    subject: Mapped[str | None] = mapped_column(String(300), nullable=True)
    preheader: Mapped[str | None] = mapped_column(String(300), nullable=True)
    html: Mapped[str | None] = mapped_column(Text, nullable=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    placeholder_nonce: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Tracked links by position (digest.render.links): a click token names its edition (tokens made
    # before editions name none: the main edition's), and the redirect looks the position up here.
    links: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    items: Mapped[list[EditionItem]] = relationship(
        back_populates="edition", order_by="EditionItem.rank", cascade="all, delete-orphan"
    )


class EditionItem(Base):
    __tablename__ = "edition_items"
    __table_args__ = (UniqueConstraint("edition_id", "comparison_id"), UniqueConstraint("edition_id", "rank"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id", ondelete="CASCADE"))
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id"))
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    score_parts: Mapped[dict[str, Any]] = mapped_column(JSON)
    pinned: Mapped[bool] = mapped_column(default=False)
    filler: Mapped[bool] = mapped_column(default=False)  # the overall best, filling a topic set with too few
    snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    edition: Mapped[Edition] = relationship(back_populates="items")
    comparison: Mapped[Comparison] = relationship()


class SubscriberStatus(StrEnum):
    PENDING = "pending"  # signed up, not yet confirmed (double opt-in)
    ACTIVE = "active"  # confirmed: gets every issue
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"  # hard bounce or repeated soft bounces; also suppressed
    COMPLAINED = "complained"  # spam complaint; also suppressed


class Subscriber(Base):
    __tablename__ = "subscribers"
    # Enqueueing reads readers by their choice (digest.delivery.enqueue): one index range per choice.
    __table_args__ = (Index("ix_subscribers_choice", "status", "frequency", "topics"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # normalized (domain lower-cased)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[SubscriberStatus] = mapped_column(
        values_of(SubscriberStatus), default=SubscriberStatus.PENDING, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    unsubscribe_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    confirmation_sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    consent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    consent_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    consent_user_agent: Mapped[str | None] = mapped_column(String(500), nullable=True)
    consent_source: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Reader preferences (digest.selection.topics, digest.cycle.editions): topic keys joined by "+" in sorted order
    # ("" = every topic), weekly or monthly, and a pause that ends by itself.
    topics: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    frequency: Mapped[Frequency] = mapped_column(
        values_of(Frequency), default=Frequency.WEEKLY, server_default=Frequency.WEEKLY.value
    )
    paused_until: Mapped[datetime | None] = mapped_column(nullable=True)


class ConsentKind(StrEnum):
    SIGNED_UP = "signed_up"  # a sign-up request (form, embed, API): not consent until confirmed
    CONFIRMED = "confirmed"  # the person posted the confirmation form from their mailbox
    RESUBSCRIBED = "resubscribed"  # the person's own unsubscribe-page link
    IMPORTED = "imported"  # `subscribers import --confirmed --consent ...`
    ADDED = "added"  # `subscribers add` (--confirmed: the operator holds consent)


class ConsentRecord(Base):
    """Consent history, appended and never updated: who asked, confirmed or came back, when and how.

    A stranger's sign-up for someone's address adds a row; it never rewrites the owner's record.
    Erasure deletes the rows with the person (they hold an IP and user agent).
    """

    __tablename__ = "consent_records"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"), index=True)
    kind: Mapped[ConsentKind] = mapped_column(values_of(ConsentKind))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(500), nullable=True)
    source: Mapped[str | None] = mapped_column(String(200), nullable=True)


class Suppression(Base):
    """Addresses that must never be mailed again, kept as a hash so erasure keeps working."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str] = mapped_column(String(32))  # hard_bounce | soft_bounces | complaint | forgotten | manual
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BatchStatus(StrEnum):
    PENDING = "pending"  # waiting for a sender; attempts == 0: members may still be dropped, else frozen
    CLAIMED = "claimed"  # a worker holds it; attempts > 0 means the payload is frozen
    SENT = "sent"
    FAILED = "failed"  # older installs: gave up after max attempts; `digest send --retry-failed` re-queues
    # Its key expired (or the provider holds a different payload under it) after an attempt that may
    # have been accepted: nobody knows whether it went out, so only an operator who accepts possible
    # duplicates sends it again (`digest send --retry-failed --accept-duplicates`).
    UNCONFIRMED = "unconfirmed"


class Batch(Base):
    """A fixed group of at most 100 deliveries: the unit of claiming and of idempotency."""

    __tablename__ = "batches"
    __table_args__ = (UniqueConstraint("issue_id", "batch_no"), Index("ix_batches_issue_status", "issue_id", "status"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"))
    batch_no: Mapped[int] = mapped_column(Integer)
    # The edition every delivery of this batch gets (null for issues frozen before editions).
    edition_id: Mapped[int | None] = mapped_column(
        ForeignKey("editions.id", ondelete="CASCADE", name="fk_batches_edition"), nullable=True
    )
    status: Mapped[BatchStatus] = mapped_column(values_of(BatchStatus), default=BatchStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Bumped only when a batch may get a new key (digest.delivery.requeue): nothing of it can have
    # gone out, or its key expired, or the operator accepted possible duplicates.
    generation: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Provider idempotency keys live 24 h: an old unfinished attempt must not be resent blindly.
    first_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Fixed at the first attempt of a generation and reused by every later one (invariant 2).
    idem_key: Mapped[str | None] = mapped_column(String(256), nullable=True)


class AttemptOutcome(StrEnum):
    IN_FLIGHT = "in_flight"  # no answer recorded yet (a crash leaves it so): may have been accepted
    ACCEPTED = "accepted"  # the provider answered with per-email results
    REFUSED = "refused"  # definitively not accepted (connection refused, an error status, 429)
    AMBIGUOUS = "ambiguous"  # the answer was lost (timeout, dropped connection): may have been accepted


MAY_HAVE_BEEN_ACCEPTED = (AttemptOutcome.IN_FLIGHT, AttemptOutcome.ACCEPTED, AttemptOutcome.AMBIGUOUS)


class SendAttempt(Base):
    """One provider call for a batch, and whether it could have been accepted (invariant 6)."""

    __tablename__ = "send_attempts"
    __table_args__ = (Index("ix_send_attempts_batch", "batch_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    idem_key: Mapped[str] = mapped_column(String(256))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    outcome: Mapped[AttemptOutcome] = mapped_column(values_of(AttemptOutcome), default=AttemptOutcome.IN_FLIGHT)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)


class Installation(Base):
    """One row: this installation's id, generated by the migration (digest.storage.installation)."""

    __tablename__ = "installation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    install_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Issues from this id on mix `install_id` into their Message-IDs (digest.storage.installation.message_id_salt);
    # earlier ones, enqueued before that rule (0005_h21), keep the ids their first attempts carried.
    message_ids_from_issue: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"  # accepted by the transport
    FAILED = "failed"  # rejected (validation) or batch gave up
    DROPPED = "dropped"  # unsubscribed/suppressed after enqueue, before its batch was claimed


# Deliveries that name an address but no subscriber: what `ix_deliveries_unlinked_email` holds.
UNLINKED_DELIVERY = "subscriber_id IS NULL AND email <> ''"


class Delivery(Base):
    """One per (issue, subscriber): invariant 2. The issue is unique per week and the edition must be
    one of that issue's (composite key), so nobody can get two editions of one week."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("issue_id", "subscriber_id"),
        Index("ix_deliveries_issue_batch", "issue_id", "batch_no"),
        # `forget` finds the rows that kept an address without a subscriber (a merged spelling) here.
        Index(
            "ix_deliveries_unlinked_email",
            "email",
            postgresql_where=text(UNLINKED_DELIVERY),
            sqlite_where=text(UNLINKED_DELIVERY),
        ),
        ForeignKeyConstraint(
            ["edition_id", "issue_id"],
            ["editions.id", "editions.issue_id"],
            name="fk_deliveries_edition_of_issue",
            ondelete="CASCADE",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"), nullable=True, index=True
    )
    email: Mapped[str] = mapped_column(String(320))
    batch_no: Mapped[int] = mapped_column(Integer)
    edition_id: Mapped[int | None] = mapped_column(BigId, nullable=True, index=True)
    status: Mapped[DeliveryStatus] = mapped_column(values_of(DeliveryStatus), default=DeliveryStatus.QUEUED)
    provider_id: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    opened_at: Mapped[datetime | None] = mapped_column(nullable=True)
    clicked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    bounced_at: Mapped[datetime | None] = mapped_column(nullable=True)
    complained_at: Mapped[datetime | None] = mapped_column(nullable=True)


class SubscriberEventKind(StrEnum):
    """`events.kind`: what happened to a subscriber (the list by week, stats and the history read these).

    Stored as VARCHAR like the statuses; not a checked column, so rows of older versions still read."""

    SUBSCRIBED = "subscribed"  # a sign-up (form, embed, API) or `subscribers add`/import
    SIGNUP_AGAIN = "signup_again"  # the same address signed up again while pending (its latest form counts)
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    UNSUBSCRIBE_REASON = "unsubscribe_reason"
    RESUBSCRIBED = "resubscribed"
    PREFERENCES = "preferences"  # topics, frequency or pause changed
    SOFT_BOUNCE = "soft_bounce"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    MERGED = "merged"  # two spellings of one mailbox made one row (migration 0003_h17)


class Event(Base):
    """What happened to a subscriber, for stats and the audit trail (unsubscribe attributed to an issue)."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_issue_kind", "issue_id", "kind"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # a SubscriberEventKind
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"), nullable=True, index=True
    )
    issue_id: Mapped[int | None] = mapped_column(ForeignKey("issues.id", ondelete="SET NULL"), nullable=True)
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id", ondelete="SET NULL"), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Click(Base):
    """One request for a tracked link (`kind` click) or the open pixel (`kind` open), as it came.

    Which ones were scanners' is decided when counting (digest.reports.insights), except a known
    scanner's user agent, named in `agent` (the user agent itself is not kept). `reader` groups one
    message's requests; `forget` cuts `delivery_id` and gives `reader` a random value, so the
    counts stay and nobody can be traced.
    """

    __tablename__ = "clicks"
    __table_args__ = (Index("ix_clicks_issue_link", "issue_id", "link"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"))
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"), nullable=True, index=True
    )
    reader: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(8), default="click")  # click | open
    # The edition whose links `link` is a position in (None: the issue's links, before editions).
    edition_id: Mapped[int | None] = mapped_column(
        ForeignKey("editions.id", ondelete="CASCADE", name="fk_clicks_edition"), nullable=True
    )
    link: Mapped[int] = mapped_column(Integer)  # position in editions.links (-1 for opens)
    method: Mapped[str] = mapped_column(String(8))  # GET | HEAD
    agent: Mapped[str | None] = mapped_column(String(40), nullable=True)  # a known scanner's name
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # Requests this row stands for: repeats of one link of one message within a short window add here.
    hits: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class WebhookReceipt(Base):
    """Each provider webhook is handled once, keyed by its svix-id."""

    __tablename__ = "webhook_receipts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(100), unique=True)
    event_type: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class MailStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"  # no longer wanted when its turn came (confirmed meanwhile, left the list)


class MailKind(StrEnum):
    CONFIRM = "confirm"  # the double opt-in link
    WELCOME = "welcome"  # after confirming


class OutgoingMail(Base):
    """Transactional mail (confirm, welcome) queued in the request and drained by the server."""

    __tablename__ = "outgoing_mail"
    __table_args__ = (Index("ix_outgoing_mail_status", "status", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[MailKind] = mapped_column(values_of(MailKind, 32))
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=True, index=True
    )
    status: Mapped[MailStatus] = mapped_column(values_of(MailStatus), default=MailStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # A drainer's lease (or the retry back-off): the row is not taken again before this time.
    claimed_until: Mapped[datetime | None] = mapped_column(nullable=True)
    # The transport's id of the sent mail: a provider event about it finds this row (and its person).
    provider_id: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)


class RateLimitHit(Base):
    """Sliding-window counters shared by every web worker (sign-up abuse limits).

    One row per key and time bucket (a sixth of the limit's window) counting its hits, so a
    check reads at most six rows however busy the key is.
    """

    __tablename__ = "rate_limit_hits"
    __table_args__ = (Index("ix_rate_limit_key_at", "key", "at", unique=True),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)  # start of the bucket
    hits: Mapped[int] = mapped_column(Integer, default=1)


class Lock(Base):
    """Named leases (scheduler slot, send runner) for processes that must not run twice."""

    __tablename__ = "locks"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column()


class SchedulerJob(Base):
    """APScheduler's SQLAlchemyJobStore table (same columns), created by the migration so two
    `digest serve` processes starting at once never race to create it."""

    __tablename__ = "apscheduler_jobs"

    id: Mapped[str] = mapped_column(Unicode(191), primary_key=True)
    next_run_time: Mapped[float | None] = mapped_column(Float(25), index=True, nullable=True)
    job_state: Mapped[bytes] = mapped_column(LargeBinary)


class SendRate(Base):
    """The provider's request budget shared by every send worker: the next free request slot.

    Workers reserve slots with one UPDATE on this row (a row lock), so the configured
    rate holds across processes and machines (digest.delivery.ratelimit).
    """

    __tablename__ = "send_rate"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    next_slot: Mapped[float] = mapped_column(Float)  # seconds since the epoch (database clock on PostgreSQL)
