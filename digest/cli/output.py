"""Everything the CLI prints goes through here: terminal-safe text and tables that never cut a value.

Names, addresses, slugs and file contents come from visitors and imports. An escape
sequence in a subscriber's name must not reach the operator's terminal (it can rewrite
the screen, set the window title, or hide a line), and `[/x]` in a name must not be read
as rich markup. So: control characters (C0, DEL, C1) and the bidirectional overrides are
shown as visible escapes (`\\x1b`, `\\u202e`), markup is off unless a call asks for it,
and table cells are plain Text.

Tables fold a long cell onto the next line rather than cutting it with "…": what the
operator types next (a slug, an address) is always there in full. Columns marked
`no_wrap` keep their value on one line whenever the terminal is wide enough; when the
output is not a terminal, tables are as wide as their content.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from digest import plaintext

# C0 (tab and newline too, unless the caller keeps lines), DEL, C1, and the bidi marks: one rule,
# digest.plaintext's. JSON output uses the line-keeping class (json.dumps escapes C0 itself).
_UNSAFE_KEEP_LINES = re.compile(f"[{plaintext.CONTROLS}{plaintext.BIDI_CONTROLS}]")
_UNSAFE = re.compile(f"[\t\n{plaintext.CONTROLS}{plaintext.BIDI_CONTROLS}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(value: object, *, keep_newlines: bool = False) -> str:
    """`value` as text with every control character shown as an escape, never executed."""
    text = value if isinstance(value, str) else str(value)
    return (_UNSAFE_KEEP_LINES if keep_newlines else _UNSAFE).sub(_escape, text)


def json_safe(text: str) -> str:
    """Serialized JSON with DEL, C1 and bidi characters as \\u escapes (json.dumps leaves them raw)."""
    return _UNSAFE_KEEP_LINES.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class SafeConsole(Console):
    """A rich Console whose print() shows strings terminal-safe and without markup by default."""

    def print(self, *objects: Any, markup: bool | None = None, **kwargs: Any) -> None:
        safe = [terminal_safe(o, keep_newlines=True) if isinstance(o, str) else o for o in objects]
        super().print(*safe, markup=bool(markup), **kwargs)


class Table(RichTable):
    """A rich Table whose cells are plain, terminal-safe text and fold instead of being cut."""

    def __init__(self, *headers: str, **kwargs: Any):
        kwargs.setdefault("highlight", False)
        super().__init__(**kwargs)
        for header in headers:
            self.add_column(header)

    # Rich's add_column takes many keyword-only options; this one keeps them all and only changes defaults.
    def add_column(self, header: Any = "", *, no_wrap: bool = False, **kwargs: Any) -> None:  # type: ignore[override]
        kwargs.setdefault("overflow", "fold")
        super().add_column(header, no_wrap=no_wrap, **kwargs)

    def add_row(self, *cells: Any, **kwargs: Any) -> None:
        super().add_row(
            *(c if c is None or not isinstance(c, str) else Text(terminal_safe(c)) for c in cells), **kwargs
        )


def make_console(*, stderr: bool = False) -> SafeConsole:
    """Consoles for stdout/stderr: terminal width on a terminal, content width when piped."""
    console = SafeConsole(stderr=stderr, highlight=False, soft_wrap=True, markup=False)
    if not console.is_terminal:
        console.width = 10_000  # a table goes to a file or grep whole; rich pads to the table, not this
    return console
