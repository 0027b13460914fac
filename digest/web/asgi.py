"""ASGI factory for uvicorn: `uvicorn --factory digest.web.asgi:make_app` (config from DIGEST_CONFIG).

Each uvicorn worker process calls this once: it loads the config, opens (and if needed
migrates) the database and builds the app with every router and background drainer.
"""

from __future__ import annotations

from fastapi import FastAPI

from digest.runtime import open_runtime
from digest.web.accesslog import redact_access_log
from digest.web.app import create_app


def make_app() -> FastAPI:
    """Config path from DIGEST_CONFIG (else ./config.toml); secrets from the environment."""
    redact_access_log()  # uvicorn configured its loggers before calling the factory
    rt = open_runtime()
    rt.secret_key  # noqa: B018 - refuse an empty or short signing key before serving a link
    return create_app(rt)
