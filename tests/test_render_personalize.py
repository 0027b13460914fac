"""Compile once, personalize per reader: two readers' copies of a frozen issue differ only in what is theirs."""

from __future__ import annotations

import html as htmllib
import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from digest.cycle.freeze import prepare
from digest.delivery.messages import IssueMessages, Recipient
from digest.ingest.sources import expand
from digest.ingest.store import upsert
from digest.links import ClickTokens, Tokens
from digest.render.personalize import Personalizer, marker
from digest.storage.models import Delivery, Issue, Subscriber
from digest.weeks import Week
from subscribers.api import add_subscriber
from tests.conftest import SAMPLES

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)  # Wednesday of 2026-W47


def frozen_issue(rt) -> Issue:
    with rt.sessions.begin() as s:
        for src in expand([str(SAMPLES)]):
            upsert(s, src.items, default_url="https://verdicts.example.com/compare", published=NOW - timedelta(days=1))
        add_subscriber(s, "ada@example.com", name="Ada Lovelace", confirmed=True)
        add_subscriber(s, "grace@example.com", name="Grace Hopper", confirmed=True)
        add_subscriber(s, "anon@example.com", confirmed=True)
    prepared = prepare(rt, Week.parse("2026-W47"), manual=True, now=NOW)
    assert prepared.frozen_now and prepared.recipients == 3
    with rt.sessions() as s:
        issue = s.scalar(select(Issue).where(Issue.id == prepared.issue_id).options(selectinload(Issue.main_edition)))
        assert issue is not None
        s.expunge(issue)
        return issue


def recipients(rt, issue_id: int) -> dict[str, Recipient]:
    with rt.sessions() as s:
        rows = s.execute(
            select(Delivery.id, Subscriber.id, Subscriber.email, Subscriber.name)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.issue_id == issue_id)
        ).all()
    return {email: Recipient(did, sid, email, name) for did, sid, email, name in rows}


def token_of(url: str) -> str:
    m = re.search(r"/u/([^/?\s]+)", url)
    assert m, url
    return m.group(1)


def test_two_readers_copies_differ_only_in_their_links_and_name(rt) -> None:
    issue = frozen_issue(rt)
    tokens = Tokens(rt.secret_key)
    # As for a delivery enqueued before editions: its click tokens name no edition.
    messages = IssueMessages(
        rt.settings, tokens, issue, issue.main_edition, installation="test-install", tokens_name_edition=False
    )
    people = recipients(rt, issue.id)
    ada, grace = messages.build(people["ada@example.com"]), messages.build(people["grace@example.com"])

    unsub = {}
    for mail, person in ((ada, people["ada@example.com"]), (grace, people["grace@example.com"])):
        url = re.search(r"<(http[^>]+/u/[^>]+)>", mail.headers["List-Unsubscribe"]).group(1)
        unsub[person.email] = url
        claim = tokens.read_unsubscribe(token_of(url))
        assert claim.subscriber_id == person.subscriber_id and claim.issue_id == issue.id
        assert claim.matches(person.email)
        assert url in mail.text and htmllib.escape(url) in mail.html
    assert token_of(unsub["ada@example.com"]) != token_of(unsub["grace@example.com"])

    clicks = ClickTokens(tokens)

    def neutral(mail, person_email: str, first_name: str) -> tuple[str, str]:
        url = unsub[person_email]
        out = []
        for part, esc in ((mail.html, htmllib.escape), (mail.text, lambda v: v)):
            tracked = re.findall(r"/c/([A-Za-z0-9_-]{22})", part)
            named = {(c.issue_id, c.delivery_id) for c in map(clicks.read, tracked)}
            assert tracked and named == {(issue.id, people[person_email].delivery_id)}
            part = re.sub(r"/c/([0-9a-f]{2})[A-Za-z0-9_-]{20}", r"/c/\1{TOKEN}", part)  # each reader's own
            part = part.replace(esc(url.replace("/u/", "/preferences/")), "{MANAGE}").replace(esc(url), "{UNSUB}")
            out.append(part.replace(f"Hi {first_name},", "{GREETING}"))
        return out[0], out[1]

    ada_html, ada_text = neutral(ada, "ada@example.com", "Ada")
    grace_html, grace_text = neutral(grace, "grace@example.com", "Grace")
    assert ada_html == grace_html and ada_text == grace_text  # nothing else differs
    assert "{UNSUB}" in ada_html and "{MANAGE}" in ada_html and "{GREETING}" in ada_html
    assert ada.subject == grace.subject and "Hi Ada," in ada.html and "Hi Grace," in grace.text

    anon = messages.build(people["anon@example.com"])
    assert "Hi there," in anon.html and "Hi there," in anon.text
    assert messages.build(people["ada@example.com"]).html == ada.html  # same input, same bytes (stable retries)


def test_frozen_issue_is_stored_with_markers_not_personal_values(rt) -> None:
    issue = frozen_issue(rt).main_edition  # an issue's content: its editions
    nonce = issue.placeholder_nonce
    assert nonce and marker(nonce, "unsubscribe_url") in issue.html and marker(nonce, "unsubscribe_url") in issue.text
    assert "ada@example.com" not in issue.html and "Ada" not in issue.html
    assert issue.subject and issue.subject.endswith(" + 1 more") and len(issue.subject) <= 60
    assert issue.preheader and issue.preheader.endswith("Issue 1.")


def test_fill_escapes_values_for_html_only() -> None:
    p = Personalizer.build("<a href='@@n1.view_url@@'>@@n1.name@@</a>", "@@n1.name@@ @@n1.view_url@@", "n1")
    html, text = p.fill({"view_url": "https://x/a?b=1&c=2", "name": 'Tom & "Jerry" <b>'})
    assert html == "<a href='https://x/a?b=1&amp;c=2'>Tom &amp; &quot;Jerry&quot; &lt;b&gt;</a>"
    assert text == 'Tom & "Jerry" <b> https://x/a?b=1&c=2'
    assert Personalizer.build("@@other.name@@", "", "n1").fill({"name": "x"})[0] == "@@other.name@@"


def test_precomputed_unsubscribe_signing_matches_itsdangerous() -> None:
    """The fast signer (bench/render.py) makes the same tokens itsdangerous would, and they verify."""
    from itsdangerous import URLSafeSerializer

    from digest.links import TokenError

    tokens = Tokens("test-secret-key-0123456789")
    reference = URLSafeSerializer("test-secret-key-0123456789", salt="digest.unsubscribe")
    for sid, iid in ((1, None), (42, 7), (987_654_321, 12_345), (111_111_111, 1)):
        email = f"reader{sid}@example.com"
        token = tokens.unsubscribe(sid, email, iid)
        assert token == reference.dumps([sid, iid or 0, Tokens.tie(email)])
        claim = tokens.read_unsubscribe(token)
        assert (claim.subscriber_id, claim.issue_id) == (sid, iid) and claim.matches(email)
    try:
        Tokens("another-secret-key-000000").read_unsubscribe(tokens.unsubscribe(1, "a@example.com"))
        raise AssertionError("a token signed with another key must not verify")
    except TokenError:
        pass
