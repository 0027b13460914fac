"""Who may see operational details (health internals): the machine itself, or a holder of the operator token.

A request counts as local only when its TCP peer is a loopback address *and* it carries no
proxy header (`X-Forwarded-For`, `Forwarded`, `X-Real-IP`, `X-Forwarded-Host`). Behind a
reverse proxy on the same machine every request arrives from 127.0.0.1, and uvicorn's
proxy-header support rewrites the client address only when the proxy sets
`X-Forwarded-For`; so a request that passed through a proxy is treated as public whatever
address it claims. A proxy that forwards without any such header must not forward
`/healthz` (or must set one). Remote monitors send `Authorization: Bearer <token>` with the
value of `DIGEST_OPERATOR_TOKEN` (unset: no remote access to the details).
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import Request

from digest.runtime import Runtime

PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip", "x-forwarded-host")


def is_local(request: Request) -> bool:
    if any(h in request.headers for h in PROXY_HEADERS):
        return False
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def has_operator_token(request: Request) -> bool:
    rt: Runtime = request.app.state.rt
    expected = rt.config.operator_token
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def may_see_details(request: Request) -> bool:
    return has_operator_token(request) or is_local(request)
