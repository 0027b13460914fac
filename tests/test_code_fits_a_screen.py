"""The code reads in one screen per function and a sitting per module: no function of `digest/` or
`subscribers/` is over 60 lines and no module over 400, unless its docstring says why ("long because").

Migrations aside: each is a record of one schema change, kept as it was written.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

FUNCTION_LIMIT = 60
MODULE_LIMIT = 400
FOLDERS = ("digest", "subscribers")


def _sources() -> list[Path]:
    return [p for folder in FOLDERS for p in sorted((ROOT / folder).rglob("*.py")) if "migrations" not in p.parts]


def _says_why(node: ast.AST) -> bool:
    return "long because" in (ast.get_docstring(node) or "").lower()  # type: ignore[arg-type]


def long_functions(paths: list[Path], base: Path = ROOT) -> list[str]:
    out = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > FUNCTION_LIMIT and not _says_why(node):
                    out.append(f"{path.relative_to(base)}:{node.lineno} {node.name} ({length} lines)")
    return out


def long_modules(paths: list[Path]) -> list[str]:
    out = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MODULE_LIMIT and not _says_why(ast.parse(text)):
            out.append(f"{path.relative_to(ROOT)} ({lines} lines)")
    return out


def test_no_function_is_over_60_lines_without_a_reason() -> None:
    assert long_functions(_sources()) == []


def test_no_module_is_over_400_lines_without_a_reason() -> None:
    assert long_modules(_sources()) == []


def test_the_guard_finds_a_long_function_and_accepts_a_reason(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    bare = tmp_path / "bare.py"
    bare.write_text(f"def f():\n{body}\n")
    told = tmp_path / "told.py"
    told.write_text(f'def f():\n    """Long because a table reads best whole."""\n{body}\n')
    assert long_functions([bare, told], base=tmp_path) == ["bare.py:1 f (62 lines)"]
