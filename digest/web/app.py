"""Build the public FastAPI app. Each part contributes a router; this module only assembles them."""

from __future__ import annotations

import importlib
import importlib.util

from fastapi import FastAPI

from digest.runtime import Runtime

# (module, attribute): each module exposes `router` (an APIRouter) that reads the Runtime from
# `request.app.state.rt`. Missing modules are skipped so parts can land one at a time.
ROUTERS = [
    ("subscribers.web", "router"),  # sign-up, confirm, unsubscribe, embed
    ("subscribers.webhooks", "router"),  # POST /webhooks/resend
    ("digest.web.archive", "router"),  # /archive, /archive/<week>, /archive.xml
    ("digest.web.health", "router"),  # /healthz
]


def create_app(rt: Runtime) -> FastAPI:
    app = FastAPI(title=rt.settings.site.name, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.rt = rt
    for module_name, attr in ROUTERS:
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        app.include_router(getattr(module, attr))
        setup = getattr(module, "setup_app", None)
        if setup is not None:
            setup(app, rt)  # e.g. CORS middleware, background drainers
    return app
