"""How a transport that writes messages as files names them: shared by the writer (the outbox
provider) and the readers that must find a person's copies (erasure) without naming a provider."""

from __future__ import annotations

import re


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@+-]+", "_", name)[:120]


def file_name_hint(address: str) -> str:
    """The part of an outbox file name that comes from the recipient's address.

    Names are mangled (and may be shared: `zoé` and `zoë` both give `zo_`), so this is a cheap
    first filter for finding a person's copies; the To header inside the file decides.
    """
    return safe_name(address)
