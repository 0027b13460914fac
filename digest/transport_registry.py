"""Transports are plug-ins: each module registers its name, capabilities and config section here.

The sender, the queue, the CLI and config validation ask this registry what a transport
*can do* (idempotent or not, largest batch, rate, body encoding, events reported), never
what it is *called*. It sits beside the config (it imports only pydantic) so the config can
validate `transport.kind`, `DIGEST_TRANSPORT` and `[transport.<name>]` against it; the
built-in transport modules are imported by name the first time the registry is asked.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

# The transports that ship with the digest; a plug-in elsewhere calls register() itself.
BUILTIN_MODULES = (
    "digest.delivery.transports.outbox",
    "digest.delivery.transports.resend_api",
    "digest.delivery.transports.smtp",
    "digest.delivery.transports.ses",
)


class TransportSection(BaseModel):
    """Base of every `[transport.<name>]` section: unknown keys are errors, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Capabilities:
    """What the sender must know about a transport to send through it safely (invariants 2, 6, 7)."""

    # Does a retried batch under the same key never produce a second copy? For how long?
    idempotent: bool
    key_lifetime_hours: float | None = None
    # The most emails one send_batch call takes (the queue fixes batches at most this big).
    max_batch: int = 100
    # Requests per second shared by all workers, read from the section (None: not rate limited).
    rate: Callable[[Any], float | None] = field(default=lambda section: None)
    # Wants each email's body pre-encoded as a JSON fragment (an HTTP API taking JSON).
    json_body: bool = False
    # Delivery events its provider reports back (delivered, bounced, complained, opened, clicked).
    reports: frozenset[str] = frozenset()
    # Reports each message's result through on_result before sending the next (SMTP, SES).
    per_message_results: bool = False
    # Writes messages as files under the outbox directory (the CLI says where).
    writes_files: bool = False


@dataclass(frozen=True)
class TransportSpec:
    name: str
    capabilities: Capabilities
    section: type[TransportSection]
    # Builds the transport from the Config (imports of SDKs belong inside it: listing is cheap).
    factory: Callable[[Any], Any]
    summary: str = ""


_specs: dict[str, TransportSpec] = {}
_lock = threading.Lock()
_loaded = False


def register(spec: TransportSpec) -> TransportSpec:
    """Make a transport available under `spec.name` (a later registration of a name replaces it)."""
    with _lock:
        _specs[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    with _lock:
        _specs.pop(name, None)


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    _loaded = True


def names() -> list[str]:
    """The built-in transports first, in BUILTIN_MODULES order, then plug-ins as registered."""
    _load_builtins()
    with _lock:
        specs = list(_specs.values())
    rank = {module: i for i, module in enumerate(BUILTIN_MODULES)}
    return [s.name for s in sorted(specs, key=lambda s: rank.get(getattr(s.factory, "__module__", ""),
                                                                   len(rank)))]


def get(name: str) -> TransportSpec:
    """The spec registered under `name`; KeyError with the known names otherwise."""
    _load_builtins()
    with _lock:
        spec = _specs.get(name)
    if spec is None:
        raise KeyError(f"{name!r} is not a transport ({describe_names()})")
    return spec


def describe_names() -> str:
    known = names()
    return ", ".join(known[:-1]) + f" or {known[-1]}" if len(known) > 1 else "".join(known)
