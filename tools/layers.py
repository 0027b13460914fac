"""Print the layer of every module, then check that no import goes up: `python -m tools.layers`.

The layers are the import contract in pyproject.toml ([tool.importlinter]); `lint-imports` checks
the imports. This adds what lint-imports does not say: where each module sits, and that none is
left out (a module the contract does not name could import anything).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _importlinter(root: Path) -> dict[str, Any]:
    """The [tool.importlinter] table of the checkout's pyproject.toml."""
    table: dict[str, Any] = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["importlinter"]
    return table


def layers(root: Path = ROOT) -> list[list[str]]:
    """The contract's layers, top first; each a list of module prefixes (siblings)."""
    contract = _importlinter(root)["contracts"][0]
    return [[name.strip() for name in layer.split(":")] for layer in contract["layers"]]


def modules(root: Path = ROOT) -> list[str]:
    """Every module of the root packages, as a dotted name (packages by their __init__)."""
    found = []
    for package in _importlinter(root)["root_packages"]:
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" in path.parts:  # Alembic's scripts: loaded by Alembic, never imported
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found.append(".".join(parts))
    return found


def layer_of(module: str, contract: list[list[str]]) -> tuple[int, str] | None:
    """(layer index, the contract entry) naming `module`: the longest entry it is or sits under."""
    best: tuple[int, str] | None = None
    for index, layer in enumerate(contract):
        for entry in layer:
            if (module == entry or module.startswith(entry + ".")) and (best is None or len(entry) > len(best[1])):
                best = (index, entry)
    return best


def unplaced(root: Path = ROOT) -> list[str]:
    """Modules no layer names (package roots such as `digest` itself aside)."""
    contract = layers(root)
    roots = set(_importlinter(root)["root_packages"])
    return [m for m in modules(root) if m not in roots | split_packages(contract) and layer_of(m, contract) is None]


def split_packages(contract: list[list[str]]) -> set[str]:
    """Packages the contract splits across layers (digest.providers: its registry beside the config, each
    provider beside the entry points): placed by their modules; their __init__ holds no code to place."""
    entries = {entry for layer in contract for entry in layer}
    return {e.rpartition(".")[0] for e in entries if e.count(".") > 1} - entries


def lint_imports(root: Path = ROOT) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "lint-imports"
    cmd = [str(exe)] if exe.exists() else [shutil.which("lint-imports") or "lint-imports"]
    return subprocess.run([*cmd, "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300)


def main() -> int:
    contract = layers()
    by_layer: dict[int, list[str]] = {}
    for module in modules():
        placed = layer_of(module, contract)
        by_layer.setdefault(placed[0] if placed else -1, []).append(module)
    for index, layer in enumerate(contract):
        print(f"layer {index + 1}: {' : '.join(layer)}")
        for module in by_layer.get(index, []):
            print(f"    {module}")
    split = sorted(split_packages(contract) & set(modules()))
    if split:
        print(f"split across layers (placed by their modules): {', '.join(split)}")
    missing = unplaced()
    if missing:
        print(f"error: not in any layer of the import contract (pyproject.toml): {', '.join(missing)}")
    run = lint_imports()
    if run.returncode != 0:
        print(run.stdout, run.stderr, sep="\n")
        print("error: an import goes up a layer (above)")
    else:
        print("imports: no module imports from a layer above its own")
    return 1 if missing or run.returncode != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
