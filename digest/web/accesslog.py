"""Keep personal tokens out of the access log: uvicorn logs every request line verbatim.

A confirm or unsubscribe link is a bearer credential for one reader (it confirms, or
unsubscribes, whoever holds it), and the access log is read and shipped far more widely
than the database. The filter rewrites the logged path: the segment after a token-bearing
prefix becomes `[redacted]` and the query string is dropped on those paths; a query
parameter named like a token is redacted on any path.
"""

from __future__ import annotations

import logging
import re

# Path prefixes whose next segment is a signed personal token.
# `/c/`: a tracked link names a reader's message; beside the client's address it would say who clicked what.
TOKEN_PREFIXES = ("/confirm/", "/u/", "/unsubscribe/", "/manage/", "/c/", "/o/")
_TOKEN_PATH = re.compile(r"^(?P<prefix>" + "|".join(re.escape(p) for p in TOKEN_PREFIXES) + r")[^/?#]*(?P<rest>[^?#]*)")
_TOKEN_PARAM = re.compile(r"(?i)([?&](?:token|t|key|signature)=)[^&#]*")
REDACTED = "[redacted]"


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
