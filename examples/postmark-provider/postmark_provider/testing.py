"""What the digest's shared provider contract test needs to drive Postmark (entry point
`digest.provider_harnesses`): the fake Postmark, the environment pointing at it, what it
accepted per recipient, and bounce webhooks with the right credentials or forged ones."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from postmark_provider.fake import TOKEN, FakePostmark, serve
from postmark_provider.webhook import PASSWORD, USER

WEBHOOK_USER, WEBHOOK_PASSWORD = "postmark-hooks", "a-long-random-webhook-password"


def bounce_record(message_id: str, recipient: str, bounce_type: str = "HardBounce", code: int = 1) -> dict[str, object]:
    """A Bounce webhook record as Postmark documents it (developer/webhooks/bounce-webhook)."""
    return {
        "RecordType": "Bounce",
        "MessageStream": "broadcast",
        "ID": abs(hash((message_id, recipient))) % 10**12,
        "Type": bounce_type,
        "TypeCode": code,
        "Name": "Hard bounce",
        "Tag": "",
        "MessageID": message_id,
        "Metadata": {},
        "ServerID": 23,
        "Description": "The server was unable to deliver your message.",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": recipient,
        "From": "verdicts@example.com",
        "BouncedAt": "2026-11-18T12:05:00.0000000Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "This week's verdicts",
    }


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {token}", "content-type": "application/json"}


@dataclass
class Served:
    state: FakePostmark
    env: dict[str, str]
    overrides: dict[str, dict[str, object]] = field(default_factory=dict)
    toml: str = "\n[transport.postmark]\nrequests_per_second = 50.0\ntimeout_seconds = 5.0\n"

    def copies(self) -> Counter[str]:
        return self.state.copies()

    def event(self, kind: str, message_id: str, recipient: str, forged: bool = False) -> tuple[bytes, dict[str, str]]:
        if kind != "hard_bounce":
            raise ValueError(kind)
        body = json.dumps(bounce_record(message_id, recipient)).encode()
        return body, basic(WEBHOOK_USER, "guessed-password" if forged else WEBHOOK_PASSWORD)


class Harness:
    readers = 1500  # batches of 100: enough calls that a kill lands mid-send

    @contextmanager
    def serve(self, project: Path) -> Iterator[Served]:
        with serve(FakePostmark(slow=0.05)) as (url, state):
            yield Served(
                state,
                {
                    "DIGEST_TRANSPORT": "postmark",
                    "POSTMARK_API_URL": url,
                    "POSTMARK_SERVER_TOKEN": TOKEN,
                    USER: WEBHOOK_USER,
                    PASSWORD: WEBHOOK_PASSWORD,
                },
            )
