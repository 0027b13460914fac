"""POST /webhooks/resend: Svix signatures, once-only handling, bounces, complaints, delivery stats."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from digest.delivery.mail_queue import drain
from digest.storage.models import Delivery, Event, OutgoingMail, SubscriberStatus, Suppression, WebhookReceipt
from subscribers.api import add_subscriber, is_suppressed
from tests.support_subscribers import (
    WEBHOOK_SECRET,
    client,
    counts,
    issue_copy,
    runtime_with,
    seed_comparisons,
    send_issue,
    signed_webhook,
    subscriber,
)

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
NEXT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def sent(tmp_path, db_url):
    """Three readers got 2026-W47; their deliveries carry Resend-style ids re_<name>."""
    rt = runtime_with(tmp_path / "p", db_url)
    seed_comparisons(rt, NOW.replace(day=17))
    with rt.sessions.begin() as s:
        for name in ("hard", "soft", "angry"):
            add_subscriber(s, f"{name}@example.com", confirmed=True)
    issue_id = send_issue(rt, "2026-W47", NOW)
    with rt.sessions.begin() as s:
        for d in s.scalars(select(Delivery)):
            d.provider_id = "re_" + d.email.split("@")[0]
    yield rt, issue_id
    rt.close()


def event(kind: str, email_id: str, to: str, **data) -> dict:
    return {
        "type": kind,
        "created_at": "2026-11-18T12:05:00.000Z",
        "data": {"email_id": email_id, "to": [to], "from": "verdicts@example.com", "subject": "x", **data},
    }


def post(c, payload: dict, msg_id: str | None = None, **kw):
    body, headers = signed_webhook(payload, msg_id or f"msg_{uuid.uuid4().hex}", **kw)
    return c.post("/webhooks/resend", content=body, headers=headers)


def delivery(rt, provider_id: str) -> Delivery:
    with rt.sessions() as s:
        return s.scalar(select(Delivery).where(Delivery.provider_id == provider_id))


def test_permanent_bounce_suppresses_and_the_next_issue_skips_the_address(sent) -> None:
    rt, issue_id = sent
    r = post(
        client(rt),
        event(
            "email.bounced",
            "re_hard",
            "hard@example.com",
            bounce={"type": "Permanent", "subType": "General", "message": "no such user"},
        ),
    )
    assert r.status_code == 200 and r.json()["result"] == "suppressed (hard_bounce)"
    assert subscriber(rt, "hard@example.com").status == SubscriberStatus.BOUNCED
    assert delivery(rt, "re_hard").bounced_at is not None
    hard_delivery = delivery(rt, "re_hard").id
    with rt.sessions() as s:
        assert is_suppressed(s, "hard@example.com")
        ev = s.scalar(select(Event).where(Event.kind == "bounced"))
        assert ev.issue_id == issue_id and ev.delivery_id == hard_delivery
    seed_comparisons(rt, NEXT.replace(day=24), tag="II")
    send_issue(rt, "2026-W48", NEXT)
    assert issue_copy(rt, "2026-W48", "hard@example.com") is None
    assert issue_copy(rt, "2026-W48", "soft@example.com") is not None


def test_transient_bounces_suppress_on_the_third_within_30_days(sent) -> None:
    rt, _ = sent
    c = client(rt)
    soft = event("email.bounced", "re_soft", "soft@example.com", bounce={"type": "Transient", "subType": "MailboxFull"})
    assert post(c, soft).json()["result"] == "soft bounce 1 of 3"
    with rt.sessions.begin() as s:  # the first one is old: it no longer counts
        s.execute(
            update(Event).where(Event.kind == "soft_bounce").values(created_at=datetime.now(UTC) - timedelta(days=31))
        )
    soft["created_at"] = datetime.now(UTC).isoformat()
    assert post(c, soft).json()["result"] == "soft bounce 1 of 3"
    assert post(c, soft).json()["result"] == "soft bounce 2 of 3"
    assert subscriber(rt, "soft@example.com").status == SubscriberStatus.ACTIVE
    assert post(c, soft).json()["result"] == "suppressed (soft_bounces)"
    assert subscriber(rt, "soft@example.com").status == SubscriberStatus.BOUNCED
    with rt.sessions() as s:
        assert s.scalar(select(Suppression.reason)) == "soft_bounces"


def test_complaint_unsubscribes_suppresses_and_is_attributed_to_the_issue(sent) -> None:
    rt, issue_id = sent
    r = post(client(rt), event("email.complained", "re_angry", "angry@example.com"))
    assert r.status_code == 200
    sub = subscriber(rt, "angry@example.com")
    assert sub.status == SubscriberStatus.COMPLAINED and sub.unsubscribed_at is not None
    assert delivery(rt, "re_angry").complained_at is not None
    with rt.sessions() as s:
        assert is_suppressed(s, "angry@example.com")
        assert s.scalar(select(Event.issue_id).where(Event.kind == "complained")) == issue_id


@pytest.mark.parametrize(
    "kind,column", [("email.delivered", "delivered_at"), ("email.opened", "opened_at"), ("email.clicked", "clicked_at")]
)
def test_delivery_events_are_recorded_on_the_delivery(sent, kind, column) -> None:
    rt, _ = sent
    r = post(client(rt), event(kind, "re_soft", "soft@example.com"))
    assert r.status_code == 200 and r.json()["result"] == f"recorded {kind}"
    stamp = getattr(delivery(rt, "re_soft"), column)
    assert stamp is not None and stamp.replace(tzinfo=UTC).minute == 5


def test_replayed_webhook_is_handled_once(sent) -> None:
    rt, _ = sent
    c = client(rt)
    payload = event("email.bounced", "re_soft", "soft@example.com", bounce={"type": "Transient"})
    assert post(c, payload, "msg_same").json()["result"] == "soft bounce 1 of 3"
    before = counts(rt)
    for _ in range(3):
        r = post(c, payload, "msg_same")
        assert r.status_code == 200 and r.json()["result"] == "duplicate"
    assert counts(rt) == before and subscriber(rt, "soft@example.com").status == SubscriberStatus.ACTIVE


def test_bad_stale_and_missing_signatures_get_401_and_record_nothing(sent) -> None:
    rt, _ = sent
    c = client(rt)
    payload = event("email.complained", "re_angry", "angry@example.com")
    before = counts(rt)
    wrong_secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
    assert post(c, payload, secret=wrong_secret).status_code == 401
    assert post(c, payload, when=datetime.now(UTC) - timedelta(minutes=10)).status_code == 401
    assert post(c, payload, when=datetime.now(UTC) + timedelta(minutes=10)).status_code == 401
    body, headers = signed_webhook(payload, "msg_tamper")
    assert c.post("/webhooks/resend", content=body.replace(b"angry", b"hard_"), headers=headers).status_code == 401
    for drop in ("svix-id", "svix-timestamp", "svix-signature"):
        h = {k: v for k, v in headers.items() if k != drop}
        assert c.post("/webhooks/resend", content=body, headers=h).status_code == 401
    for garbage in ("v1,not-base64!!", "nonsense", "v1", ""):
        assert (
            c.post("/webhooks/resend", content=body, headers={**headers, "svix-signature": garbage}).status_code == 401
        )
    assert c.post("/webhooks/resend", content=b"\xff\xfe", headers=headers).status_code == 401
    assert counts(rt) == before and subscriber(rt, "angry@example.com").status == SubscriberStatus.ACTIVE


def test_signed_but_malformed_events_get_400_and_record_nothing(sent) -> None:
    rt, _ = sent
    c = client(rt)
    from svix.webhooks import Webhook

    before = counts(rt)
    for raw in ("not json", "[1,2]", '{"data": {}}', '{"type": 5, "data": {}}', '{"type": "email.bounced", "data": 3}'):
        now = datetime.now(UTC)
        headers = {
            "svix-id": f"msg_{uuid.uuid4().hex}",
            "svix-timestamp": str(int(now.timestamp())),
            "svix-signature": Webhook(WEBHOOK_SECRET).sign("ignored", now, raw),
        }
        headers["svix-signature"] = Webhook(WEBHOOK_SECRET).sign(headers["svix-id"], now, raw)
        r = c.post("/webhooks/resend", content=raw.encode(), headers=headers)
        assert r.status_code == 400, raw
    assert counts(rt) == before


def test_unknown_events_and_recipients_are_acknowledged_without_effect(sent) -> None:
    rt, _ = sent
    c = client(rt)
    r = post(c, {"type": "email.sent", "data": {"email_id": "re_soft"}})
    assert r.status_code == 200 and r.json()["result"] == "ignored: email.sent"
    r = post(c, event("email.bounced", "re_nobody", "stranger@example.com", bounce={"type": "Transient"}))
    assert r.status_code == 200 and "ignored" in r.json()["result"]
    with rt.sessions() as s:
        assert s.scalar(select(Event.id).where(Event.kind.in_(["bounced", "soft_bounce"]))) is None
        assert len(s.scalars(select(WebhookReceipt.id)).all()) == 2


def test_bounce_of_a_confirmation_mail_suppresses_the_pending_address(sent) -> None:
    """The confirmation's row keeps the id the provider gave it; the event names that id."""
    rt, _ = sent
    c = client(rt)
    c.post("/subscribe", json={"email": "typo@exmaple.com"})
    assert subscriber(rt, "typo@exmaple.com").status == SubscriberStatus.PENDING
    drain(rt)
    with rt.sessions.begin() as s:
        mail = s.scalar(select(OutgoingMail).where(OutgoingMail.subscriber_id == subscriber(rt, "typo@exmaple.com").id))
        assert mail is not None and mail.provider_id  # the transport's id, kept when it was sent
        mail.provider_id = "re_confirm_typo"
    r = post(c, event("email.bounced", "re_confirm_typo", "Typo <typo@exmaple.com>", bounce={"type": "Permanent"}))
    assert r.json()["result"] == "suppressed (hard_bounce)"
    assert subscriber(rt, "typo@exmaple.com").status == SubscriberStatus.BOUNCED


def test_an_event_for_a_message_we_never_sent_names_nobody(sent) -> None:
    """A provider event names a message; an id we have no row for suppresses no one, whatever address it gives."""
    rt, _ = sent
    r = post(client(rt), event("email.bounced", "re_unknown_txn", "hard@example.com", bounce={"type": "Permanent"}))
    assert r.json()["result"].startswith("ignored: not a message we sent")
    assert subscriber(rt, "hard@example.com").status == SubscriberStatus.ACTIVE


def test_without_a_configured_secret_webhooks_are_refused(tmp_path, db_url) -> None:
    from tests.conftest import make_runtime, write_project

    rt = make_runtime(write_project(tmp_path / "p"), db_url)
    body, headers = signed_webhook({"type": "email.complained", "data": {}}, "msg_1")
    r = client(rt).post("/webhooks/resend", content=body, headers=headers)
    assert r.status_code == 503 and "RESEND_WEBHOOK_SECRET" in r.json()["error"]
    assert counts(rt)["webhook_receipts"] == 0
    rt.close()


@pytest.mark.parametrize("created_at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_signed_event_with_an_out_of_range_created_at_is_a_400_that_changes_nothing(sent, created_at) -> None:
    rt, _ = sent
    payload = {
        **event("email.bounced", "re_hard", "hard@example.com", bounce={"type": "Permanent"}),
        "created_at": created_at,
    }
    r = post(client(rt), payload)
    assert r.status_code == 400 and "created_at" in r.json()["error"]
    assert subscriber(rt, "hard@example.com").status == SubscriberStatus.ACTIVE
    with rt.sessions() as s:
        assert s.scalar(select(WebhookReceipt.id)) is None
