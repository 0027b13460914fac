"""Page rendering for the preview UI: a Jinja2 environment over templates/preview/ that escapes everything."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi.responses import HTMLResponse

from digest import defaults
from digest.weeks import as_utc

PAGES_DIR = defaults.PREVIEW_PAGES

PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "frame-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
FRAMED_PAGE_CSP = PAGE_CSP.replace("frame-ancestors 'none'", "frame-ancestors 'self'")
# Rendered email: its own inline styles and remote images, never scripts, framed only by the preview.
EMAIL_CSP = (
    "default-src 'none'; img-src * data:; style-src 'unsafe-inline' *; font-src * data:; "
    "frame-ancestors 'self'; form-action 'none'; base-uri 'self'"
)
# same-origin, not no-referrer: with no-referrer Chromium posts forms with `Origin: null`.
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}


def _when(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M UTC") -> str:
    return as_utc(value).strftime(fmt) if value else ""


def _kb(size: int) -> str:
    return f"{size / 1024:.1f} KB"


def make_env(folder: Path = PAGES_DIR) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["kb"] = _kb
    env.filters["pct"] = lambda v: f"{100 * float(v):.0f}"
    return env


class Pages:
    """Render one page template with the context every page needs."""

    def __init__(self, folder: Path = PAGES_DIR):
        self.env = make_env(folder)
        for name in self.env.list_templates(extensions=["html"]):  # compile once, at start-up
            self.env.get_template(name)

    def render(self, name: str, context: dict[str, Any], status: int = 200, csp: str = PAGE_CSP) -> HTMLResponse:
        html = self.env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, "Content-Security-Policy": csp})


_DARK_MEDIA = re.compile(r"\(\s*prefers-color-scheme\s*:\s*dark\s*\)", re.I)
_LIGHT_MEDIA = re.compile(r"\(\s*prefers-color-scheme\s*:\s*light\s*\)", re.I)
_HEAD = re.compile(r"<head[^>]*>", re.I)


def framed_email(html: str, scheme: str = "light") -> str:
    """The email as shown in the preview frame: links open in a new tab; `dark` turns on the
    email's own dark-mode styles (what Apple Mail and iOS show) by making its media queries match."""
    extra = '<base target="_blank">'
    if scheme == "dark":
        html = _LIGHT_MEDIA.sub("(max-width: 0px)", _DARK_MEDIA.sub("(min-width: 0px)", html))
        if re.search(r"color-scheme[^>]{0,40}dark", html, re.I):
            extra += "<style>:root{color-scheme:dark}</style>"
    m = _HEAD.search(html)
    if m:
        return html[: m.end()] + extra + html[m.end() :]
    return extra + html
