"""Build the public FastAPI app. Each part contributes a router; this module only assembles them."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from digest.runtime import Runtime
from digest.web import archive, clicks, forms, health, openapi, preferences, signup, unsubscribe
from digest.web.bodylimit import BodyLimit
from subscribers import webhooks

# Every router of the public app. The access log reads their paths for token parameters (accesslog.py),
# so a route added here is redacted there without a second list to keep.
ROUTERS: tuple[APIRouter, ...] = (
    signup.router,  # sign-up, confirm, embed
    unsubscribe.router,  # /u/<token>: the unsubscribe page and RFC 8058 one-click
    preferences.router,  # /preferences/<token>: topics, frequency, pause
    webhooks.router,  # POST /webhooks/<provider>, for each provider that declares a webhook
    archive.router,  # /archive, /archive/<week>, /archive.xml
    health.router,  # /healthz
    clicks.router,  # /c/<token>: tracked links; /o/<token>: the open pixel
    openapi.router,  # /openapi.json: the public API, described for integrators
)


def create_app(rt: Runtime) -> FastAPI:
    """Every router reads the Runtime from `request.app.state.rt`."""
    app = FastAPI(title=rt.settings.site.name, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.rt = rt
    for router in ROUTERS:
        app.include_router(router)
    signup.setup_app(app, rt)  # CORS for the allowed origins, the confirmation-mail drainer
    clicks.setup_clicks(app, rt)  # the click recorder: written in batches, and at shutdown
    # Added last, so it wraps every route and middleware: no body is buffered past its limit.
    app.add_middleware(BodyLimit, default=forms.MAX_BODY, prefixes={"/webhooks/": webhooks.MAX_BODY})
    return app
