"""A transport is one module: registered from here, it sends a whole issue with no other change.

The "pigeon" transport below declares capabilities none of the built-in ones has together
(batches of at most 7, a rate of its own, per-message results, one reported event); the
queue, the sender, the rate limiter, config validation and the CLI's stats follow them.
Old `[resend]`/`[smtp]` sections still load, with one warning naming the new section.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from pydantic import Field
from sqlalchemy import func, select

from digest.config import load_config
from digest.cycle.send import send_week
from digest.delivery.transports import make_transport, reported_events
from digest.delivery.transports.base import BaseTransport, OnResult, SendResult
from digest.errors import ConfigError
from digest.mail import OutgoingEmail
from digest.providers import registry
from digest.storage.models import Batch, Delivery, SendRate
from digest.weeks import utcnow
from tests.conftest import make_runtime, write_project
from tests.support_delivery import add_readers, seed_comparisons, this_week

# ---- the throw-away transport: everything a provider needs, in one place -------------------------


class PigeonSection(registry.TransportSection):
    loft: str = "main"
    birds_per_second: float = Field(500.0, gt=0)


PIGEON = registry.Capabilities(
    idempotent=False,
    max_batch=7,
    rate=lambda section: section.birds_per_second,
    reports=frozenset({"delivered"}),
    per_message_results=True,
)


class PigeonTransport(BaseTransport):
    name = "pigeon"
    max_in_flight = 2
    carried: list[tuple[str, str, int]] = []  # (loft, recipient, batch size): what the pigeons took
    lock = threading.Lock()

    def __init__(self, config: Any):
        self.loft = config.transport_section("pigeon").loft

    def send_batch(
        self, emails: list[OutgoingEmail], idempotency_key: str, folder: str, on_result: OnResult | None = None
    ) -> list[SendResult]:
        results = []
        for i, email in enumerate(emails):
            with self.lock:
                self.carried.append((self.loft, email.to, len(emails)))
            results.append(SendResult(ok=True, provider_id=f"pigeon-{email.to}"))
            if on_result is not None:
                on_result(i, results[-1])
        return results

    def close(self) -> None:
        pass


@pytest.fixture
def pigeon() -> Iterator[type[PigeonTransport]]:
    registry.register(registry.Provider("pigeon", PIGEON, PigeonSection, PigeonTransport))
    PigeonTransport.carried = []
    yield PigeonTransport
    registry.unregister("pigeon")


# ---- the tests ------------------------------------------------------------------------------------


def test_a_transport_registered_from_one_file_sends_a_whole_issue_following_its_capabilities(
    pigeon, tmp_path, db_url
) -> None:
    cfg = write_project(tmp_path / "project", '\n[transport.pigeon]\nloft = "north"\n')
    rt = make_runtime(cfg, db_url, DIGEST_TRANSPORT="pigeon")
    assert isinstance(make_transport(rt.config), PigeonTransport)
    seed_comparisons(rt, published=utcnow() - timedelta(days=1))
    readers = add_readers(rt, 30)

    result = send_week(rt, this_week(rt), manual=True)

    assert result.summary is not None and result.summary.sent == 30
    copies = Counter(to for _, to, _ in pigeon.carried)
    assert copies == Counter(readers)  # each reader once, nobody else
    assert {loft for loft, _, _ in pigeon.carried} == {"north"}  # its own config section was read
    assert max(size for _, _, size in pigeon.carried) == 7  # the queue cut batches at its maximum
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Batch)) == 5  # ceil(30 / 7)
        ids = set(s.scalars(select(Delivery.provider_id)))
        assert ids == {f"pigeon-{r}" for r in readers}
        # Its declared rate set up a shared limiter under its own name.
        assert s.scalar(select(func.count()).select_from(SendRate).where(SendRate.name == "pigeon")) == 1
    assert reported_events("pigeon") == frozenset({"delivered"})  # what `digest stats` can measure


def test_config_names_only_registered_transports(pigeon, tmp_path) -> None:
    cfg = write_project(tmp_path / "project", "\n[transport.fax]\nspeed = 1\n")
    with pytest.raises(
        ConfigError,
        match=r"^config.toml: \[transport.fax\]: 'fax' is not a transport "
        r"\(outbox, resend, .*pigeon\)",
    ):
        load_config(cfg, env={})
    cfg = write_project(tmp_path / "project2", "\n[transport.pigeon]\nbirds_per_second = 0\n")
    with pytest.raises(ConfigError, match=r"^config.toml: transport.pigeon.birds_per_second: 0"):
        load_config(cfg, env={})
    with pytest.raises(ConfigError, match=r"^DIGEST_TRANSPORT: 'fax' is not a transport"):
        load_config(write_project(tmp_path / "project3"), env={"DIGEST_TRANSPORT": "fax"})
    cfg = load_config(write_project(tmp_path / "project4"), env={"DIGEST_TRANSPORT": "pigeon"})
    assert cfg.transport_kind == "pigeon"


OLD_SECTIONS = """
[transport]
kind = "smtp"
outbox_dir = "var/old-outbox"

[resend]
requests_per_second = 9.0
batch_size = 40
max_attempts = 3

[smtp]
host = "mail.example.com"
port = 2525
"""


def test_old_resend_and_smtp_sections_still_load_with_a_warning_naming_the_new_section(tmp_path, capsys) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "config.toml").write_text(OLD_SECTIONS)
    cfg = load_config(root / "config.toml", env={})
    warned = capsys.readouterr().err.splitlines()
    assert (
        "warning: config.toml: [resend] is deprecated: move it to [transport.resend] "
        "(batch_size, max_attempts go to [transport])" in warned
    )
    assert "warning: config.toml: [smtp] is deprecated: move it to [transport.smtp]" in warned
    assert "warning: config.toml: transport.outbox_dir is deprecated: move it to [transport.outbox] dir" in warned
    assert cfg.transport_section("resend").requests_per_second == 9.0
    assert cfg.settings.transport.max_attempts == 3 and cfg.batch_size == 40
    assert (cfg.transport_section("smtp").host, cfg.transport_section("smtp").port) == ("mail.example.com", 2525)
    assert cfg.outbox_dir == root / "var" / "old-outbox"
