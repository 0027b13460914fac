"""`make demo` on a fresh clone: installs into a new virtual environment and sends once."""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Both build a virtual environment with every dependency: one worker takes the pair first (-n with
# --dist loadgroup puts the largest group at the head of the queue), the others run the rest meanwhile.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("packaging")]


def test_make_demo_on_a_fresh_clone(tmp_path: Path) -> None:
    if shutil.which("make") is None or shutil.which("git") is None:
        pytest.fail("make and git are needed for the fresh-clone demo")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "VIRTUAL_ENV"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    first = subprocess.run(["make", "demo"], cwd=clone, capture_output=True, text=True, timeout=900, env=env)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    files = sorted((clone / "var" / "outbox").rglob("*.eml"))
    assert len(files) == 3  # one per demo subscriber
    for f in files:
        msg = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        assert msg.get_body(("plain",)) is not None and msg.get_body(("html",)) is not None
        assert msg["List-Unsubscribe"] and msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    second = subprocess.run(["make", "demo"], cwd=clone, capture_output=True, text=True, timeout=600, env=env)
    assert second.returncode == 0, second.stderr[-2000:]
    assert sorted((clone / "var" / "outbox").rglob("*.eml")) == files
    assert "0 new file(s) written" in second.stdout
