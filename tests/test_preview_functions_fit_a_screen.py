"""The preview's code reads in one screen per function: none is over 60 lines unless its docstring
says why ("long because ...")."""

from __future__ import annotations

import ast

from tests.conftest import ROOT

LIMIT = 60


def _long_functions(folder: str) -> list[str]:
    out = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > LIMIT and "long because" not in (ast.get_docstring(node) or ""):
                    out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return out


def test_no_preview_function_is_over_60_lines_without_a_reason() -> None:
    assert _long_functions("digest/preview") == []
