"""The preview's access token, off loopback: every request must carry it.

The preview shows every reader's personal links (the outbox pages) and sends test mail, with no
login. Bound to loopback only this machine reaches it; on any other address `digest preview`
makes a random token at start and prints the URL with it. The first request with `?token=` sets
an HttpOnly, SameSite=Strict cookie and is redirected to the same URL without the token (so it
leaves the address bar and the history); every other request needs that cookie.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "digest_preview"
NEEDED = "The preview needs its access token: open the URL `digest preview` printed when it started.\n"
WRONG = "This access token is not the preview's: open the URL `digest preview` printed when it started.\n"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _same(given: str, token: str) -> bool:
    """Constant time; bytes, since compare_digest refuses a str that is not ASCII."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), token.encode())


class AccessTokenGuard:
    """ASGI middleware: the token in the query (once) or the cookie (after), else 401/403 in plain text."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.query_params.get("token")
        if given is not None:
            response = self._welcome(request) if _same(given, self.token) else _plain(403, WRONG)
        elif _same(request.cookies.get(COOKIE, ""), self.token):
            await self.app(scope, receive, send)
            return
        else:
            response = _plain(401, NEEDED)
        await response(scope, receive, send)

    def _welcome(self, request: Request) -> Response:
        rest = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
        response = RedirectResponse(
            request.url.path + (f"?{rest}" if rest else ""),
            status_code=303,
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )
        response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict", path="/")
        return response


def _plain(status: int, message: str) -> Response:
    return Response(
        message, status_code=status, media_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-store"}
    )
