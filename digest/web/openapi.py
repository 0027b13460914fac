"""`GET /openapi.json`: the public HTTP API of `digest serve`, as FastAPI describes it plus what it cannot see.

The routes read their bodies themselves (form, multipart or JSON on one URL; a webhook's raw
bytes for its signature), so FastAPI cannot infer request bodies or the answers each route
gives. `PUBLIC` adds them: one entry per operation, every status code it can answer and
in which media types. The document is what integrators read for the JSON sign-up API, and
what the schemathesis suite (tests/test_api_fuzz.py) checks the server against: a code or
body not described here is a failing test.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from digest.providers import registry
from digest.web.schema import HTML, JSON_ERROR, PLAIN, TEXT, TOO_LARGE, Schema, answer

router = APIRouter()

_HEALTH: Schema = {"type": "object", "required": ["status"], "properties": {"status": {"enum": ["ok", "error"]}}}


def _form(properties: Schema) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties}
    return {
        "required": False,
        "content": {"application/x-www-form-urlencoded": {"schema": schema}, "multipart/form-data": {"schema": schema}},
    }


_SIGNUP_FIELDS: Schema = {
    "email": {"type": "string", "format": "email", "description": "The address to subscribe."},
    "name": {"type": "string", "description": "Optional; how the emails greet the reader."},
    "source": {"type": "string", "description": "Which form (e.g. `embed`, your own label)."},
    "next": {"type": "string", "description": "Where the no-JS form redirects after success (same site)."},
    "website": {"type": "string", "description": "Honeypot: leave empty."},
    "topics": {
        "type": "string",
        "description": "Optional topic keys (GET /embed/topics) joined by `+`; "
        "a form may send `topic` once per ticked box instead. Applied when the person confirms.",
    },
}
_SIGNUP_OK: Schema = {
    "type": "object",
    "required": ["ok", "message"],
    "properties": {"ok": {"const": True}, "message": {"type": "string"}},
}
_TOKEN = {
    "name": "token",
    "in": "path",
    "required": True,
    "description": "A signed token from an email.",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,300}$"},
}
_BAD_LINK = answer("A forged, garbled or expired link.", PLAIN, HTML)
_PAGE = answer("A page.", HTML)
_ORIGIN = {
    "name": "Origin",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "Sent by browsers; a page on another site is refused (403). Mail clients send none.",
}
_FOREIGN = answer("Sent by a page on another site (its Origin): nothing changed.", PLAIN)
_DEAD_CONFIRM = answer("A forged, expired or no longer valid link: says so and offers a new confirmation.", HTML)

_CORE: dict[tuple[str, str], dict[str, Any]] = {
    ("/subscribe", "get"): {"summary": "The hosted sign-up page.", "responses": {"200": _PAGE}},
    ("/subscribe", "post"): {
        "summary": "Sign up (double opt-in). JSON in (or Accept: application/json) -> JSON out; a form -> 303.",
        "description": "Every accepted sign-up gets the same answer, whatever the address's state.",
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {"schema": {"type": "object", "properties": _SIGNUP_FIELDS, "required": ["email"]}},
                **_form(_SIGNUP_FIELDS)["content"],
            },
        },
        "responses": {
            "200": answer(
                "Accepted: a confirmation email is on its way.", {"application/json": {"schema": _SIGNUP_OK}}
            ),
            "303": {"description": "Accepted (a form post): redirect to the thanks page or `next`."},
            "400": answer("A field is wrong (`field` says which).", JSON_ERROR, HTML),
            "403": answer("The Origin may not use the form.", JSON_ERROR, HTML),
            "413": answer("The body is over the limit.", JSON_ERROR, HTML),
            "415": answer("Not form, multipart or JSON.", JSON_ERROR, HTML),
            "429": answer("Too many sign-ups; see Retry-After.", JSON_ERROR, HTML),
            "503": answer("The database is briefly unavailable.", JSON_ERROR, HTML),
        },
    },
    ("/subscribe/thanks", "get"): {"summary": "“Check your inbox.”", "responses": {"200": _PAGE}},
    ("/embed", "get"): {
        "summary": "The form alone, for an iframe.",
        "parameters": [
            {"name": "done", "in": "query", "required": False, "schema": {"type": "string"}},
            {
                "name": "topics",
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": "`1`: offer the topic boxes.",
            },
        ],
        "responses": {"200": _PAGE},
    },
    ("/embed/origin", "get"): {
        "summary": "May the calling page's origin use the form? (for embed.js)",
        "parameters": [{"name": "Origin", "in": "header", "required": False, "schema": {"type": "string"}}],
        "responses": {
            "200": answer(
                "The verdict.",
                {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["origin", "allowed", "setting"],
                            "properties": {
                                "origin": {"type": ["string", "null"]},
                                "allowed": {"type": "boolean"},
                                "setting": {"type": "string"},
                            },
                        }
                    }
                },
            )
        },
    },
    ("/embed/topics", "get"): {
        "summary": "The topics a sign-up form may offer (embed.js `data-topics`).",
        "responses": {
            "200": answer(
                "Each topic's key (what `topics` takes) and name.",
                {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["topics"],
                            "properties": {
                                "topics": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["key", "name"],
                                        "properties": {"key": {"type": "string"}, "name": {"type": "string"}},
                                    },
                                }
                            },
                        }
                    }
                },
            )
        },
    },
    ("/embed.js", "get"): {
        "summary": "Drop-in script that renders the form.",
        "responses": {"200": answer("JavaScript.", {"application/javascript": {"schema": TEXT}})},
    },
    ("/confirm/{token}", "get"): {
        "summary": "The double opt-in link: a page with a confirm button (changes nothing).",
        "parameters": [_TOKEN],
        "responses": {"200": _PAGE, "400": _DEAD_CONFIRM},
    },
    ("/confirm/{token}", "post"): {
        "summary": "The confirm button: confirms the subscription.",
        "parameters": [_TOKEN],
        "responses": {"200": _PAGE, "400": _DEAD_CONFIRM},
    },
    ("/u/{token}", "get"): {
        "summary": "Unsubscribe / manage page (changes nothing).",
        "parameters": [
            _TOKEN,
            {"name": "done", "in": "query", "required": False, "schema": {"type": "string"}},
            {"name": "manage", "in": "query", "required": False, "schema": {"type": "string"}},
        ],
        "responses": {"200": _PAGE, "400": _BAD_LINK},
    },
    ("/u/{token}", "post"): {
        "summary": "RFC 8058 one-click unsubscribe (`List-Unsubscribe=One-Click`) and the page's buttons.",
        "parameters": [_TOKEN, _ORIGIN],
        "requestBody": _form(
            {
                "List-Unsubscribe": {"type": "string"},
                "action": {"enum": ["unsubscribe", "resubscribe", "reason", "monthly"]},
                "reason": {"type": "string"},
                "reason_text": {"type": "string"},
            }
        ),
        "responses": {
            "200": answer("Unsubscribed (one-click): no redirect.", HTML),
            "303": {"description": "Done: back to the page."},
            "400": _BAD_LINK,
            "403": _FOREIGN,
            "413": answer("The body is over the limit.", PLAIN, JSON_ERROR),
            "415": answer("Not a form.", PLAIN),
        },
    },
    ("/preferences/{token}", "get"): {
        "summary": "The preference centre: topics, frequency, pause (changes nothing).",
        "parameters": [_TOKEN, {"name": "done", "in": "query", "required": False, "schema": {"type": "string"}}],
        "responses": {"200": _PAGE, "400": _BAD_LINK},
    },
    ("/preferences/{token}", "post"): {
        "summary": "Save the preference centre's form.",
        "parameters": [_TOKEN, _ORIGIN],
        "requestBody": _form(
            {
                "topic": {"type": "string"},
                "frequency": {"enum": ["weekly", "monthly"]},
                "pause": {"enum": ["0", "keep", "2", "4", "8"]},
            }
        ),
        "responses": {
            "303": {"description": "Saved (or nothing to change): back to the page."},
            "400": answer("A forged link, or a choice that is not offered (the page says which).", PLAIN, HTML),
            "403": _FOREIGN,
            "413": answer("The body is over the limit.", PLAIN, JSON_ERROR),
            "415": answer("Not a form.", PLAIN),
        },
    },
    ("/archive", "get"): {
        "summary": "Past issues.",
        "responses": {"200": _PAGE, "503": answer("The database is briefly unavailable.", PLAIN)},
    },
    ("/archive/", "get"): {
        "summary": "Past issues.",
        "responses": {"200": _PAGE, "503": answer("The database is briefly unavailable.", PLAIN)},
    },
    ("/archive/{week}", "get"): {
        "summary": "One past issue, as it was sent.",
        "parameters": [
            {
                "name": "week",
                "in": "path",
                "required": True,
                "description": "An ISO week, e.g. 2026-W47.",
                "schema": {"type": "string", "pattern": "^[0-9]{4}-W[0-9]{2}$"},
            }
        ],
        "responses": {
            "200": _PAGE,
            "404": answer("No such week, or nothing went out that week.", HTML),
            "503": answer("The database is briefly unavailable.", PLAIN),
        },
    },
    ("/archive.xml", "get"): {
        "summary": "Atom feed of past issues.",
        "responses": {
            "200": answer("Atom.", {"application/atom+xml": {"schema": TEXT}}),
            "503": answer("The database is briefly unavailable.", PLAIN),
        },
    },
    ("/c/{token}", "get"): {
        "summary": "A tracked link in an issue: redirects to the comparison the issue was sent with.",
        "description": "The destination comes from the frozen issue, never from the request; the click is "
        "recorded after the answer (`[tracking] clicks`).",
        "parameters": [
            {
                "name": "token",
                "in": "path",
                "required": True,
                "description": "A signed link token.",
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{22}$"},
            }
        ],
        "responses": {
            "302": {
                "description": "To the comparison (with its UTM parameters).",
                "headers": {"Location": {"schema": {"type": "string"}}},
            },
            "400": answer("A forged, garbled or unknown link: a page, no redirect.", HTML),
            "503": answer("The database is briefly unavailable.", PLAIN),
        },
    },
    ("/o/{token}", "get"): {
        "summary": "The optional open pixel (`[tracking] open_pixel`): a transparent GIF; the open is recorded.",
        "parameters": [
            {
                "name": "token",
                "in": "path",
                "required": True,
                "description": "A signed pixel token.",
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{22}$"},
            }
        ],
        "responses": {
            "200": answer("A 1×1 transparent GIF.", {"image/gif": {"schema": {"type": "string", "format": "binary"}}}),
            "400": answer("A forged or garbled token.", HTML),
        },
    },
    ("/healthz", "get"): {
        "summary": "Is the service well? Details only for localhost or the operator token.",
        "responses": {
            "200": answer("Well.", {"application/json": {"schema": _HEALTH}}),
            "503": answer("Not well.", {"application/json": {"schema": _HEALTH}}),
        },
    },
    ("/healthz/live", "get"): {
        "summary": "Liveness: the process and its database answer.",
        "responses": {
            "200": answer("Live.", {"application/json": {"schema": _HEALTH}}),
            "503": answer("Not live.", {"application/json": {"schema": _HEALTH}}),
        },
    },
}


def _webhooks() -> dict[tuple[str, str], dict[str, Any]]:
    """Each provider's webhook operation, as its provider declared it."""
    return {(p.webhook_path, "post"): dict(p.webhook.operation) for p in registry.providers() if p.webhook}


# Every public operation: the core's, then the providers' webhooks (read from their declarations).
PUBLIC: dict[tuple[str, str], dict[str, Any]] = {**_CORE, **_webhooks()}
_EVERYWHERE = {"413": TOO_LARGE}  # the body limit answers any method that sends a body


# Served by the public app but not part of the API it describes.
NOT_DESCRIBED = {("/openapi.json", "get")}


def undescribed(app: FastAPI) -> list[tuple[str, str]]:
    """Public operations missing from PUBLIC (so neither documented nor fuzzed)."""
    return sorted(
        (r.path, m.lower())
        for r in api_routes(app.routes)
        for m in r.methods or ()
        if m != "HEAD" and (r.path, m.lower()) not in PUBLIC and (r.path, m.lower()) not in NOT_DESCRIBED
    )


def build(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document for the public routes (they opt out of its schema one by one), completed by PUBLIC."""
    paths = {path for path, _ in PUBLIC}
    routes = []
    for route in api_routes(app.routes):
        if route.path in paths:
            shown = copy.copy(route)
            shown.include_in_schema = True
            shown.methods = {m for m in route.methods or () if (route.path, m.lower()) in PUBLIC}
            routes.append(shown)
    doc = get_openapi(title=app.title, version="1", routes=routes, description="The public HTTP API of `digest serve`.")
    for path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            extra = PUBLIC[(path, method)]
            op.pop("requestBody", None)
            op.update({k: v for k, v in extra.items() if k != "parameters"})
            given = {p["name"]: p for p in extra.get("parameters", [])}
            op["parameters"] = [given.pop(p["name"], p) for p in op.get("parameters", [])] + list(given.values())
            if method == "post":
                op["responses"] = {**_EVERYWHERE, **op["responses"]}
    return doc


def api_routes(routes: list[Any]) -> list[APIRoute]:
    """Every APIRoute, also inside included routers (FastAPI keeps those as one entry each)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            found.extend(api_routes(route.original_router.routes))
    return found


@router.get("/openapi.json", include_in_schema=False)
async def openapi_json(request: Request) -> JSONResponse:
    doc = getattr(request.app.state, "openapi_doc", None)
    if doc is None:
        doc = request.app.state.openapi_doc = build(request.app)
    return JSONResponse(doc, headers={"Cache-Control": "public, max-age=300"})
