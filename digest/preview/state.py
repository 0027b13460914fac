"""The preview server's live state: current settings, the render cache, and the reload watcher.

config.toml is re-read when it changes; a broken edit keeps the last good settings and is
shown in the page. Templates are watched with watchfiles; every relevant change bumps
`version`, which open pages follow over server-sent events and reload on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

from digest.config import load_config
from digest.errors import ConfigError
from digest.preview.build import PreviewCache
from digest.runtime import Runtime
from digest.weeks import Week, current_week

log = logging.getLogger("digest.preview")


@dataclass
class PreviewState:
    rt: Runtime
    fixed_week: Week | None = None
    loopback_only: bool = True
    access_token: str | None = None  # off loopback: every request carries it (digest/preview/access.py)
    cache: PreviewCache = field(default_factory=PreviewCache)
    config_generation: int = 0
    config_error: str | None = None
    restart_note: str | None = None
    version: int = 0
    closing: bool = False
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    notices: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (level, text)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def week(self, key: str | None = None) -> Week:
        if key:
            return Week.parse(key)
        return self.fixed_week or current_week(self.rt.settings.schedule)

    @property
    def templates_dir(self) -> Path:
        return self.rt.config.templates_dir

    @property
    def config_path(self) -> Path:
        return self.rt.config.path

    def reload_config(self) -> None:
        """Re-read config.toml; keep the last good settings when the new ones are invalid."""
        old = self.rt
        try:
            config = load_config(old.config.path, env=old.config.env)
        except ConfigError as exc:
            self.config_error = str(exc)
            log.warning("config.toml not reloaded: %s", exc)
            return
        self.config_error = None
        self.restart_note = (
            None
            if config.database_url == old.config.database_url
            else "the database setting changed: restart `digest preview` to use the new database"
        )
        with self._lock:
            self.rt = dataclasses.replace(old, config=config)  # same engine and sessions
            self.config_generation += 1

    def notice(self, level: str, text: str) -> str:
        """Remember a message for the page after a POST-redirect; returns its id."""
        key = secrets.token_urlsafe(6)
        self.notices[key] = (level, text)
        while len(self.notices) > 50:
            self.notices.pop(next(iter(self.notices)))
        return key

    def bump(self) -> None:
        self.version += 1


class Reloader:
    """Watch the templates folder (recursive) and config.toml; bump the state's version on change."""

    def __init__(self, state: PreviewState, *, step_ms: int = 50):
        self.state = state
        self.step_ms = step_ms
        self._changed = asyncio.Event()
        self._stop = asyncio.Event()
        self._restart_templates = asyncio.Event()

    def _bump(self) -> None:
        self.state.bump()
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, seen: int, timeout: float) -> None:
        """Return when the version differs from `seen`, or after `timeout` seconds."""
        if self.state.version != seen:
            return
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass

    def stop(self) -> None:
        self._stop.set()
        self._restart_templates.set()

    async def run(self) -> None:
        await asyncio.gather(self._watch_config(), self._watch_templates())

    async def _watch_config(self) -> None:
        from watchfiles import awatch

        path = self.state.config_path
        name = path.name

        def only_config(_change: object, changed: str) -> bool:
            return Path(changed).name == name

        async for _ in awatch(
            path.parent,
            watch_filter=only_config,
            recursive=False,
            stop_event=self._stop,
            debounce=400,
            step=self.step_ms,
            rust_timeout=500,
        ):
            before = self.state.templates_dir
            self.state.reload_config()
            if self.state.templates_dir != before:
                self._restart_templates.set()
            self._bump()

    async def _watch_templates(self) -> None:
        from watchfiles import awatch

        while not self._stop.is_set():
            folder = self.state.templates_dir
            if not folder.is_dir():  # shown in the page as a template error; wait for it to appear
                await self._sleep_or_stop(0.5)
                continue
            self._restart_templates = asyncio.Event()
            stop = self._restart_templates
            try:
                async for _ in awatch(folder, stop_event=stop, debounce=400, step=self.step_ms, rust_timeout=500):
                    self._bump()
            except FileNotFoundError:  # the folder went away while watched
                self._bump()
                await self._sleep_or_stop(0.5)

    async def _sleep_or_stop(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass
