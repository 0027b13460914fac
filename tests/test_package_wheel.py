"""The wheel is the whole product: built, installed into a fresh virtual environment far from the
checkout, `digest init` in an empty folder, then the demo cycle there fills the outbox."""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Both build a virtual environment with every dependency: one worker takes the pair first (-n with
# --dist loadgroup puts the largest group at the head of the queue), the others run the rest meanwhile.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("packaging")]

# What a source tree copy leaves out: environments, output and anything built before.
SKIP = shutil.ignore_patterns(
    ".git",
    ".venv",
    "var",
    "test-output",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".hypothesis",
    ".mypy_cache",
    ".ruff_cache",
)


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_the_wheel_installs_and_runs_the_demo_in_a_folder_made_by_init(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "RESEND_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    source = tmp_path / "source"  # built from a copy: the build writes nothing into the checkout
    shutil.copytree(ROOT, source, symlinks=True, ignore=SKIP)  # links as in the repository
    run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(source)],
        tmp_path,
        env,
    )
    wheels = list((tmp_path / "dist").glob("weekly_ai_tool_verdicts-*.whl"))
    assert len(wheels) == 1
    shutil.rmtree(source)

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheels[0])], tmp_path, env)
    where = run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import digest, digest.defaults as d; "
            "print(digest.__file__); print(d.EMAIL_TEMPLATES); print(d.PREVIEW_PAGES)",
        ],
        tmp_path,
        env,
    )
    for line in where.stdout.split():
        assert line.startswith(str(venv)) and not line.startswith(str(ROOT)), line
    # The operator preview's pages come with the wheel too (compiled at start-up).
    run([str(venv / "bin" / "python"), "-c", "from digest.preview.pages import Pages; Pages()"], tmp_path, env)

    digest = str(venv / "bin" / "digest")
    version = run([digest, "--version"], tmp_path, env)
    assert version.stdout.startswith("digest 0.")

    site = tmp_path / "site"
    site.mkdir()
    init = run([digest, "init"], site, env)
    assert "digest demo" in init.stdout
    assert (site / "config.toml").is_file() and (site / "templates" / "email" / "digest.mjml.j2").is_file()
    again = subprocess.run([digest, "init"], cwd=site, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already exist" in again.stderr and "Traceback" not in again.stderr

    demo = run([digest, "demo"], site, env)
    assert "3 new file(s) written" in demo.stdout
    files = sorted((site / "var" / "outbox").rglob("*.eml"))
    assert len(files) == 3  # the issue, once per demo reader
    for f in files:
        msg = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        assert msg.get_body(("plain",)) is not None and msg.get_body(("html",)) is not None
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
