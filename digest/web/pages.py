"""The public pages (sign-up, thanks, confirm, unsubscribe, errors) rendered from templates/web/.

Pages are Jinja2 with autoescaping on, one inline stylesheet and no third-party assets.
Every page is sent with a strict Content-Security-Policy; pages whose URL holds a token
also forbid caching and the Referer header, so the token never leaks to the next site.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from digest import defaults
from digest.config import Config

DEFAULT_DIR = defaults.WEB_TEMPLATES


def web_templates_dir(config: Config) -> Path:
    """templates/web next to the operator's email templates, else the packaged ones."""
    candidate = config.templates_dir.parent / "web"
    return candidate if (candidate / "base.html.j2").is_file() else DEFAULT_DIR


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


# For a reader's own pages whose forms POST back (unsubscribe, preferences). Not `no-referrer`: under it a
# browser sends `Origin: null` even with the page's own form, and those POSTs refuse `null` (a sandboxed
# frame on a foreign page sends it too). `strict-origin` still never sends the path (the token) anywhere.
OWN_ORIGIN = {"Referrer-Policy": "strict-origin"}


class Pages:
    def __init__(self, config: Config):
        self.config = config
        self.dir = web_templates_dir(config)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(self.dir)),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        s = config.settings
        self.globals = {
            "site": s.site,
            "schedule": s.schedule,
            "subscribe": s.subscribe,
            "public_url": s.site.public_url,
        }
        self.frame_origins = " ".join(sorted({origin_of(o) for o in s.site.allowed_origins}))
        self.form_targets = " ".join(
            sorted({origin_of(o) for o in s.site.allowed_origins} | {origin_of(s.site.public_url)})
        )

    def text(self, name: str, **context: Any) -> str:
        return self.env.get_template(name).render(**self.globals, **context)

    def render(
        self,
        name: str,
        *,
        status: int = 200,
        frameable: bool = False,
        private: bool = False,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        body = self.text(name, **context)
        return HTMLResponse(body, status_code=status, headers=self.headers(frameable, private) | (headers or {}))

    def headers(self, frameable: bool = False, private: bool = False) -> dict[str, str]:
        ancestors = f"'self' {self.frame_origins}" if frameable else "'none'"
        csp = (
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; connect-src 'self'; "
            "img-src 'self' data:; base-uri 'none'; "
            f"form-action 'self' {self.form_targets}; frame-ancestors {ancestors}"
        )
        out = {
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer" if private else "strict-origin-when-cross-origin",
        }
        if not frameable:
            out["X-Frame-Options"] = "DENY"
        if private:
            out["Cache-Control"] = "no-store"
        return out


def pages_for(request: Request) -> Pages:
    """One Pages per app (templates are compiled once)."""
    state = request.app.state
    pages = getattr(state, "subscriber_pages", None)
    if pages is None:
        pages = state.subscriber_pages = Pages(state.rt.config)
    return pages


def plain_error(status: int, message: str) -> Response:
    return Response(
        message + "\n",
        status_code=status,
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )
