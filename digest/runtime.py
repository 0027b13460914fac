"""The objects every command needs, built once from the config: no module-level globals."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from digest.config import Config, Settings, load_config
from digest.storage.db import is_postgres, make_engine, make_session_factory, upgrade


@dataclass
class Runtime:
    config: Config
    engine: Engine
    sessions: sessionmaker[Session]
    _secret: str | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        return self.config.settings

    @property
    def secret_key(self) -> str:
        if self._secret is None:
            self._secret = self.config.secret_key
        return self._secret

    @property
    def on_postgres(self) -> bool:
        return is_postgres(self.engine)

    @property
    def outbox_dir(self) -> Path:
        return self.config.outbox_dir

    def close(self) -> None:
        self.engine.dispose()


def open_runtime(config: Config | str | Path | None = None, *, migrate: bool = True) -> Runtime:
    """Load config, connect, and bring a new database up to the current schema."""
    if not isinstance(config, Config):
        config = load_config(config)
    engine = make_engine(config.database_url)
    if migrate:
        upgrade(engine)
    return Runtime(config=config, engine=engine, sessions=make_session_factory(engine))
