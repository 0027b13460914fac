"""Send a test copy to the allowlist (preview.test_recipients) through the configured transport.

A test send writes no delivery, batch or issue row: it is never the issue's send, never
enqueues anyone and never freezes the draft. The outbox transport files it under `test/`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from digest.delivery.messages import Recipient
from digest.delivery.transports import make_transport
from digest.delivery.transports.base import TransientError
from digest.errors import ProviderAuthError, TemplateError, UserError
from digest.preview.build import KINDS, compiled_issue, issue_mail, transactional_mail
from digest.preview.draft import Draft
from digest.runtime import Runtime
from digest.weeks import utcnow

TEST_FOLDER = "test"
SUBJECT_PREFIX = "[TEST] "


@dataclass
class TestSendResult:
    sent: list[str]
    failed: list[tuple[str, str]]
    transport: str
    folder: str


def send_test(rt: Runtime, kind: str, draft: Draft | None, recipients: list[str]) -> TestSendResult:
    """Send `kind` to each of `recipients`; every address must be on the allowlist."""
    if kind not in KINDS:
        raise UserError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    allow = {a.lower(): a for a in rt.settings.preview.test_recipients}
    if not allow:
        raise UserError("preview.test_recipients in config.toml is empty; add the addresses allowed to get tests")
    if not recipients:
        raise UserError("send test: choose at least one address")
    chosen: list[str] = []
    for addr in recipients:
        if addr.strip().lower() not in allow:
            raise UserError(f"send test: {addr!r} is not on preview.test_recipients in config.toml")
        if allow[addr.strip().lower()] not in chosen:
            chosen.append(allow[addr.strip().lower()])
    stamp = f"{utcnow():%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
    week = draft.week.key if draft is not None else "transactional"
    try:
        main = compiled_issue(rt, draft) if kind == "digest" and draft is not None else None
        emails = []
        for i, addr in enumerate(chosen):
            to = Recipient(delivery_id=0, subscriber_id=0, email=addr, name=None)
            key = f"test-{kind}-{week}-{stamp}-{i}"
            if main is not None and draft is not None:
                emails.append(issue_mail(rt, draft.issue, main, to, subject_prefix=SUBJECT_PREFIX, key=key))
            else:
                emails.append(transactional_mail(rt, kind, to, subject_prefix=SUBJECT_PREFIX, key=key))
    except TemplateError as exc:
        raise UserError(f"not sent: the template does not render: {exc}") from None
    for mail in emails:
        mail.tags = {**mail.tags, "test": "true"}
    try:
        transport = make_transport(rt.config)
    except (ImportError, ValueError) as exc:
        raise UserError(f"not sent: transport {rt.config.transport_kind!r} is not available: {exc}") from None
    try:
        results = transport.send_batch(emails, f"digest-test-{stamp}", TEST_FOLDER)
    except ProviderAuthError as exc:
        raise UserError(f"not sent: the provider refused the credentials: {exc}") from None
    except TransientError as exc:
        raise UserError(f"not sent: the transport is unavailable, try again: {exc}") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"not sent: {type(exc).__name__}: {exc}") from None
    finally:
        transport.close()
    sent = [m.to for m, r in zip(emails, results) if r.ok]
    failed = [(m.to, r.error or "rejected") for m, r in zip(emails, results) if not r.ok]
    return TestSendResult(sent, failed, getattr(transport, "name", rt.config.transport_kind), TEST_FOLDER)
