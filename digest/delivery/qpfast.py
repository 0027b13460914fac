"""Quoted-printable bodies for a whole issue without encoding the same HTML for every reader.

Every reader's body is the issue's compiled HTML (or text) with a few short values
filled in. Quoted-printable is line oriented, so the encoded form of the whole is not
simply the encoded parts joined: a value changes the length of the line it sits on,
and with it where the soft line breaks fall. A soft line break (`=` at the end of a
line) is free to appear anywhere, though, and decodes to nothing. So each fixed part is
encoded once per issue as if it started a line, and a reader's body is those parts and
the reader's encoded values joined with a soft break wherever a piece does not end
its line. It decodes to exactly the text `set_content` would encode (same line-ending
normalization, final newline), with lines of at most 76 octets.

A `QpText` string carries what it needs to make that form (`qp()`), so transports that
write MIME (SMTP, SES, the outbox) get it and the others pay nothing for it.
"""

from __future__ import annotations

import binascii

_SOFT = b"=\r\n"


def _b2a(data: bytes) -> bytes:
    """binascii's quoted-printable (C), CRLF line ends, no line over 76 octets (RFC 2045 6.7).

    binascii lets a line ending in whitespace grow to 77 or 78 octets when it encodes that
    whitespace (`=20`) after the line is full: such a line gets a soft break before it."""
    out = binascii.b2a_qp(data, istext=True)
    lines = out.split(b"\n")
    if any(len(line) > 76 for line in lines):
        lines = [line[:-3] + b"=\r\n" + line[-3:] if len(line) > 76 else line for line in lines]
    return b"\r\n".join(lines)


def encode(text: str) -> bytes:
    """The whole of `text` quoted-printable encoded, CRLF line ends, as `set_content(cte=
    "quoted-printable")` normalizes it (every line end a newline, one at the end)."""
    return _b2a(b"\n".join(text.encode("utf-8").splitlines()) + b"\n")


def _piece(text: str) -> bytes:
    """One piece encoded as if it started a line (its own line ends kept, none added).

    Its last line may be followed by a soft break (`=`), so it keeps to 75 octets: binascii
    fills an unfinished last line up to 76, and the `=` after it made a line of 77."""
    out = _b2a(text.encode("utf-8"))
    start = out.rfind(b"\n") + 1
    if len(out) - start <= 75:
        return out
    cut = start + 75
    if out[cut - 1 : cut] == b"=":  # never inside an escape (=XX): a literal = is always =3D
        cut -= 1
    elif out[cut - 2 : cut - 1] == b"=":
        cut -= 2
    return out[:cut] + _SOFT + out[cut:]


class QpSplicer:
    """The fixed parts of one issue body (split at its slots), each encoded once."""

    def __init__(self, parts: list[str], slots: list[str]):
        self.slots = slots
        # A lone CR would pair with a newline across a slot when the value between is empty; such a
        # body (never one we compile) is simply encoded whole for every reader.
        self.usable = not any("\r" in p for p in parts)
        self._source = parts
        self._parts: list[bytes] | None = None  # encoded on first use: a JSON transport never asks

    @property
    def parts(self) -> list[bytes]:
        if self._parts is None:  # two threads may both encode it: same result
            self._parts = [_piece(p) for p in self._source]
        return self._parts

    def join(self, values: dict[str, str]) -> bytes | None:
        """The encoded body with `values` in their slots, or None when a value holds a line break
        (then the caller encodes the whole text)."""
        if not self.usable:
            return None
        parts = self.parts
        pieces: list[bytes] = []
        if parts[0]:
            pieces.append(parts[0])
        for slot, part in zip(self.slots, parts[1:]):
            value = values.get(slot, "")
            if value:
                if "\n" in value or "\r" in value:
                    return None
                if pieces and not pieces[-1].endswith(b"\n"):
                    pieces.append(_SOFT)
                pieces.append(_piece(value))
            if part:
                if pieces and not pieces[-1].endswith(b"\n"):
                    pieces.append(_SOFT)
                pieces.append(part)
        if not pieces or not pieces[-1].endswith(b"\n"):
            pieces.append(b"\r\n")  # the final newline set_content adds
        return b"".join(pieces)


class QpText(str):
    """A str (a reader's filled-in body) that can also give its quoted-printable form cheaply."""

    _splicer: QpSplicer
    _values: dict[str, str]

    def __new__(cls, value: str, splicer: QpSplicer, values: dict[str, str]) -> QpText:
        obj = super().__new__(cls, value)
        obj._splicer = splicer
        obj._values = values
        return obj

    def qp(self) -> bytes:
        joined = self._splicer.join(self._values)
        return joined if joined is not None else encode(str(self))


def qp_body(text: str) -> bytes:
    """`text` quoted-printable encoded (CRLF): spliced from pre-encoded parts when it is a QpText."""
    return text.qp() if isinstance(text, QpText) else encode(text)
