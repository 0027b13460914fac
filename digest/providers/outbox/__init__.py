"""The local outbox: one .eml file per message, the embedded default (no account, no network)."""

from __future__ import annotations

from digest.providers.outbox.transport import CAPABILITIES, OutboxSection, build
from digest.providers.registry import Legacy, Provider

PROVIDER = Provider(
    "outbox",
    CAPABILITIES,
    OutboxSection,
    build,
    "one .eml file per message under [transport.outbox] dir (no account, no network)",
    legacy=Legacy(keys={"outbox_dir": "dir"}),  # `transport.outbox_dir`, before transports were plug-ins
)
