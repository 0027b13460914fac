"""How the shared provider contract test (test_provider_contract.py) drives each built-in provider.

A harness starts what its provider talks to (a fake API, a mail server, nothing for the outbox)
and says what the provider itself accepted, recipient by recipient, so the contract test can
check exactly-once against the provider's record, never against ours. An installed provider
ships its own harness under the `digest.provider_harnesses` entry point group (the Postmark
example: `postmark_provider.testing:Harness`); these are the built-in ones'.

`serve(project)` is a context manager giving a `Served`: `env` (the transport's environment),
`overrides` (config.toml keys to change), `toml` (sections to add), `copies()`, and for a
provider that declares a webhook, `event(kind, message_id, recipient, forged)`: the body and
headers of a hard bounce (`kind="hard_bounce"`) its webhook accepts, or a forged one it must refuse.
"""

from __future__ import annotations

import asyncio
import email.policy
import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from tests.support_serve import free_port


@dataclass
class Served:
    env: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, dict[str, object]] = field(default_factory=dict)
    toml: str = ""
    count: Any = None  # () -> Counter[str]

    def copies(self) -> Counter[str]:
        result: Counter[str] = self.count()
        return result

    def event(self, kind: str, message_id: str, recipient: str, forged: bool = False) -> tuple[bytes, dict[str, str]]:
        raise NotImplementedError("this provider declares no webhook")


class OutboxHarness:
    readers = 1500  # files are written fast: enough of them that a kill lands mid-send

    @contextmanager
    def serve(self, project: Path) -> Iterator[Served]:
        folder = project / "var" / "outbox"

        def count() -> Counter[str]:
            copies: Counter[str] = Counter()
            for path in folder.rglob("*.eml"):
                with open(path, "rb") as fh:
                    headers = BytesHeaderParser(policy=email.policy.default).parse(fh)
                copies[parseaddr(str(headers["To"]))[1]] += 1
            return copies

        yield Served(env={"DIGEST_TRANSPORT": "outbox"}, count=count)


class _Resend(Served):
    def event(self, kind: str, message_id: str, recipient: str, forged: bool = False) -> tuple[bytes, dict[str, str]]:
        from tests.support_subscribers import signed_webhook

        payload = {
            "type": "email.bounced",
            "created_at": "2026-11-18T12:05:00.000Z",
            "data": {
                "email_id": message_id,
                "to": [recipient],
                "from": "verdicts@example.com",
                "subject": "x",
                "bounce": {"type": "Permanent", "subType": "General"},
            },
        }
        secret = "whsec_" + "Zm9yZ2VkLWZvcmdlZC1mb3JnZWQtZm9yZ2VkIQ==" if forged else None
        return signed_webhook(payload, f"msg_{uuid.uuid4().hex}", **({"secret": secret} if secret else {}))


class ResendHarness:
    readers = 1200

    @contextmanager
    def serve(self, project: Path) -> Iterator[Served]:
        from tests.fake_resend import FakeResend, FakeResendServer, Faults
        from tests.support_delivery import API_KEY
        from tests.support_subscribers import WEBHOOK_SECRET

        state = FakeResend(faults=Faults(slow_rate=0.3, slow_seconds=0.1, seed=7))
        with FakeResendServer(state) as server:
            yield _Resend(
                env={
                    "DIGEST_TRANSPORT": "resend",
                    "RESEND_API_URL": server.url,
                    "RESEND_API_KEY": API_KEY,
                    "RESEND_WEBHOOK_SECRET": WEBHOOK_SECRET,
                },
                overrides={
                    "transport": {"batch_size": 20},
                    "transport.resend": {"requests_per_second": 50.0, "timeout_seconds": 5.0},
                },
                count=lambda: Counter(state.copies_by_recipient()),
            )


class _Mailbox:
    """A local MTA: accepts every message a few milliseconds after its data, and counts them."""

    def __init__(self) -> None:
        self.received: Counter[str] = Counter()
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook
        await asyncio.sleep(0.002)
        with self.lock:
            self.received.update(envelope.rcpt_tos)
        return "250 2.0.0 queued"


class SmtpHarness:
    readers = 600

    @contextmanager
    def serve(self, project: Path) -> Iterator[Served]:
        box, port = _Mailbox(), free_port()
        controller = Controller(box, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            yield Served(
                env={"DIGEST_TRANSPORT": "smtp"},
                overrides={"transport.smtp": {"host": "127.0.0.1", "port": port, "security": "none", "connections": 1}},
                count=lambda: Counter(box.received),
            )
        finally:
            controller.stop()


class _Ses(Served):
    sns: Any = None

    def event(self, kind: str, message_id: str, recipient: str, forged: bool = False) -> tuple[bytes, dict[str, str]]:
        from tests.support_sns import bounce, notification, self_signed, signed

        key = self_signed("sns.amazonaws.com")[0] if forged else self.sns.signing_key
        message = signed(notification(bounce(message_id, recipient)), key, self.sns.cert_url)
        return json.dumps(message).encode(), {
            "content-type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": "Notification",
        }


class SesHarness:
    readers = 300

    @contextmanager
    def serve(self, project: Path) -> Iterator[Served]:
        from tests.support_ses import AWS_ENV, moto_server
        from tests.support_sns import TOPIC, fake_sns

        with moto_server() as moto, fake_sns(project.parent / "sns") as sns:
            moto.reset()
            served = _Ses(
                env={"DIGEST_TRANSPORT": "ses", **AWS_ENV, "AWS_ENDPOINT_URL": moto.url, **sns.env},
                overrides={"transport.ses": {"max_send_rate": 1000.0}, "webhooks": {"sns_topic_arns": [TOPIC]}},
                count=moto.copies,
            )
            served.sns = sns
            yield served


BUILT_IN = {"outbox": OutboxHarness, "resend": ResendHarness, "smtp": SmtpHarness, "ses": SesHarness}
