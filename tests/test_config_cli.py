"""Bad config and bad CLI input: one clear line, exit status 2, no traceback, nothing changed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from digest.config import load_config
from digest.errors import ConfigError
from tests.conftest import SAMPLES, apply_overrides, write_project


def run_cli(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    environ.update({"DIGEST_SECRET_KEY": "cli-test-secret-key", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        cwd=config.parent,
    )


def _with(project: Path, section: str, key: str, value: object) -> Path:
    project.write_text(apply_overrides(project.read_text(), {section: {key: value}}))
    return project


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("schedule", "day", "funday", "config.toml: schedule.day: 'funday' is not a weekday"),
        ("schedule", "time", "25:00", "config.toml: schedule.time: '25:00' is not a time of day"),
        (
            "schedule",
            "timezone",
            "Mars/Olympus",
            "config.toml: schedule.timezone: 'Mars/Olympus' is not an IANA time zone",
        ),
        ("transport", "kind", "pigeon", "config.toml: transport.kind: 'pigeon' is not a transport (outbox, resend"),
        ("selection", "max_items", 0, "config.toml: selection.max_items: 0"),
        ("subscribe", "confirmations_per_hour", 0, "config.toml: subscribe.confirmations_per_hour: 0"),
        ("subscribe", "per_ip_per_hour", 0, "config.toml: subscribe.per_ip_per_hour: 0"),
        (
            "sender",
            "from_email",
            "not-an-address",
            "config.toml: sender.from_email: 'not-an-address' is not an email address",
        ),
        ("site", "public_url", "ftp://x", "config.toml: site.public_url: 'ftp://x' is not an http(s) URL"),
        ("tracking", "repeat_seconds", 0, "config.toml: tracking.repeat_seconds: 0"),
    ],
)
def test_bad_setting_is_one_clear_line(project: Path, section: str, key: str, value: object, message: str) -> None:
    _with(project, section, key, value)
    with pytest.raises(ConfigError) as exc:
        load_config(project, env={})
    assert str(exc.value).startswith(message)
    result = run_cli(project, "comparisons", "list")
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"error: {message}")
    assert "Traceback" not in result.stderr + result.stdout
    assert not (project.parent / "var" / "digest.db").exists()  # nothing was created


def test_unknown_setting_and_bad_toml(project: Path) -> None:
    project.write_text(project.read_text() + "\n[site2]\nx = 1\n")
    with pytest.raises(ConfigError, match=r"^config.toml: site2: unknown setting"):
        load_config(project, env={})
    project.write_text("[site\nname = 1")
    with pytest.raises(ConfigError, match=r"^config.toml: not valid TOML"):
        load_config(project, env={})


def test_environment_overrides(project: Path) -> None:
    cfg = load_config(project, env={"DIGEST_TRANSPORT": "smtp", "DIGEST_DATABASE_URL": "postgresql+psycopg://x@h/db"})
    assert cfg.transport_kind == "smtp" and cfg.database_url.startswith("postgresql")
    with pytest.raises(ConfigError, match="DIGEST_TRANSPORT: 'fax' is not a transport"):
        load_config(project, env={"DIGEST_TRANSPORT": "fax"})


def test_relative_paths_resolve_against_the_config_folder(project: Path) -> None:
    cfg = load_config(project, env={})
    assert cfg.database_url == f"sqlite:///{project.parent / 'var' / 'digest.db'}"
    assert cfg.outbox_dir == project.parent / "var" / "outbox"


def test_missing_config_file(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "nope.toml", "comparisons", "list")
    assert result.returncode == 2 and "config file not found" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["select", "--week", "2026-47"], "week: '2026-47' is not an ISO week key"),
        (["select", "--week", "2026-W54"], "week: '2026-W54' does not exist"),
        (["send", "--week", "nonsense"], "week: 'nonsense' is not an ISO week key"),
        (["send", "--week", "2099-W01"], "week: 2099-W01 is in the future"),
        (["ingest", str(SAMPLES), "--published", "2026-13-45"], "--published: '2026-13-45' is not a date"),
        (["select", "--pin", "no-such-slug"], "--pin: unknown comparison slug 'no-such-slug'"),
        (["select", "--exclude", "nope"], "--exclude: unknown comparison slug 'nope'"),
        (["subscribers", "add", "not-an-email"], "email: 'not-an-email' is not a valid address"),
    ],
)
def test_bad_cli_input_exits_2_without_traceback(project: Path, args: list[str], message: str) -> None:
    result = run_cli(project, *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: {message}" or result.stderr.strip().startswith(f"error: {message}")
    assert "Traceback" not in result.stderr + result.stdout


def test_ingest_cli_stores_good_files_and_reports_bad_ones(tmp_path: Path) -> None:
    config = write_project(tmp_path / "p")
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "good.txt").write_text(SAMPLES.joinpath("cursor-background-agents-vs-smollm3.txt").read_text())
    lines = SAMPLES.joinpath("cursor-background-agents-vs-mistral-3-small.txt").read_text().split("\n")
    (folder / "truncated.txt").write_text("\n".join(lines[:20]))
    result = run_cli(config, "ingest", str(folder), "--published", "2026-11-16")
    assert result.returncode == 1
    assert f"{folder / 'truncated.txt'}:" in result.stdout and "expected" in result.stdout
    assert "1 added" in result.stdout
    listed = run_cli(config, "comparisons", "list", "--json")
    import json

    data = json.loads(listed.stdout)
    assert [d["slug"] for d in data] == ["cursor-background-agents-vs-smollm3"]
    assert len(data[0]["quotes"]) == 8 and data[0]["published_at"].startswith("2026-11-16")
    again = run_cli(config, "ingest", str(folder / "good.txt"))
    assert again.returncode == 0 and "0 added, 0 updated, 1 unchanged" in again.stdout


def test_demo_twice_writes_files_once(tmp_path: Path) -> None:
    import email
    import email.policy

    config = write_project(tmp_path / "p")
    first = run_cli(config, "demo")
    assert first.returncode == 0, first.stderr
    outbox = tmp_path / "p" / "var" / "outbox"
    files = list(outbox.rglob("*.eml"))
    assert len(files) == 3
    for f in files:
        msg = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        assert msg.get_body(("plain",)) is not None and msg.get_body(("html",)) is not None
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    second = run_cli(config, "demo")
    assert second.returncode == 0, second.stderr
    assert "0 new file(s) written" in second.stdout
    assert sorted(outbox.rglob("*.eml")) == sorted(files)
