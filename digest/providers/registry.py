"""Providers are plug-ins: each one declares here, in one `Provider`, everything the core needs of it.

A provider is a transport (with its capabilities), optionally a webhook (its event parser,
route and OpenAPI operation), its secrets (environment variable names) and config section,
and its doctor checks. The sender, the queue, the web app, the OpenAPI document, the config
and the doctor read those declarations, never a provider's name.

Every provider, built-in or installed, is found the same way: an entry point of the
`digest.providers` group whose object is a `Provider` (`pyproject.toml` declares the built-in
ones). `register()` adds one by hand (tests). This module sits beside the config (it imports only
pydantic and the standard library), so the config can validate `transport.kind` and the
`[transport.<name>]` sections against it; what a provider's parts need from higher layers
(webhook answers, doctor checks) they import themselves, and are typed loosely here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import BaseModel, ConfigDict

GROUP = "digest.providers"
OUR_DISTRIBUTION = "weekly-ai-tool-verdicts"  # its entry points (the built-ins) are listed first


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
    # Writes messages as files under its section's `dir` (the CLI, the preview and erasure read them).
    writes_files: bool = False


@dataclass(frozen=True)
class Webhook:
    """The provider's incoming events: mounted by the web app at `/webhooks/<provider name>`.

    `receive(runtime, body, headers)` checks the request's signature over the raw body and parses
    it; it returns the `DeliveryEvent`s to apply, or an `Acknowledged` answer (a handshake), and
    raises `EventError` (401 for a bad signature, 400 for a body that is not an event). It runs in
    a worker thread, so it may block (fetch a certificate). `operation` is its OpenAPI operation
    object: every status it answers, for integrators and the schema fuzz test.
    """

    receive: Callable[[Any, bytes, Mapping[str, str]], Any]
    operation: Mapping[str, Any]
    max_body: int = 256 * 1024


@dataclass(frozen=True)
class Legacy:
    """Settings a provider once read from elsewhere, still loaded with a warning."""

    table: str = ""  # an old top-level `[<table>]` read into `[transport.<name>]`
    shared: tuple[str, ...] = ()  # keys of that table that go to `[transport]` (every transport's)
    keys: Mapping[str, str] = field(default_factory=dict)  # old `transport.<key>` -> key of the section


@dataclass(frozen=True)
class Provider:
    """One provider's declaration: everything the core reads about it (see the module docstring)."""

    name: str
    capabilities: Capabilities
    section: type[TransportSection]  # `[transport.<name>]`
    # Builds the transport from the Config (imports of SDKs belong inside it: listing is cheap).
    factory: Callable[[Any], Any]
    summary: str = ""
    secrets: tuple[str, ...] = ()  # the environment variables it reads secrets from (Config.secret)
    webhook: Webhook | None = None
    # Returns its doctor checks, a `digest.doctor.providers.ProviderChecks` (the doctor sits above this
    # module; called when the doctor runs, so loading a config imports none of them).
    doctor: Callable[[], Any] | None = None
    legacy: Legacy = Legacy()

    @property
    def webhook_path(self) -> str:
        return f"/webhooks/{self.name}"


class ProviderLoadError(Exception):
    """An entry point of the group that does not load, or is not a Provider."""


_providers: dict[str, Provider] = {}
_lock = threading.RLock()  # a provider's module may ask the registry while it loads
_loaded = False


def register(provider: Provider) -> Provider:
    """Make a provider available under `provider.name` (a later registration of a name replaces it)."""
    with _lock:
        _providers[provider.name] = provider
    return provider


def unregister(name: str) -> None:
    with _lock:
        _providers.pop(name, None)


def _ordered(found: Iterable[EntryPoint]) -> list[EntryPoint]:
    """Ours first (in the order of our entry_points.txt); then installed ones by distribution and name."""

    def key(item: tuple[int, EntryPoint]) -> tuple[int, str, int, str]:
        rank, ep = item
        dist = ep.dist.name if ep.dist is not None else ""
        return (0, "", rank, "") if dist == OUR_DISTRIBUTION else (1, dist, 0, ep.name)

    return [ep for _, ep in sorted(enumerate(found), key=key)]


def load_entry_point(ep: EntryPoint) -> Provider:
    try:
        provider = ep.load()
    except Exception as exc:  # noqa: BLE001 - any import error of a plug-in: name it, do not hide it
        raise ProviderLoadError(f"provider entry point {ep.name} = {ep.value}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(provider, Provider):
        raise ProviderLoadError(f"provider entry point {ep.name} = {ep.value} is not a digest Provider")
    if provider.name != ep.name:
        raise ProviderLoadError(f"provider entry point {ep.name} declares the provider {provider.name!r}")
    return provider


def _load() -> None:
    """Register every provider of the entry point group once (a name registered by hand stays)."""
    global _loaded
    if _loaded:
        return
    with _lock:
        if _loaded:
            return
        found = [load_entry_point(ep) for ep in _ordered(entry_points(group=GROUP))]
        if not found:  # ours are entry points too: a checkout run without being installed has none
            raise ProviderLoadError(
                f"no provider found in the {GROUP} entry point group: install the digest "
                "(`pip install -e .` or `make install`) so its built-in providers are declared"
            )
        manual = dict(_providers)
        _providers.clear()
        _providers.update({p.name: p for p in found})
        _providers.update(manual)
        _loaded = True


def providers() -> list[Provider]:
    """Every provider: the entry points' (ours first), then those registered by hand."""
    _load()
    with _lock:
        return list(_providers.values())


def names() -> list[str]:
    return [p.name for p in providers()]


def get(name: str) -> Provider:
    """The provider registered under `name`; KeyError with the known names otherwise."""
    _load()
    with _lock:
        provider = _providers.get(name)
    if provider is None:
        raise KeyError(f"{name!r} is not a transport ({describe_names()})")
    return provider


def describe_names() -> str:
    known = names()
    return ", ".join(known[:-1]) + f" or {known[-1]}" if len(known) > 1 else "".join(known)
