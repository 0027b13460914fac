"""`digest init [DIR]`, `digest --version`, and a config without templates.dir using the packaged templates."""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from digest import defaults
from digest.config import load_config
from digest.web.pages import web_templates_dir
from tests.conftest import ROOT, apply_overrides


def digest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "RESEND_"))}
    return subprocess.run(
        [sys.executable, "-m", "digest", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )


def packaged(kind: str) -> dict[str, bytes]:
    root = defaults.TEMPLATES / kind
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def copied(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_init_writes_the_config_and_the_templates_to_edit(tmp_path: Path) -> None:
    target = tmp_path / "newsletter"
    result = digest(tmp_path, "init", str(target))
    assert result.returncode == 0, result.stderr
    assert (target / "config.toml").read_bytes() == defaults.CONFIG.read_bytes()
    assert "# Weekly AI Tool Verdicts" in (target / "config.toml").read_text()  # commented
    assert copied(target / "templates" / "email") == packaged("email")
    assert copied(target / "templates" / "web") == packaged("web")
    assert not (target / "templates" / "preview").exists()  # the preview's pages are not the operator's
    lines = result.stdout.splitlines()
    assert lines[0].startswith("wrote config.toml, templates/email/")
    assert f"  cd {target}" in lines
    commands = [line.split("#")[0].strip() for line in lines if line.startswith("  digest ")]
    assert commands == ["digest demo", "digest doctor", "digest serve"]
    config = load_config(target / "config.toml", env={})
    assert config.templates_dir == target / "templates" / "email"  # the copies are the ones used
    assert web_templates_dir(config) == target / "templates" / "web"


def test_init_here_prints_no_cd(tmp_path: Path) -> None:
    result = digest(tmp_path, "init")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "config.toml").is_file() and "  cd " not in result.stdout


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("# mine\n")
    result = digest(tmp_path, "init", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {tmp_path}: config.toml already exists; nothing was written "
        "(--force overwrites the config and the packaged template files)"
    )
    assert "Traceback" not in result.stderr
    assert (tmp_path / "config.toml").read_text() == "# mine\n"
    assert not (tmp_path / "templates").exists()

    edited = tmp_path / "other"
    (edited / "templates" / "email").mkdir(parents=True)
    (edited / "templates" / "email" / "digest.mjml.j2").write_text("edited")
    result = digest(tmp_path, "init", str(edited))
    assert result.returncode == 2 and "templates/email already exists" in result.stderr
    assert (edited / "templates" / "email" / "digest.mjml.j2").read_text() == "edited"
    assert not (edited / "config.toml").exists()


def test_init_force_overwrites_the_shipped_files_and_keeps_the_operators_own(tmp_path: Path) -> None:
    assert digest(tmp_path, "init").returncode == 0
    (tmp_path / "config.toml").write_text("# mine\n")
    (tmp_path / "templates" / "email" / "digest.mjml.j2").write_text("edited")
    (tmp_path / "templates" / "email" / "_extra.j2").write_text("my partial")
    result = digest(tmp_path, "init", "--force")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "config.toml").read_bytes() == defaults.CONFIG.read_bytes()
    assert (tmp_path / "templates" / "email" / "digest.mjml.j2").read_bytes() == packaged("email")["digest.mjml.j2"]
    assert (tmp_path / "templates" / "email" / "_extra.j2").read_text() == "my partial"


def test_init_into_a_file_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    result = digest(tmp_path, "init", "taken")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'taken'}: exists and is not a folder"


def test_version(tmp_path: Path) -> None:
    result = digest(tmp_path, "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"digest {version('weekly-ai-tool-verdicts')}"


def test_a_config_without_templates_dir_uses_the_packaged_templates(tmp_path: Path) -> None:
    config_text = apply_overrides(defaults.CONFIG.read_text(), {"templates": {"dir": ""}})
    (tmp_path / "config.toml").write_text(config_text)
    config = load_config(tmp_path / "config.toml", env={})
    assert config.templates_dir == defaults.EMAIL_TEMPLATES
    assert web_templates_dir(config) == defaults.WEB_TEMPLATES
    (tmp_path / "minimal.toml").write_text('[site]\nname = "Minimal"\n')  # no [templates] at all
    assert load_config(tmp_path / "minimal.toml", env={}).templates_dir == defaults.EMAIL_TEMPLATES

    result = digest(tmp_path, "demo")  # no templates/ and no samples/ here: both come with the package
    assert result.returncode == 0, result.stdout + result.stderr
    files = sorted((tmp_path / "var" / "outbox").rglob("*.eml"))
    assert len(files) == 3
    msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert msg.get_body(("html",)) is not None and "Cursor Background Agents" in msg["Subject"]
