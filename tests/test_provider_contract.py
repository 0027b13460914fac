"""One contract for every provider, built-in or installed: found through the entry points, held to the same test.

For each provider of the `digest.providers` entry point group (ours and any installed package's,
loaded the way `digest serve` loads them): an issue goes out to every reader exactly once, by the
provider's own record; a sender killed with SIGKILL mid-send and started again leaves nobody
mailed twice beyond what the provider's declaration allows, and nobody silently skipped; a signed
hard bounce through its webhook suppresses the reader; a forged one is refused and changes nothing.

What a provider cannot do comes from its declaration, never its name: one with no webhook has
no events to apply; one without idempotency keys may leave the batch in flight `unconfirmed`.
Each provider brings a harness that starts what it talks to (tests/provider_harnesses.py for ours,
the `digest.provider_harnesses` entry point for an installed one). With CI=true the Postmark example
must be installed (`make install-test` does it): its absence fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from digest.cycle.send import send_week
from digest.providers import registry
from digest.runtime import Runtime
from digest.storage.models import Batch, BatchStatus, Delivery, DeliveryStatus, Subscriber, SubscriberStatus
from digest.weeks import utcnow
from tests.conftest import apply_overrides, make_runtime, write_project
from tests.provider_harnesses import BUILT_IN
from tests.support_delivery import (
    SECRET,
    add_readers,
    assert_exactly_once,
    digest_cli,
    digest_popen,
    seed_comparisons,
    seed_for_cli,
    this_week,
)

EXAMPLE = "postmark"  # examples/postmark-provider, installed by `make install-test`
PROVIDERS = [ep.name for ep in entry_points(group=registry.GROUP)]


def test_the_installed_example_provider_is_found_through_its_entry_point() -> None:
    if EXAMPLE not in PROVIDERS:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(
                f"the {EXAMPLE} provider is not installed: `make install-test` installs "
                "examples/postmark-provider, and CI runs the contract on it"
            )
        pytest.skip(f"the {EXAMPLE} example is not installed (pip install -e examples/postmark-provider)")
    assert registry.get(EXAMPLE).name == EXAMPLE
    assert PROVIDERS.index(EXAMPLE) > max(PROVIDERS.index(n) for n in BUILT_IN)  # ours load first


def _harness(name: str) -> Any:
    if name in BUILT_IN:
        return BUILT_IN[name]()
    found = [ep for ep in entry_points(group="digest.provider_harnesses") if ep.name == name]
    if not found:
        pytest.fail(f"provider {name} has no contract harness (entry point group digest.provider_harnesses)")
    return found[0].load()()


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> registry.Provider:
    return registry.get(request.param)


def _project(root: Path, served: Any) -> Path:
    cfg = write_project(root, served.toml)
    if served.overrides:
        cfg.write_text(apply_overrides(cfg.read_text(), served.overrides))
    return cfg


def _sent_ids(rt: Runtime) -> list[tuple[str, str]]:
    with rt.sessions() as s:
        return [
            (d.provider_id, d.email)
            for d in s.scalars(select(Delivery).where(Delivery.status == DeliveryStatus.SENT).order_by(Delivery.id))
        ]


def _status(rt: Runtime, address: str) -> str:
    with rt.sessions() as s:
        return str(s.scalar(select(Subscriber.status).where(Subscriber.email == address)))


def _unconfirmed(rt: Runtime) -> set[str]:
    """Readers in batches the sender could not know the fate of (answer lost, no key to retry under)."""
    with rt.sessions() as s:
        return set(
            s.scalars(
                select(Delivery.email)
                .join(Batch, (Batch.issue_id == Delivery.issue_id) & (Batch.batch_no == Delivery.batch_no))
                .where(Batch.status == BatchStatus.UNCONFIRMED)
            )
        )


def _kill_after(proc: subprocess.Popen[str], served: Any, accepted: int) -> bool:
    """SIGKILL the sender once the provider has accepted `accepted` messages; False if it finished first."""
    deadline = time.monotonic() + 180
    while sum(served.copies().values()) < accepted and proc.poll() is None:
        assert time.monotonic() < deadline, "the sender made no progress"
        time.sleep(0.01)
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    return True


def test_an_issue_reaches_every_reader_exactly_once(provider: registry.Provider, tmp_path: Path, db_url: str) -> None:
    root = tmp_path / "project"
    with _harness(provider.name).serve(root) as served:
        rt = make_runtime(_project(root, served), db_url, **served.env)
        seed_comparisons(rt, published=utcnow() - timedelta(days=1))
        readers = add_readers(rt, 30)
        result = send_week(rt, this_week(rt), manual=True)
        copies = served.copies()
    assert result.summary is not None and result.summary.sent == 30
    assert_exactly_once(copies, readers)
    rt.close()


def test_a_sender_killed_mid_send_resumes_without_repeating_what_went_out(
    provider: registry.Provider, tmp_path: Path, db_url: str
) -> None:
    harness, root = _harness(provider.name), tmp_path / "project"
    with harness.serve(root) as served:
        cfg = _project(root, served)
        rt = make_runtime(cfg, db_url, **served.env)
        readers = seed_for_cli(rt, harness.readers)
        env = {"DIGEST_DATABASE_URL": db_url, "DIGEST_SECRET_KEY": SECRET, **served.env}
        killed = _kill_after(digest_popen(cfg, env, "send"), served, len(readers) // 5)
        final = digest_cli(cfg, env, "send")
        copies = served.copies()
    assert killed, "the send finished before the kill: the harness needs more readers"
    caps, unknown = provider.capabilities, _unconfirmed(rt)
    repeats = sum(n - 1 for n in copies.values() if n > 1)
    # Under a key the provider keeps (or with none, never resent) nobody gets two; a provider recording
    # message by message repeats at most the one in flight.
    allowed = (
        0 if caps.idempotent or caps.key_lifetime_hours == 0 else 1 if caps.per_message_results else caps.max_batch
    )
    assert repeats <= allowed, f"{repeats} repeated message(s) after one kill ({provider.name} allows {allowed})"
    assert set(copies) <= set(readers)
    missing = set(readers) - set(copies)
    assert missing <= unknown, f"{len(missing - unknown)} reader(s) skipped, e.g. {sorted(missing - unknown)[:3]}"
    if not unknown:
        assert final.returncode == 0, final.stdout + final.stderr
    rt.close()


def test_a_signed_bounce_suppresses_and_a_forged_one_changes_nothing(
    provider: registry.Provider, tmp_path: Path, db_url: str
) -> None:
    from digest.web.app import create_app

    root = tmp_path / "project"
    with _harness(provider.name).serve(root) as served:
        rt = make_runtime(_project(root, served), db_url, **served.env)
        seed_comparisons(rt, published=utcnow() - timedelta(days=1))
        add_readers(rt, 3)
        send_week(rt, this_week(rt), manual=True)
        client = TestClient(create_app(rt))
        if provider.webhook is None:  # declared: nothing comes back from it, so there is no route to post to
            assert client.post(f"/webhooks/{provider.name}", content=b"{}").status_code in (404, 405)
            assert not provider.capabilities.reports
            return
        message_id, address = _sent_ids(rt)[0]
        body, headers = served.event("hard_bounce", message_id, address, forged=True)
        refused = client.post(provider.webhook_path, content=body, headers=headers)
        assert refused.status_code == 401 and _status(rt, address) == SubscriberStatus.ACTIVE, refused.text
        body, headers = served.event("hard_bounce", message_id, address)
        applied = client.post(provider.webhook_path, content=body, headers=headers)
        assert applied.status_code == 200, applied.text
        assert _status(rt, address) == SubscriberStatus.BOUNCED
        assert "bounced" in provider.capabilities.reports
    rt.close()


def test_the_core_names_no_installed_provider() -> None:
    """A provider is one package: nothing of the example lives in digest/ or subscribers/."""
    root = Path(__file__).resolve().parent.parent
    found = [
        str(p.relative_to(root))
        for folder in ("digest", "subscribers")
        for p in (root / folder).rglob("*")
        if p.is_file()
        and p.suffix in (".py", ".toml", ".html", ".txt", ".md", ".j2", ".mjml")
        and EXAMPLE in p.read_text(encoding="utf-8", errors="replace").lower()
    ]
    assert not found, f"{EXAMPLE} is named in the core: {found}"
