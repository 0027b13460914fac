"""The issue the "done when" of the email checks is built from: the two sample pages (one tool,
Cursor Background Agents, in both) plus variants, one of them a community vote that disagrees
with the panel; rendered and filled for one reader like the sender does."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from digest.config import load_config
from digest.render.issue_email import CompiledEmail
from digest.render.personalize import Personalizer
from digest.render.tracked import direct_values
from tests.conftest import ROOT
from tests.support_render import compile_sample, sample_issue

PERSONAL = {
    "unsubscribe_url": "https://news.example.com/u/TOKEN-A",
    "view_url": "https://news.example.com/archive/2026-W47",
    "manage_url": "https://news.example.com/u/TOKEN-A?manage=1",
    "name": "Ada",
    "greeting": "Hi Ada,",
}


def config():
    return load_config(ROOT / "config.toml", env={"DIGEST_SECRET_KEY": "test-secret-key-0123456789"})


def five_item_issue(**kw) -> tuple[CompiledEmail, str, str]:
    """(compiled, filled HTML, filled text) of the 5-item sample issue."""
    compiled = compile_sample(config(), sample_issue(5, **kw))
    # Tracked link slots hold their destinations, as in a preview (digest.render.tracked).
    values = {**PERSONAL, **direct_values(compiled.links)}
    html, text = Personalizer.build(compiled.html, compiled.text, compiled.nonce).fill(values)
    return compiled, html, text


class Texts(HTMLParser):
    """Text of the elements with a given class (quotes, reviewer lines, verdicts) and every link's text."""

    def __init__(self, classes: set[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.classes = classes
        self.found: dict[str, list[str]] = {c: [] for c in classes}
        self.links: list[tuple[str, str]] = []  # (href, text)
        self._stack: list[str | None] = []
        self._link: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = next((c for c in (a.get("class") or "").split() if c in self.classes), None)
        if tag in ("br", "meta", "img", "link"):
            return
        self._stack.append(cls)
        if cls:
            self.found[cls].append("")
        if tag == "a":
            self._link = [a.get("href") or "", ""]

    def handle_endtag(self, tag):
        if tag in ("br", "meta", "img", "link"):
            return
        if tag == "a" and self._link is not None:
            self.links.append((self._link[0], " ".join(self._link[1].split())))
            self._link = None
        if self._stack:
            self._stack.pop()

    def handle_data(self, data):
        for cls in {c for c in self._stack if c}:
            self.found[cls][-1] += data
        if self._link is not None:
            self._link[1] += data

    @classmethod
    def of(cls, html: str, *classes: str) -> Texts:
        t = cls(set(classes))
        t.feed(html)
        t.close()
        return t


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
