"""The layers of DESIGN.md hold: `lint-imports` checks the contract in pyproject.toml.

The second test proves the check has teeth: the same contract over a copy of the code with one
upward import (delivery importing the subscriber lifecycle) is reported broken.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "lint-imports"
    cmd = [str(exe)] if exe.exists() else [shutil.which("lint-imports") or "lint-imports"]
    return subprocess.run([*cmd, "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300)


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


def _layered() -> set[str]:
    import tomllib

    contract = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    return {name.strip() for layer in contract["layers"] for name in layer.split(":")}


def _modules(folder: Path, prefix: str, layered: set[str]) -> set[str]:
    """The modules and packages in `folder`; a package the contract splits across layers (digest.providers:
    its registry beside the config, each provider beside the entry points) counts by what it holds."""
    found = set()
    for p in folder.iterdir():
        if (p.suffix == ".py" and p.stem not in ("__init__", "__main__")) or (p / "__init__.py").exists():
            name = f"{prefix}.{p.stem}"
            split = p.is_dir() and name not in layered and any(n.startswith(name + ".") for n in layered)
            found |= _modules(p, name, layered) if split else {name}
    return found


def test_every_module_is_in_a_layer() -> None:
    """A module the contract does not name may import anything: each of digest's modules and packages
    (and the subscriber lifecycle) has its place, so a new one cannot be left out."""
    layered = _layered()
    found = _modules(ROOT / "digest", "digest", layered)
    assert "subscribers" in layered
    assert found - layered == set(), f"not in a layer of the import contract: {sorted(found - layered)}"


def test_a_foundation_importing_delivery_breaks_the_contract(tmp_path: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for pkg in ("digest", "subscribers"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    runtime = tmp_path / "digest" / "runtime.py"
    runtime.write_text(runtime.read_text() + "\nimport digest.delivery.sender  # noqa: E402\n")
    run = _lint_imports(tmp_path)
    assert run.returncode != 0 and "digest.runtime -> digest.delivery.sender" in run.stdout, run.stdout
