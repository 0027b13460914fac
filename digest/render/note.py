"""The editor's note: a small Markdown subset (paragraphs, links, emphasis) for the email and its text twin.

markdown-it with the "zero" preset plus emphasis, links and backslash escapes: anything else
(HTML, images, headings, lists) stays literal text and is escaped like every other value.
Links must be http(s); `check_note` says so at the entry points, and the renderer refuses
anything else as a second line of defence.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

from digest import plaintext

NOTE_MAX_CHARS = 2000
LINK_STYLE = "text-decoration:underline;"
_TARGET = re.compile(r"\]\(\s*<?([^)\s>]*)")


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    md = MarkdownIt("zero", {"html": False}).enable(["emphasis", "link", "escape", "newline"])
    # markdown-it-py's documented hook for link policy is replacing this method on the instance.
    md.validateLink = lambda url: url.strip().lower().startswith(("http://", "https://"))  # type: ignore[method-assign]
    return md


def check_note(text: str) -> str:
    """The note as it will be stored (trimmed), or ValueError saying what is wrong with it.

    Control characters are refused like in every other input (digest.plaintext), before trimming:
    str.strip() would quietly eat some of them at the ends. Tabs and newlines are fine.
    """
    text = text.replace("\r\n", "\n")
    bad = plaintext.problem(text, multiline=True)
    if bad:
        raise ValueError(bad)
    text = text.strip()
    if not text:
        raise ValueError("the note is empty (use --clear to remove a note)")
    if len(text) > NOTE_MAX_CHARS:
        raise ValueError(f"the note is {len(text)} characters; at most {NOTE_MAX_CHARS}")
    for target in _TARGET.findall(text):
        if not target.lower().startswith(("http://", "https://")):
            raise ValueError(f"link target {target[:60]!r} is not an http(s) URL")
    return text


def _tokens(text: Any) -> list[Token]:
    return _parser().parse(str(text or ""))


def note_html(text: Any, link_colour: str = "") -> Markup:
    """Paragraphs as `<p>`, links and emphasis as tags; every other character escaped."""
    md = _parser()
    tokens = _tokens(text)
    for tok in tokens:
        for child in tok.children or []:
            if child.type == "link_open":
                child.attrs = {
                    "href": child.attrs.get("href", ""),
                    "class": "c-link",
                    "style": (f"color:{link_colour};" if link_colour else "") + LINK_STYLE,
                }
            elif child.type == "softbreak":  # one line per paragraph: the HTML is squeezed later
                child.type, child.content = "text", " "
    html = md.renderer.render(tokens, md.options, {})
    html = html.replace("<p>", '<p style="margin:0 0 12px;">').replace("\n", "")
    return Markup(html)  # noqa: S704 - markdown-it escaped the text (html=False)


def note_text(text: Any) -> str:
    """The plain-text twin: paragraphs separated by a blank line, a link as `label (url)`."""
    paragraphs: list[str] = []
    for tok in _tokens(text):
        if tok.type != "inline":
            continue
        out: list[str] = []
        href, label_start = "", 0
        for child in tok.children or []:
            if child.type == "text":
                out.append(child.content)
            elif child.type in ("softbreak", "hardbreak"):
                out.append(" ")
            elif child.type == "link_open":
                href, label_start = str(child.attrs.get("href", "")), len(out)
            elif child.type == "link_close":
                label = "".join(out[label_start:])
                if label.strip() != href:
                    out.append(f" ({href})")
        paragraphs.append(" ".join("".join(out).split()))
    return "\n\n".join(p for p in paragraphs if p)
