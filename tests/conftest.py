"""Shared fixtures. Every storage-touching test runs on SQLite and on PostgreSQL.

PostgreSQL: a throwaway database per test run on 127.0.0.1:5432 is migrated once
and used as a template; each test gets a fresh clone. With CI=true an unreachable
PostgreSQL (or a missing Chromium) fails the run instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from sqlalchemy import create_engine, text

from digest.config import load_config
from digest.runtime import Runtime, open_runtime
from digest.storage.db import make_engine, upgrade

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples" / "comparisons"
IN_CI = os.environ.get("CI", "").lower() == "true"
# Property tests explore new examples on every local run (and keep what failed in .hypothesis/);
# in CI they run the same derandomized examples every time, so a submission's result is repeatable.
# A case a local run finds goes into the test as an @example.
settings.register_profile("ci", derandomize=True, database=None)
if IN_CI:
    settings.load_profile("ci")
PG_ADMIN_URL = os.environ.get("DIGEST_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
RUN_ID = uuid.uuid4().hex[:8]
TEST_OUTPUT = ROOT / "test-output"


def _pg_admin():
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


def _pg_available() -> str | None:
    try:
        eng = _pg_admin()
        with eng.connect() as c:
            c.execute(text("select 1"))
        eng.dispose()
        return None
    except Exception as exc:  # noqa: BLE001
        return str(exc).splitlines()[0]


def require_or_skip(reason: str | None, what: str) -> None:
    """Skip locally when a real component is missing; fail in CI."""
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI: {reason}")
    pytest.skip(f"{what} not available: {reason}")


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    require_or_skip(_pg_available(), "PostgreSQL on 127.0.0.1:5432")
    name = f"digest_test_{RUN_ID}_tpl"
    admin = _pg_admin()
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    eng = make_engine(url)
    upgrade(eng)
    eng.dispose()
    yield name
    with admin.connect() as c:
        names = [
            db
            for (db,) in c.execute(
                text("SELECT datname FROM pg_database WHERE datname LIKE :p"), {"p": f"digest_test_{RUN_ID}%"}
            ).all()
        ]
    admin.dispose()
    _drop_databases(names)


def _drop_databases(names: list[str]) -> None:
    """Drop this run's databases on a few connections at once: one at a time took minutes at the session's end."""
    from concurrent.futures import ThreadPoolExecutor

    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_size=4, max_overflow=0)

    def drop(name: str) -> None:
        with engine.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(drop, names))
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tpl") / "template.db"
    eng = make_engine(f"sqlite:///{path}")
    upgrade(eng)
    eng.dispose()  # the last connection to close checkpoints the WAL into the file
    return path


def fresh_pg_url(template: str) -> str:
    name = f"digest_test_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    admin = _pg_admin()
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def database_at(request: pytest.FixtureRequest, tmp_path: Path, revision: str) -> str:
    """The URL of a new database of the request's kind (`request.param`) migrated to `revision` only: the
    schema as an older release left it, for a migration's test to fill and upgrade."""
    from alembic import command

    from digest.storage.db import _alembic_config

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        request.getfixturevalue("pg_template")  # PostgreSQL is there; its teardown drops this run's databases
        name = f"digest_test_{RUN_ID}_{uuid.uuid4().hex[:8]}"
        admin = _pg_admin()
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    command.upgrade(_alembic_config(engine), revision)
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of each kind (tests using it run twice)."""
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        target = tmp_path / "var" / "digest.db"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(template, target)
        return f"sqlite:///{target}"
    return fresh_pg_url(request.getfixturevalue("pg_template"))


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    target = tmp_path / "var" / "digest.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(sqlite_template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def pg_url(pg_template: str) -> str:
    return fresh_pg_url(pg_template)


def write_project(root: Path, extra_toml: str = "") -> Path:
    """A project folder: config.toml (+ overrides), the repo's templates and samples."""
    root.mkdir(parents=True, exist_ok=True)
    cfg = (ROOT / "config.toml").read_text()
    cfg = cfg.replace('dir = "templates/email"', f'dir = "{ROOT / "templates" / "email"}"')
    (root / "config.toml").write_text(cfg + "\n" + extra_toml)
    if not (root / "samples").exists():
        (root / "samples").symlink_to(ROOT / "samples")
    return root / "config.toml"


def apply_overrides(config_text: str, overrides: dict[str, dict[str, object]]) -> str:
    """Replace `key = value` lines inside [section]s of config.toml text."""
    import json
    import re

    for section, values in overrides.items():
        for key, value in values.items():
            literal = json.dumps(value) if not isinstance(value, bool) else ("true" if value else "false")
            pattern = re.compile(rf"(\[{re.escape(section)}\][^\[]*?^){re.escape(key)} = [^#\n]*", re.M | re.S)
            new, n = pattern.subn(lambda m: f"{m.group(1)}{key} = {literal} ", config_text, count=1)
            if n == 0:
                raise KeyError(f"{section}.{key} not in config.toml")
            config_text = new
    return config_text


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "project")


def make_runtime(config_path: Path, db: str, **env: str) -> Runtime:
    environ = {"DIGEST_DATABASE_URL": db, "DIGEST_SECRET_KEY": "test-secret-key-0123456789", **env}
    return open_runtime(load_config(config_path, env=environ))


@pytest.fixture
def rt(project: Path, db_url: str) -> Iterator[Runtime]:
    """A runtime on a fresh database (SQLite and PostgreSQL) with the outbox transport."""
    runtime = make_runtime(project, db_url)
    yield runtime
    runtime.close()


@pytest.fixture
def chromium_path() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    require_or_skip(None if os.path.exists(path) else "no /usr/bin/chromium (apt-get install chromium)", "Chromium")
    return path


CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser(chromium_path: str) -> Iterator[Any]:
    """A headless Chromium (Debian's) through Playwright, closed after the test."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def output_dir(name: str) -> Path:
    """Where tests save screenshots and artefacts a person looks at."""
    d = TEST_OUTPUT / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def pytest_itemcollected(item: pytest.Item) -> None:
    """Under pytest-xdist (`make test`): a module's tests that share a module-scoped fixture (a server, a
    fuzzed app per database) run on one worker, so it is set up once and not on every worker, nor again
    whenever a worker's next test has the other parameter. Marked here, as each item is collected:
    xdist reads the marks in its own pytest_collection_modifyitems."""
    if not hasattr(item.config, "workerinput") or item.get_closest_marker("xdist_group"):
        return
    info = getattr(item, "_fixtureinfo", None)
    module = getattr(item, "module", None)
    if info is None or module is None:
        return
    if any(
        d.scope == "module" and d.baseid == item.nodeid.split("::")[0]
        for defs in info.name2fixturedefs.values()
        for d in defs
    ):
        item.add_marker(pytest.mark.xdist_group(module.__name__))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist the queue starts with the packaging pair, then the other `slow` tests (longest
    first keeps one worker from finishing alone while the others idle); a serial run keeps the file order."""
    if not hasattr(config, "workerinput"):
        return

    def rank(item: pytest.Item) -> int:
        group = item.get_closest_marker("xdist_group")
        if group is not None and group.args[:1] == ("packaging",):
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=rank)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    """Show that storage tests really ran on both databases."""
    counts: dict[str, dict[str, int]] = {"sqlite": {}, "postgresql": {}}
    for outcome in ("passed", "failed", "skipped", "error"):
        for rep in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(rep, "nodeid", "")
            for db in counts:
                if f"[{db}" in nodeid or f"-{db}]" in nodeid or f"-{db}-" in nodeid:
                    counts[db][outcome] = counts[db].get(outcome, 0) + 1
    for db, c in counts.items():
        if c:
            terminalreporter.write_line(
                f"storage tests on {db}: " + ", ".join(f"{n} {o}" for o, n in sorted(c.items()))
            )
