"""A migration is a record of one schema change: it must mean the same when live code changes later,
so no migration script imports the project's own modules (it copies what it needs)."""

from __future__ import annotations

import ast

from tests.conftest import ROOT

VERSIONS = ROOT / "digest" / "storage" / "migrations" / "versions"
OWN = ("digest", "subscribers")


def _own_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
        found += [n for n in names if n.split(".")[0] in OWN]
    return found


def test_no_migration_imports_live_code() -> None:
    scripts = sorted(VERSIONS.glob("*.py"))
    assert scripts, "no migration scripts found"
    offenders = {p.name: _own_imports(p.read_text(encoding="utf-8")) for p in scripts}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_check_sees_an_import_inside_a_function() -> None:
    assert _own_imports("def upgrade():\n    from subscribers.addresses import normalize_email\n") == [
        "subscribers.addresses"
    ]
