"""`forget` deletes exactly that person's outbox copies: not bob-a@'s when forgetting a@ (a suffix
match did), not zoé's when forgetting zoë (both file names were mangled to zo_)."""

from __future__ import annotations

import email
import email.policy

import pytest

from digest.delivery.mail_queue import drain
from subscribers.erasure import forget
from tests.support_subscribers import client, runtime_with

PEOPLE = ["a@example.com", "bob-a@example.com", "zoé@example.com", "zoë@example.com", "xa@example.com"]


@pytest.fixture
def srt(tmp_path, db_url):
    rt = runtime_with(tmp_path / "p", db_url)
    yield rt
    rt.close()


def _recipients(rt) -> list[str]:
    files = sorted(rt.outbox_dir.rglob("*.eml"))
    return sorted(str(email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["To"]) for p in files)


@pytest.mark.parametrize("gone", ["a@example.com", "zoë@example.com"])
def test_forget_removes_only_that_persons_outbox_copies(srt, gone) -> None:
    c = client(srt)
    for address in PEOPLE:
        assert c.post("/subscribe", json={"email": address}).status_code == 200
    assert drain(srt).sent == len(PEOPLE)
    assert _recipients(srt) == sorted(PEOPLE)
    result = forget(srt, gone)
    assert result.files_removed == 1
    assert _recipients(srt) == sorted(p for p in PEOPLE if p != gone)


def test_forget_clears_the_sign_up_limits_keyed_on_the_persons_mailbox(srt) -> None:
    """The limits key on the canonical mailbox (`a:` and `cm:`), not on the address as typed."""
    from sqlalchemy import select

    from digest.links import email_hash
    from digest.storage.models import RateLimitHit
    from subscribers.addresses import canonical_mailbox

    address = "john.doe+x@gmail.com"
    assert client(srt).post("/subscribe", json={"email": address}).status_code == 200
    mailbox = email_hash(canonical_mailbox(address))[:40]
    with srt.sessions() as s:
        before = set(s.scalars(select(RateLimitHit.key)))
    assert {f"a:{mailbox}", f"cm:{mailbox}"} <= before
    forget(srt, address)
    with srt.sessions() as s:
        after = set(s.scalars(select(RateLimitHit.key)))
    assert not [k for k in after if mailbox in k or email_hash(address)[:40] in k], after
    assert after == before - {f"a:{mailbox}", f"cm:{mailbox}"}  # the client's and the caps' rows are nobody's
