"""Checks an operator wants before a send: will Gmail clip it, do links go where they should, can
readers leave with one click. Each finding says what is wrong and where (a line of the sent HTML,
the link text, a header or a template file and line).

Long because each pre-send check is a short function, and they read best as one list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

from digest.config import Settings
from digest.render.issue_email import PREHEADER_MAX, SUBJECT_MAX

GMAIL_CLIP_BYTES = 102 * 1024  # Gmail shows "[Message clipped]" past 102 KB of HTML
SIZE_WARN_BYTES = 90 * 1024
SUBJECT_WARN = SUBJECT_MAX  # phones cut subjects at about 35-60 characters; the default subject fits
PREHEADER_MIN = 40
LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}

PASS, WARN, FAIL = "pass", "warn", "fail"
_RANK = {PASS: 0, WARN: 1, FAIL: 2}


@dataclass
class Finding:
    message: str
    where: str = ""


@dataclass
class Check:
    name: str
    status: str
    summary: str
    findings: list[Finding] = field(default_factory=list)


@dataclass
class _Tag:
    name: str
    attrs: dict[str, str]
    line: int
    text: str = ""


class _Scan(HTMLParser):
    """Collect links, images and the hidden preheader with their line numbers."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[_Tag] = []
        self.images: list[_Tag] = []
        self.preheader: str | None = None
        self._open_link: _Tag | None = None
        self._hidden_depth = 0
        self._hidden_text: list[str] = []
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v if v is not None else "") for k, v in attrs}
        line = self.getpos()[0]
        if tag == "body":
            self._in_body = True
        if tag == "a":
            self._open_link = _Tag("a", a, line)
            self.links.append(self._open_link)
        elif tag == "img":
            self.images.append(_Tag("img", a, line))
        elif tag == "area" and "href" in a:
            self.links.append(_Tag("area", a, line))
        if tag in ("img", "br", "meta", "link", "hr", "input", "area"):
            return
        if self._hidden_depth:
            self._hidden_depth += 1
        elif self._in_body and self.preheader is None and "display:none" in a.get("style", "").replace(" ", "").lower():
            self._hidden_depth = 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._open_link = None
        if self._hidden_depth:
            self._hidden_depth -= 1
            if not self._hidden_depth:
                self.preheader = visible("".join(self._hidden_text))

    def handle_data(self, data: str) -> None:
        if self._open_link is not None:
            self._open_link.text += data
        if self._hidden_depth:
            self._hidden_text.append(data)


# Zero-width and blank characters templates pad the preheader with, so inbox previews stop after it.
_FILLER = re.compile("[\u034f\u200b\u200c\u200d\u2060\ufeff\u00ad\u00a0\u2007\u3000]+")


def visible(text: str) -> str:
    """The text an inbox shows: filler removed, whitespace collapsed."""
    return " ".join(_FILLER.sub(" ", text).split())


def _short(value: str, limit: int = 90) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _label(tag: _Tag) -> str:
    text = " ".join(tag.text.split())
    return f"“{_short(text, 40)}” " if text else ""


def allowed_hosts(settings: Settings) -> set[str]:
    urls = [settings.site.site_url, settings.site.public_url, *settings.site.allowed_origins]
    return {(urlsplit(u).hostname or "").lower() for u in urls} - {""}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def _setting_for(origin: str, settings: Settings) -> str:
    if origin == _origin(settings.site.public_url):
        return "site.public_url"
    if origin == _origin(settings.site.site_url):
        return "site.site_url"
    return ""


def _labels(tags: list[_Tag]) -> str:
    counts: dict[str, int] = {}
    for t in tags:
        text = _short(" ".join(t.text.split()), 40) or _short(t.attrs.get("href", ""), 60)
        counts[text] = counts.get(text, 0) + 1
    return ", ".join(f"“{k}”" + (f" ×{n}" if n > 1 else "") for k, n in counts.items())


def _lines(tags: list[_Tag]) -> str:
    lines = sorted({t.line for t in tags})
    return (
        ("HTML line " if len(lines) == 1 else "HTML lines ")
        + ", ".join(map(str, lines[:6]))
        + ("…" if len(lines) > 6 else "")
    )


def _link_findings(
    links: list[_Tag], settings: Settings
) -> tuple[list[tuple[str, Finding]], list[tuple[str, Finding]]]:
    """http:// links grouped by origin; links to hosts not allowed, or to this machine, grouped by host.

    Long because it is one pass over the links sorting each into its finding.
    """
    hosts = allowed_hosts(settings)
    insecure: dict[str, list[_Tag]] = {}
    loopback: dict[str, list[_Tag]] = {}
    foreign: list[tuple[str, Finding]] = []
    for link in links:
        href = link.attrs.get("href", "").strip()
        where = f"HTML line {link.line}"
        if not href:
            foreign.append((FAIL, Finding(f"link {_label(link)}has no href", where)))
            continue
        scheme = href.split(":", 1)[0].lower() if ":" in href else ""
        if scheme in ("mailto", "tel"):
            continue
        if scheme not in ("http", "https"):
            foreign.append(
                (
                    FAIL,
                    Finding(
                        f"link {_label(link)}to {_short(href)} is not an absolute http(s) "
                        "URL; it goes nowhere in a mail client",
                        where,
                    ),
                )
            )
            continue
        if scheme == "http":
            insecure.setdefault(_origin(href), []).append(link)
        host = (urlsplit(href).hostname or "").lower()
        if host not in hosts:
            foreign.append(
                (
                    FAIL,
                    Finding(
                        f"link {_label(link)}goes to {host or '(no host)'}, which is not "
                        f"site.site_url, site.public_url or site.allowed_origins: {_short(href)}",
                        where,
                    ),
                )
            )
        elif host in LOOPBACK:
            loopback.setdefault(_origin(href), []).append(link)
    http_findings = []
    for origin, tags in insecure.items():
        setting = _setting_for(origin, settings)
        fix = f" (from {setting}; use https:// there)" if setting else ""
        http_findings.append((WARN, Finding(f"{origin}{fix}: {_labels(tags)}", _lines(tags))))
    for origin, tags in loopback.items():
        setting = _setting_for(origin, settings) or "site.public_url"
        foreign.append(
            (
                WARN,
                Finding(
                    f"{origin} is this machine, readers cannot open {_labels(tags)}; "
                    f"set {setting} to the public address",
                    _lines(tags),
                ),
            )
        )
    return http_findings, foreign


def _worst(findings: list[tuple[str, Finding]]) -> str:
    return max((s for s, _ in findings), key=_RANK.__getitem__, default=PASS)


def _check(name: str, ok_summary: str, found: list[tuple[str, Finding]], bad_summary: str) -> Check:
    status = _worst(found)
    return Check(name, status, ok_summary if status == PASS else bad_summary, [f for _, f in found])


def scan_html(html: str) -> _Scan:
    """Parse the HTML once for every check (links, images, the hidden preheader)."""
    scan = _Scan()
    scan.feed(html)
    scan.close()
    return scan


def preheader_of(html: str) -> str | None:
    return scan_html(html).preheader


def _size_check(html: str) -> Check:
    size = len(html.encode("utf-8"))
    kb = f"{size / 1024:.1f} KB of HTML"
    if size > GMAIL_CLIP_BYTES:
        return Check(
            "HTML size",
            FAIL,
            f"{kb}: Gmail clips messages past 102 KB",
            [
                Finding(
                    "readers see “[Message clipped]” and lose the footer with the unsubscribe link",
                    "the whole HTML part",
                )
            ],
        )
    if size > SIZE_WARN_BYTES:
        return Check("HTML size", WARN, f"{kb}: close to Gmail's 102 KB clipping limit")
    return Check("HTML size", PASS, f"{kb}, under Gmail's 102 KB clipping limit")


def _alt_check(scan: _Scan) -> Check:
    found: list[tuple[str, Finding]] = []
    for img in scan.images:
        src = _short(img.attrs.get("src", "(no src)"))
        if "alt" not in img.attrs:
            found.append(
                (FAIL, Finding(f"image {src} has no alt text: blocked images show nothing", f"HTML line {img.line}"))
            )
    return _check(
        "Image alt text",
        f"{len(scan.images)} image(s), all with alt text" if scan.images else "no images",
        found,
        f"{len(found)} image(s) without alt text",
    )


def _link_checks(scan: _Scan, settings: Settings) -> list[Check]:
    insecure, foreign = _link_findings(scan.links, settings)
    n_insecure = sum(1 for link in scan.links if link.attrs.get("href", "").strip().lower().startswith("http://"))
    return [
        _check(
            "https links",
            f"{len(scan.links)} link(s), all https" if scan.links else "no links",
            insecure,
            f"{n_insecure} link(s) use http://",
        ),
        _check(
            "Link hosts",
            "every link goes to an allowed host" if scan.links else "no links",
            foreign,
            f"{len(foreign)} problem(s) with where links go",
        ),
    ]


def _list_header_findings(headers: dict[str, str]) -> list[tuple[str, Finding]]:
    """RFC 8058 one-click unsubscribe headers, which Gmail and Yahoo require of bulk mail."""
    found: list[tuple[str, Finding]] = []
    lu = headers.get("List-Unsubscribe", "")
    if not lu:
        found.append((FAIL, Finding("List-Unsubscribe header is missing", "headers")))
    else:
        if "<https://" not in lu:
            found.append(
                (
                    WARN,
                    Finding(
                        "List-Unsubscribe has no https:// URL; Gmail and Yahoo require one for one-click unsubscribe",
                        "List-Unsubscribe header",
                    ),
                )
            )
        if "<mailto:" not in lu:
            found.append((WARN, Finding("List-Unsubscribe has no mailto: address", "List-Unsubscribe header")))
    if headers.get("List-Unsubscribe-Post", "") != "List-Unsubscribe=One-Click":
        found.append(
            (FAIL, Finding("List-Unsubscribe-Post: List-Unsubscribe=One-Click is missing (RFC 8058)", "headers"))
        )
    return found


def _unsubscribe_check(
    scan: _Scan, text: str, headers: dict[str, str], unsubscribe_url: str, needs_list_headers: bool
) -> Check:
    found: list[tuple[str, Finding]] = []
    hrefs = {link.attrs.get("href", "") for link in scan.links}
    if unsubscribe_url not in hrefs:
        found.append(
            (
                FAIL,
                Finding(
                    "no link to the reader's unsubscribe URL in the HTML part",
                    "HTML part (template variable personal.unsubscribe_url)",
                ),
            )
        )
    if text.strip() and unsubscribe_url not in text:
        found.append((FAIL, Finding("no unsubscribe URL in the text part", "text part")))
    if needs_list_headers:
        found += _list_header_findings(headers)
    return _check(
        "Unsubscribe",
        "link in HTML and text" + (", one-click headers present" if needs_list_headers else ""),
        found,
        "unsubscribe is incomplete",
    )


def _text_check(text: str) -> Check:
    if not text.strip():
        return Check(
            "Text part",
            FAIL,
            "the text part is empty",
            [Finding("clients that show plain text (and spam filters) get nothing", "text part")],
        )
    return Check("Text part", PASS, f"{len(text.splitlines())} lines of plain text")


def _subject_check(subject: str) -> Check:
    if not subject.strip():
        return Check("Subject", FAIL, "the subject is empty", [Finding("no subject", "Subject header")])
    if len(subject) > SUBJECT_WARN:
        return Check(
            "Subject",
            WARN,
            f"{len(subject)} characters; phones show about {SUBJECT_WARN}",
            [Finding(f"cut after “{subject[:SUBJECT_WARN]}…”", "Subject header")],
        )
    return Check("Subject", PASS, f"{len(subject)} characters")


def _preheader_check(pre: str | None) -> Check:
    if not pre:
        return Check(
            "Preheader",
            FAIL,
            "no preheader",
            [Finding("inboxes fill the preview line with the first text of the email", "mj-preview in the template")],
        )
    if len(pre) < PREHEADER_MIN:
        return Check(
            "Preheader",
            WARN,
            f"{len(pre)} characters; short preheaders get padded with body text",
            [Finding(f"“{pre}”", "mj-preview")],
        )
    if len(pre) > PREHEADER_MAX:
        return Check(
            "Preheader",
            WARN,
            f"{len(pre)} characters; inboxes show about 90-{PREHEADER_MAX}",
            [Finding(f"cut after “{pre[:PREHEADER_MAX]}…”", "mj-preview")],
        )
    return Check("Preheader", PASS, f"{len(pre)} characters")


def run_checks(
    *,
    html: str,
    text: str,
    subject: str,
    headers: dict[str, str],
    settings: Settings,
    unsubscribe_url: str | None,
    needs_list_headers: bool,
    scan: _Scan | None = None,
) -> list[Check]:
    """All checks of one rendered message, in the order the panel shows them.
    `unsubscribe_url` is the sample reader's own link (None: the email has none to check)."""
    scan = scan or scan_html(html)
    checks = [_size_check(html), _alt_check(scan), *_link_checks(scan, settings)]
    if unsubscribe_url is not None:
        checks.append(_unsubscribe_check(scan, text, headers, unsubscribe_url, needs_list_headers))
    checks += [_text_check(text), _subject_check(subject), _preheader_check(scan.preheader)]
    return checks


_LOCATION = re.compile(r"^(?P<file>[^\n]+?):(?P<line>\d+): ")


@dataclass
class TemplateProblem:
    """A TemplateError split into file, line and the template lines around it."""

    message: str
    file: str | None = None
    line: int | None = None
    excerpt: list[tuple[int, str]] = field(default_factory=list)

    @classmethod
    def from_message(cls, message: str, templates_dir: Path) -> TemplateProblem:
        m = _LOCATION.match(message)
        if not m:
            return cls(message)
        path, line = Path(m.group("file")), int(m.group("line"))
        shown = path.name
        try:
            shown = str(path.resolve().relative_to(templates_dir.resolve()))
        except ValueError:
            pass
        excerpt: list[tuple[int, str]] = []
        if "MJML error" not in message and path.is_file():
            try:
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                lines = []
            lo, hi = max(1, line - 3), min(len(lines), line + 3)
            excerpt = [(n, lines[n - 1]) for n in range(lo, hi + 1)]
        return cls(message, shown, line, excerpt)

    def as_check(self) -> Check:
        where = f"{self.file}, line {self.line}" if self.file and self.line else (self.file or "templates")
        return Check("Template", FAIL, "the template does not render", [Finding(self.message, where)])
