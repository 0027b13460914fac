"""Characters text may not carry into a template, a header, a feed or a terminal.

C0 and C1 control characters (tab and newline only where a field may span lines), lone
surrogates and Unicode noncharacters: MJML refuses them, XML 1.0 cannot hold most of them, a mail
header must not, and an escape sequence reaches the operator's terminal. Ingest and sign-up refuse
them with a message naming the character (`find`/`describe`); `strip` removes them from whatever
was stored before that rule, so old data still renders.
"""

from __future__ import annotations

import re

_NONCHARACTERS = "\ufdd0-\ufdef" + "".join(
    f"{chr(plane * 0x10000 + 0xFFFE)}{chr(plane * 0x10000 + 0xFFFF)}" for plane in range(17)
)
# C0 except tab and newline, DEL, C1: a regex character class (the CLI escapes the same ones).
CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f"
# The bidirectional embedding, override and isolate characters and the LRM/RLM/ALM marks. Stored text
# may hold them (right-to-left names need them); where a terminal shows text they are escaped, since
# they reorder what the operator reads ("Trojan Source"). A regex character class.
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_ALWAYS = CONTROLS + "\ud800-\udfff" + _NONCHARACTERS
# Anywhere: everything above. One-line fields also refuse tab, newline and the Unicode line breaks.
_MULTILINE = re.compile(f"[{_ALWAYS}]")
_ONE_LINE = re.compile(f"[{_ALWAYS}\t\n\u2028\u2029]")


def find(text: str, *, multiline: bool = False) -> int | None:
    """Index of the first character `text` may not carry, or None."""
    match = (_MULTILINE if multiline else _ONE_LINE).search(text)
    return match.start() if match else None


def describe(char: str) -> str:
    code = f"U+{ord(char):04X}"
    if char in "\t\n\u2028\u2029":
        return f"a tab or line break ({code}), which this one-line field cannot hold"
    if 0xD800 <= ord(char) <= 0xDFFF:
        return f"a lone surrogate ({code}), not text"
    if ord(char) >= 0xA0:
        return f"a Unicode noncharacter ({code})"
    return f"a control character ({code})"


def problem(text: str, *, multiline: bool = False) -> str | None:
    """`character 5 is a control character (U+0001); remove it`, or None when the text is clean."""
    at = find(text, multiline=multiline)
    if at is None:
        return None
    return f"character {at + 1} is {describe(text[at])}; remove it"


def strip(text: str) -> str:
    """Drop what `find(multiline=True)` refuses (tab and newline stay)."""
    return _MULTILINE.sub("", text)


def one_line(text: str) -> str:
    """`strip`, then every run of whitespace (tabs, line breaks) as one space: for subjects and titles."""
    return " ".join(strip(text).split())
