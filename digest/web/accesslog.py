"""Keep personal tokens out of the access log: uvicorn logs every request line verbatim.

A confirm, unsubscribe or preference link is a bearer credential for one reader (it confirms,
unsubscribes or changes whoever holds it), and the access log is read and shipped far more widely
than the database. The filter rewrites the logged path: the segment after a token-bearing prefix
becomes `[redacted]` and the query string is dropped on those paths; a query parameter named like
a token is redacted on any path.

The prefixes come from the public app's own routes (digest.web.app.ROUTERS): every path parameter
is a token unless PUBLIC_PARAMS says it names nothing personal, so a new route that takes a token
is redacted without anyone remembering to list it here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from fastapi.routing import APIRoute

from digest.web.app import ROUTERS
from digest.web.openapi import api_routes

# Path parameters that name nothing personal (an issue's week); every other one is redacted.
PUBLIC_PARAMS = frozenset({"week"})
# Paths of links mailed by older versions: no route answers them now, but their tokens still arrive.
LEGACY_PREFIXES = ("/unsubscribe/", "/manage/")
_PARAM = re.compile(r"(\{[^}]*\})")
_TOKEN_PARAM = re.compile(r"(?i)([?&](?:token|t|key|signature)=)[^&#]*")
REDACTED = "[redacted]"


def token_prefixes(routes: Iterable[APIRoute]) -> list[str]:
    """Regex for each route's path up to its first non-public parameter (`/preferences/`, `/c/`)."""
    found = set()
    for route in routes:
        prefix = ""
        for part in _PARAM.split(route.path):
            if not part.startswith("{"):
                prefix += re.escape(part)
            elif part.strip("{}").split(":", 1)[0] in PUBLIC_PARAMS:
                prefix += "[^/?#]+"
            else:
                found.add(prefix)
                break
    return sorted(found, key=len, reverse=True)


TOKEN_PREFIXES = (
    *token_prefixes(r for router in ROUTERS for r in api_routes(router.routes)),
    *(re.escape(p) for p in LEGACY_PREFIXES),
)
_TOKEN_PATH = re.compile(r"^(?P<prefix>" + "|".join(TOKEN_PREFIXES) + r")[^/?#]*(?P<rest>[^?#]*)")


def redact_path(path: str) -> str:
    """`/u/<token>?manage=1` -> `/u/[redacted]`; other paths keep everything but token-like query values."""
    m = _TOKEN_PATH.match(path)
    if m:
        return f"{m.group('prefix')}{REDACTED}{m.group('rest')}"
    return _TOKEN_PARAM.sub(lambda t: t.group(1) + REDACTED, path)


class RedactTokens(logging.Filter):
    """For `uvicorn.access`: its record args are (client, method, path with query, http version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_path(args[2]), *args[3:])
        return True


def redact_access_log() -> None:
    """Install the filter on uvicorn's access logger once per process (serve and every uvicorn worker)."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in logger.filters):
        logger.addFilter(RedactTokens())
