"""What every public form route needs: reading posted fields safely, where a POST came from, where to go next.

Every bad input gets a clear 4xx and changes nothing; a forged token gets a plain 400. A POST to
/u/ or /preferences/ from a page on another site (its Origin) gets a plain 403 (`refuse_foreign_post`).
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl, urlsplit

from fastapi import Request
from fastapi.responses import Response

from digest.runtime import Runtime
from digest.web.pages import origin_of, plain_error

MAX_BODY = 16 * 1024
MAX_FIELD = 2000
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# -- request helpers ---------------------------------------------------------------------


async def read_fields(request: Request) -> tuple[dict[str, str], bool]:
    """The posted fields as strings, and whether the body was JSON. Raises BadRequest."""
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        raise BadRequest(413, "The request is too large.")
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    body = await request.body()
    if len(body) > MAX_BODY:
        raise BadRequest(413, "The request is too large.")
    if ctype == "application/json":
        try:
            data = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nesting thousands deep
            raise BadRequest(400, "The request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise BadRequest(400, "The request body must be a JSON object.")
        fields = {}
        for key, value in data.items():
            if not _is_text(key):  # JSON's "\ud800": no database stores it, no page shows it
                raise BadRequest(400, "A field name is not valid text.")
            if value is None:
                continue
            if not isinstance(value, str):
                raise BadRequest(400, f"{str(key)[:40]}: must be a string.")
            if not _is_text(value):
                raise BadRequest(400, f"{key[:40]}: is not valid text.")
            fields[str(key)] = value
        return fields, True
    if ctype in ("application/x-www-form-urlencoded", ""):
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
        except (UnicodeDecodeError, ValueError):
            raise BadRequest(400, "The form data could not be read.") from None
        return _first_values(pairs), False
    if ctype == "multipart/form-data":
        try:
            form = await request.form(max_files=0, max_fields=50)
        except Exception:  # noqa: BLE001 - malformed multipart of any kind
            raise BadRequest(400, "The form data could not be read.") from None
        return _first_values([(k, v) for k, v in form.multi_items() if isinstance(v, str)]), False
    raise BadRequest(415, "Send the form as application/x-www-form-urlencoded, multipart/form-data or JSON.")


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _first_values(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Each field's first value; the repeated `topic` boxes of a sign-up form join as "a+b"."""
    out: dict[str, str] = {}
    for key, value in pairs:
        if key == "topic" and key in out:
            out[key] = f"{out[key]}+{value}"
        out.setdefault(key, value)
    return out


def wants_json(request: Request, body_was_json: bool) -> bool:
    return body_was_json or "application/json" in request.headers.get("accept", "")


def client_ip(request: Request) -> str | None:
    """The peer address; behind a proxy run uvicorn with --proxy-headers --forwarded-allow-ips."""
    return request.client.host if request.client else None


def own_origins(rt: Runtime, request: Request) -> set[str]:
    """The site's own origin (`site.public_url`) and the one this request was sent to (its Host)."""
    own = {origin_of(rt.settings.site.public_url)}
    host = request.headers.get("host")
    if host:
        own.add(f"{request.url.scheme}://{host}".lower())
    return own


def allowed_origins(rt: Runtime, request: Request) -> set[str]:
    return {origin_of(o) for o in rt.settings.site.allowed_origins} | own_origins(rt, request)


FOREIGN_POST = "This form was sent from another site, so nothing was changed. Use the link in your email instead."


def refuse_foreign_post(rt: Runtime, request: Request) -> Response | None:
    """A 403 for a POST a page on another site made the reader's browser send (CSRF); None to go on.

    No Origin: a mail client's one-click POST (RFC 8058) or another non-browser client; current
    browsers name the page's origin on every POST, so a foreign page cannot send that.
    `Origin: null` comes from a sandboxed frame (a foreign page can make one) or a page under
    `Referrer-Policy: no-referrer`: refused, and the reader's own pages are served with
    `strict-origin` (OWN_ORIGIN) so their forms name the site.
    """
    origin = request.headers.get("origin")
    if origin is None:
        return None
    origin = origin.strip().lower()
    if origin in own_origins(rt, request):
        return None
    return plain_error(403, FOREIGN_POST)


def safe_next(raw: str | None, rt: Runtime, request: Request) -> str | None:
    """A redirect target after the no-JS form: a path here, or a URL on an allowed origin."""
    if not raw or len(raw) > MAX_FIELD or CONTROL_CHARS.search(raw) or " " in raw:
        return None
    if raw.startswith("/") and not raw.startswith("//"):
        return raw
    try:
        parts = urlsplit(raw)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        return None
    return raw if origin_of(raw) in allowed_origins(rt, request) else None


def host_page(raw: str | None, rt: Runtime, request: Request) -> str | None:
    """The page a form was on, if it is a URL on an allowed origin (else the visitor could write anything)."""
    if not raw or raw.startswith("/"):
        return None
    return safe_next(raw, rt, request)


def bad_link() -> Response:
    """A forged, garbled or dead token: the same plain answer, whatever was wrong."""
    return plain_error(400, "This link is not valid.")


def mask(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}" if domain else "•••"
