"""The layers of DESIGN.md hold: `lint-imports` checks the contract in pyproject.toml.

The second test proves the check has teeth: the same contract over a copy of the code with one
upward import (delivery importing the subscriber lifecycle) is reported broken.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tools.layers import ROOT, layers, lint_imports, modules, split_packages, unplaced


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return lint_imports(cwd)


def test_layers_contract_is_kept() -> None:
    run = _lint_imports(ROOT)
    assert run.returncode == 0, f"import contract broken:\n{run.stdout}\n{run.stderr}"


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for pkg in ("digest", "subscribers"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    ratelimit = tmp_path / "digest" / "delivery" / "ratelimit.py"
    ratelimit.write_text(ratelimit.read_text() + "\nimport subscribers.lifecycle  # noqa: E402\n")
    run = _lint_imports(tmp_path)
    assert run.returncode != 0, run.stdout
    assert "digest.delivery.ratelimit -> subscribers.lifecycle" in run.stdout, run.stdout


def test_every_module_is_in_a_layer() -> None:
    """A module the contract does not name may import anything: each module of digest and the
    subscriber lifecycle has its place, so a new one cannot be left out."""
    assert unplaced(ROOT) == [], f"not in a layer of the import contract: {unplaced(ROOT)}"


def test_a_new_module_outside_every_layer_is_reported(tmp_path: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for pkg in ("digest", "subscribers"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "digest" / "stray.py").write_text('"""Nobody placed me."""\n')
    assert unplaced(tmp_path) == ["digest.stray"]


def test_the_layer_check_prints_every_module_and_passes() -> None:
    """`python -m tools.layers`: the check anyone runs from the checkout (README, .ci/run)."""
    run = subprocess.run([sys.executable, "-m", "tools.layers"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    printed = {line.strip() for line in run.stdout.splitlines() if line.startswith("    ")}
    split = split_packages(layers(ROOT))
    assert set(modules(ROOT)) - {"digest", "subscribers"} - split <= printed
    assert "split across layers (placed by their modules): digest.providers" in run.stdout
    assert "digest.delivery.ratelimit" in printed and "subscribers.lifecycle" in printed


def test_a_foundation_importing_delivery_breaks_the_contract(tmp_path: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for pkg in ("digest", "subscribers"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    runtime = tmp_path / "digest" / "runtime.py"
    runtime.write_text(runtime.read_text() + "\nimport digest.delivery.loop  # noqa: E402\n")
    run = _lint_imports(tmp_path)
    assert run.returncode != 0 and "digest.runtime -> digest.delivery.loop" in run.stdout, run.stdout
