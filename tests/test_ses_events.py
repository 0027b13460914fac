"""POST /webhooks/ses: SES events through SNS, signature and certificate checked, applied like Resend's."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from digest.providers.ses.sns import SnsTrust
from digest.runtime import Runtime
from digest.storage.models import Delivery, Event, SubscriberStatus
from subscribers.api import add_subscriber, is_suppressed
from tests.support_serve import ServeProcess, free_port, serving
from tests.support_sns import (
    CERT_PATH,
    TOPIC,
    FakeSns,
    bounce,
    complaint,
    fake_sns,
    notification,
    self_signed,
    ses_event,
    signed,
    subscription_confirmation,
)
from tests.support_subscribers import client, counts, runtime_with, seed_comparisons, send_issue, subscriber
from tests.test_webhooks import NOW

SECRET_KEY = "test-secret-key-0123456789"  # what make_runtime gives the in-process runtime


@pytest.fixture
def sns(tmp_path: Path):
    with fake_sns(tmp_path / "sns") as server:
        yield server


@pytest.fixture
def sent(tmp_path: Path, db_url: str, sns: FakeSns):
    """Three readers got 2026-W47 through SES: their deliveries carry SES MessageIds ses-<name>."""
    rt = runtime_with(tmp_path / "p", db_url, {"webhooks": {"sns_topic_arns": [TOPIC]}}, **sns.env)
    seed_comparisons(rt, NOW.replace(day=17))
    with rt.sessions.begin() as s:
        for name in ("hard", "soft", "angry"):
            add_subscriber(s, f"{name}@example.com", confirmed=True)
    send_issue(rt, "2026-W47", NOW)
    with rt.sessions.begin() as s:
        for d in s.scalars(select(Delivery)):
            d.provider_id = "ses-" + d.email.split("@")[0]
    yield rt
    rt.close()


def serve(rt: Runtime, db_url: str, sns: FakeSns, logs: Path) -> ServeProcess:
    env = {"DIGEST_DATABASE_URL": db_url, "DIGEST_SECRET_KEY": SECRET_KEY, **sns.env}
    return ServeProcess(rt.config.path, free_port(), env, logs)


def post(url: str, message: dict[str, str] | str) -> httpx.Response:
    """As SNS posts: JSON in a text/plain body, the message type in a header."""
    body = message if isinstance(message, str) else json.dumps(message)
    kind = "" if isinstance(message, str) else message.get("Type", "")
    return httpx.post(
        url + "/webhooks/ses",
        content=body,
        timeout=30,
        headers={"content-type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": kind},
    )


def delivery(rt: Runtime, provider_id: str) -> Delivery:
    with rt.sessions() as s:
        return s.scalar(select(Delivery).where(Delivery.provider_id == provider_id))


def test_signed_sns_bounce_and_complaint_mark_the_subscribers_through_digest_serve(
    sent: Runtime, db_url: str, sns: FakeSns, tmp_path: Path
) -> None:
    rt = sent
    server = serve(rt, db_url, sns, tmp_path)
    with serving(server):
        server.wait_ready()
        r = post(server.url, signed(subscription_confirmation(sns), sns.signing_key, sns.cert_url, "1"))
        assert r.status_code == 200, r.text
        assert sns.confirmations() == [sns.subscribe_url("tok-123").split(sns.host, 1)[1]]
        r = post(
            server.url, signed(notification(bounce("ses-hard", "hard@example.com")), sns.signing_key, sns.cert_url, "1")
        )
        assert r.status_code == 200 and r.json()["result"] == "suppressed (hard_bounce)", r.text
        r = post(
            server.url,
            signed(notification(complaint("ses-angry", "angry@example.com")), sns.signing_key, sns.cert_url, "2"),
        )
        assert r.status_code == 200 and r.json()["result"] == "suppressed (complaint)", r.text
    assert subscriber(rt, "hard@example.com").status == SubscriberStatus.BOUNCED
    assert subscriber(rt, "angry@example.com").status == SubscriberStatus.COMPLAINED
    assert subscriber(rt, "soft@example.com").status == SubscriberStatus.ACTIVE
    assert delivery(rt, "ses-hard").bounced_at is not None
    assert delivery(rt, "ses-angry").complained_at is not None
    hard_delivery = delivery(rt, "ses-hard").id
    with rt.sessions() as s:
        assert is_suppressed(s, "hard@example.com") and is_suppressed(s, "angry@example.com")
        ev = s.scalar(select(Event).where(Event.kind == "bounced"))
        assert ev.delivery_id == hard_delivery
        assert ev.detail["diagnostic"].startswith("smtp; 550")
    assert sns.requests.count(CERT_PATH) == 1  # the certificate is fetched once and kept


def test_unsigned_forged_or_untrusted_sns_messages_change_nothing_through_digest_serve(
    sent: Runtime, db_url: str, sns: FakeSns, tmp_path: Path
) -> None:
    rt = sent
    key, url = sns.signing_key, sns.cert_url
    other_key, _ = self_signed("sns.amazonaws.com")
    good = notification(bounce("ses-hard", "hard@example.com"))
    tampered = signed(good, key, url)
    tampered["Message"] = json.dumps(bounce("ses-angry", "angry@example.com"))
    refused = {
        "unsigned": (good, 401),
        "signed with another key": (signed(good, other_key, url), 401),
        "tampered after signing": (tampered, 401),
        "unknown signature version": ({**signed(good, key, url), "SignatureVersion": "3"}, 401),
        "signature not base64": ({**signed(good, key, url), "Signature": "not base64!!"}, 401),
        "certificate over http": (signed(good, key, url.replace("https://", "http://")), 401),
        "certificate on another host": (
            signed(good, key, f"https://127.0.0.2:{sns.host.split(':')[1]}{CERT_PATH}"),
            401,
        ),
        "certificate on a look-alike AWS host": (
            signed(good, key, "https://sns.eu-west-1.amazonaws.com.evil.test" + CERT_PATH),
            401,
        ),
        "certificate in an S3 bucket": (signed(good, key, "https://s3.amazonaws.com/bucket/cert.pem"), 401),
        "a topic that is not ours": (
            signed(
                notification(bounce("ses-hard", "hard@example.com"), topic=TOPIC.replace("digest-ses", "other")),
                key,
                url,
            ),
            401,
        ),
        "certificate in an S3 bucket named sns": (signed(good, key, "https://sns.s3.amazonaws.com/cert.pem"), 401),
        "certificate in a regional S3 bucket named sns": (
            signed(good, key, "https://sns.s3-us-west-2.amazonaws.com/cert.pem"),
            401,
        ),
        "handshake to a foreign SubscribeURL": (
            signed(
                {**subscription_confirmation(sns), "SubscribeURL": "https://evil.test/?Action=ConfirmSubscription"},
                key,
                url,
            ),
            400,
        ),
        "not JSON": ("bounce!", 400),
        "not an SNS message": (json.dumps({"Type": "Bounce"}), 400),
        "signed, but not an SES event": (signed({**good, "Message": "hello"}, key, url), 400),
    }
    before = counts(rt)
    server = serve(rt, db_url, sns, tmp_path)
    with serving(server):
        server.wait_ready()
        for what, (message, status) in refused.items():
            r = post(server.url, message)
            assert r.status_code == status, f"{what}: {r.status_code} {r.text}"
            assert r.json()["ok"] is False and r.json()["error"], what
    assert counts(rt) == before
    assert {subscriber(rt, f"{n}@example.com").status for n in ("hard", "soft", "angry")} == {SubscriberStatus.ACTIVE}
    assert delivery(rt, "ses-hard").bounced_at is None
    assert sns.confirmations() == [] and set(sns.requests) <= {CERT_PATH}  # no fetch from anywhere untrusted


def _post_in_process(rt: Runtime, sns: FakeSns, ses: dict, **overrides: str):
    return client(rt).post(
        "/webhooks/ses", content=json.dumps(signed({**notification(ses), **overrides}, sns.signing_key, sns.cert_url))
    )


def test_transient_bounces_are_counted_and_the_third_suppresses(sent: Runtime, sns: FakeSns) -> None:
    results = [
        _post_in_process(sent, sns, bounce("ses-soft", "soft@example.com", "Transient")).json()["result"]
        for _ in range(3)
    ]
    assert results == ["soft bounce 1 of 3", "soft bounce 2 of 3", "suppressed (soft_bounces)"]
    assert subscriber(sent, "soft@example.com").status == SubscriberStatus.BOUNCED


@pytest.mark.parametrize(
    "event_type,column,section",
    [
        ("Delivery", "delivered_at", {"recipients": ["soft@example.com"], "smtpResponse": "250 ok"}),
        ("Open", "opened_at", {"ipAddress": "192.0.2.1", "userAgent": "x"}),
        ("Click", "clicked_at", {"link": "https://verdicts.example.com/compare/x", "ipAddress": "192.0.2.1"}),
    ],
)
def test_delivery_open_and_click_stamp_the_delivery(sent: Runtime, sns: FakeSns, event_type, column, section) -> None:
    r = _post_in_process(sent, sns, ses_event(event_type, "ses-soft", ["soft@example.com"], **section))
    assert r.status_code == 200 and r.json()["result"] == f"recorded {event_type}"
    stamp = getattr(delivery(sent, "ses-soft"), column)
    assert stamp is not None and stamp.minute == 5


def test_a_replayed_notification_is_applied_once(sent: Runtime, sns: FakeSns) -> None:
    message = signed(notification(bounce("ses-soft", "soft@example.com", "Transient")), sns.signing_key, sns.cert_url)
    c = client(sent)
    assert c.post("/webhooks/ses", content=json.dumps(message)).json()["result"] == "soft bounce 1 of 3"
    before = counts(sent)
    assert c.post("/webhooks/ses", content=json.dumps(message)).json()["result"] == "duplicate"
    assert counts(sent) == before


def test_a_notification_names_a_message_and_our_row_names_the_person(sent: Runtime, sns: FakeSns) -> None:
    """SES may list several recipients; only the one our row for the message names is acted on."""
    ses = ses_event(
        "Bounce",
        "ses-hard",
        ["hard@example.com", "angry@example.com"],
        bounceType="Permanent",
        bouncedRecipients=[{"emailAddress": "hard@example.com"}, {"emailAddress": "angry@example.com"}],
    )
    r = _post_in_process(sent, sns, ses)
    assert r.json()["result"] == (
        "suppressed (hard_bounce); ignored: the report names another recipient than the message's own"
    )
    assert subscriber(sent, "hard@example.com").status == SubscriberStatus.BOUNCED
    assert subscriber(sent, "angry@example.com").status == SubscriberStatus.ACTIVE
    # A message we never sent (no delivery, no outgoing mail with that id) names nobody, whoever it lists.
    unknown = ses_event(
        "Bounce",
        "ses-unknown-txn",
        ["soft@example.com"],
        bounceType="Permanent",
        bouncedRecipients=[{"emailAddress": "soft@example.com"}],
    )
    assert _post_in_process(sent, sns, unknown).json()["result"].startswith("ignored: not a message we sent")
    assert subscriber(sent, "soft@example.com").status == SubscriberStatus.ACTIVE


def test_a_not_spam_report_and_other_ses_events_change_nothing(sent: Runtime, sns: FakeSns) -> None:
    before = counts(sent)
    not_spam = ses_event(
        "Complaint",
        "ses-angry",
        ["angry@example.com"],
        complaintFeedbackType="not-spam",
        complainedRecipients=[{"emailAddress": "angry@example.com"}],
    )
    assert _post_in_process(sent, sns, not_spam).json()["result"] == "ignored: Complaint"
    assert _post_in_process(sent, sns, ses_event("Send", "ses-angry", ["angry@example.com"])).status_code == 200
    assert subscriber(sent, "angry@example.com").status == SubscriberStatus.ACTIVE
    assert counts(sent)["events"] == before["events"]


def test_without_configured_topics_the_ses_webhook_is_refused(tmp_path: Path, db_url: str, sns: FakeSns) -> None:
    rt = runtime_with(tmp_path / "p", db_url, **sns.env)
    r = client(rt).post(
        "/webhooks/ses",
        content=json.dumps(signed(notification(bounce("x", "a@example.com")), sns.signing_key, sns.cert_url)),
    )
    assert r.status_code == 503 and "webhooks.sns_topic_arns" in r.json()["error"]
    assert counts(rt)["webhook_receipts"] == 0
    rt.close()


def test_production_trust_accepts_only_https_sns_hosts() -> None:
    strict = SnsTrust.from_env({})
    assert strict.allows("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem")
    assert strict.allows("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem")
    for url in (
        "http://sns.eu-west-1.amazonaws.com/x.pem",
        "https://sns.eu-west-1.amazonaws.com.evil.test/x.pem",
        "https://s3.amazonaws.com/bucket/x.pem",
        "https://evil.test/sns.eu-west-1.amazonaws.com/x.pem",
        "https://user@sns.eu-west-1.amazonaws.com/x.pem",
        "https://sns.eu-west-1.amazonaws.com:8443/x.pem",
        "https://127.0.0.1:8443/x.pem",
        "https://SNS.eu-west-1.amazonaws.com:bad/x.pem",
        "not a url",
    ):
        assert not strict.allows(url), url
    test_trust = SnsTrust.from_env({"DIGEST_SNS_TEST_HOST": "127.0.0.1:8443"})
    assert test_trust.allows("https://127.0.0.1:8443/x.pem")
    assert not test_trust.allows("http://127.0.0.1:8443/x.pem") and not test_trust.allows("https://127.0.0.1/x.pem")


def test_production_trust_fetches_certificates_only_from_sns_region_endpoints() -> None:
    """S3 answers for any bucket at <bucket>.s3[-region].amazonaws.com: a bucket named `sns` is anyone's."""
    strict = SnsTrust.from_env({})
    for region in ("us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1", "il-central-1", "ca-west-1"):
        assert strict.allows_certificate(f"https://sns.{region}.amazonaws.com/SimpleNotificationService-abc.pem")
    assert strict.allows_certificate("https://sns.cn-northwest-1.amazonaws.com.cn/SimpleNotificationService-a.pem")
    for url in (
        "https://sns.s3.amazonaws.com/x.pem",
        "https://sns.s3-us-west-2.amazonaws.com/x.pem",
        "https://sns.s3.us-west-2.amazonaws.com/x.pem",
        "https://sns.my-bucket.amazonaws.com/x.pem",
        "https://sns.us-east-1a.amazonaws.com/x.pem",
        "https://sns.useast1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com.cn/x.pem",
        "https://sns.cn-north-1.amazonaws.com/x.pem",
        "https://sns.amazonaws.com/x.pem",
        "https://sns.eu-west-1.amazonaws.com/x.pem.txt",
        "https://sns.eu-west-1.amazonaws.com/x.txt",
        "https://sns.eu-west-1.amazonaws.com/x.pem?a=b",
        "https://sns.eu-west-1.amazonaws.com/x.pem#frag",
    ):
        assert not strict.allows_certificate(url), url
    for host in ("sns.s3.amazonaws.com", "sns.s3-us-west-2.amazonaws.com"):  # nor visited as a SubscribeURL
        assert not strict.allows(f"https://{host}/?Action=ConfirmSubscription&Token=x")


def test_a_wrong_topic_and_a_bad_signature_get_the_same_answer(sent: Runtime, sns: FakeSns) -> None:
    """Otherwise a stranger could try topic names until the answer changes."""
    other_key, _ = self_signed("sns.amazonaws.com")
    good = notification(bounce("ses-hard", "hard@example.com"))
    messages = {
        "a topic that is not ours": signed(
            {**good, "TopicArn": TOPIC.replace("digest-ses", "other")}, sns.signing_key, sns.cert_url
        ),
        "signed with another key": signed(good, other_key, sns.cert_url),
        "unsigned": good,
        "certificate in an S3 bucket named sns": signed(good, sns.signing_key, "https://sns.s3.amazonaws.com/c.pem"),
    }
    c = client(sent)
    answers = {what: c.post("/webhooks/ses", content=json.dumps(m)) for what, m in messages.items()}
    seen = {(r.status_code, r.content) for r in answers.values()}
    assert len(seen) == 1, {what: (r.status_code, r.text) for what, r in answers.items()}
    assert answers["unsigned"].status_code == 401
    assert subscriber(sent, "hard@example.com").status == SubscriberStatus.ACTIVE


def test_nothing_is_fetched_for_a_message_whose_topic_or_shape_is_not_acceptable(sent: Runtime, sns: FakeSns) -> None:
    key, url = sns.signing_key, sns.cert_url
    good = notification(bounce("ses-hard", "hard@example.com"))
    no_token = signed(subscription_confirmation(sns), key, url)
    del no_token["Token"]
    unacceptable = {
        "a handshake without Token": no_token,
        "a handshake to a foreign SubscribeURL": signed(
            {**subscription_confirmation(sns), "SubscribeURL": "https://evil.test/?Action=ConfirmSubscription"},
            key,
            url,
        ),
        "a Subject that is not text": {**signed(good, key, url), "Subject": 5},
        "an empty Signature": {**signed(good, key, url), "Signature": ""},
        "a Signature that is not text": {**signed(good, key, url), "Signature": 5},
        "an unknown Type": {**signed(good, key, url), "Type": "Bounce"},
        "a topic that is not ours": signed({**good, "TopicArn": TOPIC.replace("digest-ses", "other")}, key, url),
    }
    c = client(sent)
    for what, message in unacceptable.items():
        r = c.post("/webhooks/ses", content=json.dumps(message))
        assert r.status_code in (400, 401), f"{what}: {r.status_code} {r.text}"
        assert sns.requests == [], what  # neither the certificate nor the SubscribeURL was fetched
    assert subscriber(sent, "hard@example.com").status == SubscriberStatus.ACTIVE


def test_identity_notifications_in_the_older_format_are_read_too(sent: Runtime, sns: FakeSns) -> None:
    older = bounce("ses-hard", "hard@example.com")
    older["notificationType"] = older.pop("eventType")
    r = _post_in_process(sent, sns, older)
    assert r.status_code == 200 and r.json()["result"] == "suppressed (hard_bounce)"
    assert subscriber(sent, "hard@example.com").status == SubscriberStatus.BOUNCED


def test_an_unreadable_test_ca_file_is_a_clear_503_not_a_traceback(tmp_path: Path, db_url: str, sns: FakeSns) -> None:
    rt = runtime_with(
        tmp_path / "p",
        db_url,
        {"webhooks": {"sns_topic_arns": [TOPIC]}},
        **{**sns.env, "DIGEST_SNS_TEST_CA_FILE": str(tmp_path / "missing.pem")},
    )
    r = client(rt).post(
        "/webhooks/ses",
        content=json.dumps(signed(notification(bounce("x", "a@example.com")), sns.signing_key, sns.cert_url)),
    )
    assert r.status_code == 503 and "DIGEST_SNS_TEST_CA_FILE" in r.json()["error"]
    assert counts(rt)["webhook_receipts"] == 0
    rt.close()


def test_only_ascii_hosts_of_regions_aws_has_for_sns_are_certificate_hosts() -> None:
    """`\\d` matched any Unicode digit (httpx then failed on the host), and any region-shaped host passed."""
    strict = SnsTrust.from_env({})
    for url in (
        "https://sns.us-east-\u0661.amazonaws.com/a.pem",  # an Arabic-Indic one
        "https://sns.us-east-\uff11.amazonaws.com/a.pem",  # a fullwidth one
        "https://sns.zz-nowhere-9.amazonaws.com/a.pem",
        "https://sns.us-east-9.amazonaws.com/a.pem",
        "https://sns.cn-south-7.amazonaws.com.cn/a.pem",
        "https://sns.us-gov-nowhere-1.amazonaws.com/a.pem",
    ):
        assert not strict.allows_certificate(url), url
        assert not strict.allows(url.replace("/a.pem", "/?Action=ConfirmSubscription")), url
    for region in ("us-east-1", "us-gov-east-1", "ap-southeast-2", "me-central-1"):
        assert strict.allows_certificate(f"https://sns.{region}.amazonaws.com/SimpleNotificationService-a.pem")
    assert strict.allows_certificate("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-a.pem")
    test_trust = SnsTrust.from_env({"DIGEST_SNS_TEST_HOST": "127.0.0.1:8443"})
    assert test_trust.allows_certificate("https://127.0.0.1:8443/SimpleNotificationService-test.pem")


def test_a_certificate_host_that_is_not_sns_gets_the_wrong_topic_answer_and_is_not_fetched(
    sent: Runtime, sns: FakeSns
) -> None:
    """A 500 (httpx's InvalidURL) or a 503 (a host that does not exist) for our topic and a 401 for
    another would tell a stranger which topic is ours."""
    good = notification(bounce("ses-hard", "hard@example.com"))
    other = {**good, "TopicArn": TOPIC.replace("digest-ses", "other")}
    c = client(sent)
    for host in ("sns.us-east-\u0661.amazonaws.com", "sns.zz-nowhere-9.amazonaws.com"):
        url = f"https://{host}/SimpleNotificationService-a.pem"
        ours, theirs = (
            c.post("/webhooks/ses", content=json.dumps(signed(m, sns.signing_key, url))) for m in (good, other)
        )
        assert (ours.status_code, ours.content) == (theirs.status_code, theirs.content) == (401, theirs.content), host
    assert sns.requests == []
    assert subscriber(sent, "hard@example.com").status == SubscriberStatus.ACTIVE


def test_a_certificate_url_httpx_cannot_request_is_refused_like_a_bad_signature(sns: FakeSns) -> None:
    """Whatever lets such a URL through the host check, building its request must not be a 500."""
    from digest.delivery.events import EventError
    from digest.providers.ses.sns import verify

    class Lax(SnsTrust):
        def allows_certificate(self, url: str) -> bool:
            return True

    message = signed(
        notification(bounce("ses-hard", "hard@example.com")),
        sns.signing_key,
        "https://sns.us-east-\u0661.amazonaws.com/SimpleNotificationService-a.pem",
    )
    with pytest.raises(EventError) as exc:
        verify(message, Lax())
    assert exc.value.status == 401
