"""The public archive: every issue that went out, its web version, and an Atom feed.

    GET /archive          list of sent issues (and the one being sent), newest first
    GET /archive/<week>   the issue's web version: the compiled email with neutral values in
                          place of the personal ones (no token, no name), plus a banner
    GET /archive.xml      Atom feed linking to each web version

The emails' "View in browser" link points at /archive/<week>. Drafts and skipped weeks
are never shown. Pages are Jinja2 with autoescaping; the email HTML was escaped when
it was rendered, and the neutral values are escaped by the Personalizer.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import selectinload

from digest import plaintext
from digest.config import Settings
from digest.errors import UserError
from digest.render.issue_email import verdict
from digest.render.personalize import Personalizer
from digest.render.tracked import BLANK_GIF_URL, direct_values
from digest.runtime import Runtime
from digest.storage.models import Edition, EditionItem, Issue, IssueStatus
from digest.weeks import Week, as_utc

router = APIRouter()
log = logging.getLogger("digest.web.archive")

TEMPLATES = Path(__file__).resolve().parent / "templates"
PUBLIC = (IssueStatus.SENDING, IssueStatus.SENT)  # frozen issues: readers already have them in their inbox
FEED_ENTRIES = 50
ATOM_NS = "http://www.w3.org/2005/Atom"
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Cache-Control": "public, max-age=300",
}

# Web fonts the email may import from a third party: a public page makes no third-party requests.
_REMOTE_FONT_LINK = re.compile(r"<link\b[^>]*\bhref=\"https?://[^\"]*fonts[^\"]*\"[^>]*>", re.I)
_REMOTE_FONT_IMPORT = re.compile(r"@import\s+url\(\s*['\"]?https?://[^)]*\)\s*;?", re.I)
_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.I)
_HEAD_CLOSE = re.compile(r"</head\s*>", re.I)


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


_ENV = _env()


@dataclass(frozen=True)
class Entry:
    """What the list and the feed show of one issue."""

    week: str
    number: int | None
    title: str
    summary: str
    date: str  # "16 November 2026", in the schedule's time zone
    date_iso: str
    updated: datetime
    published: datetime


def _moment(issue: Issue) -> datetime:
    """When the issue went out: the send's end, or its start while it is still sending."""
    when = issue.sent_at or issue.enqueued_at or issue.scheduled_for or issue.created_at
    return as_utc(when)


def entry_for(settings: Settings, issue: Issue) -> Entry:
    # Atom: `updated` is the send time and `published` (the send's start) never later, even for an
    # issue sent by hand before its slot.
    published = min(as_utc(issue.enqueued_at), _moment(issue)) if issue.enqueued_at else _moment(issue)
    local = published.astimezone(ZoneInfo(settings.schedule.timezone))
    main = issue.main_edition  # the issue's content: its main edition (loaded with it)
    return Entry(
        week=issue.week,
        number=issue.number,
        title=(main.subject if main else None) or f"{settings.site.name} {issue.week}",
        summary=(main.preheader if main else None) or "",
        date=f"{local:%-d %B %Y}",
        date_iso=local.date().isoformat(),
        updated=_moment(issue),
        published=published,
    )


def public_issues(rt: Runtime, limit: int | None = None, *, with_items: bool = False) -> list[Issue]:
    """Frozen issues, newest first, each with its main edition (and its picks, `with_items`) loaded."""
    main = selectinload(Issue.main_edition)
    if with_items:
        main = main.selectinload(Edition.items).selectinload(EditionItem.comparison)
    q = select(Issue).where(Issue.status.in_(PUBLIC)).order_by(Issue.week.desc()).options(main)
    if limit:
        q = q.limit(limit)
    with rt.sessions() as session:
        return list(session.scalars(q))


# Stand-ins for the personal links, found again in the filled HTML (no character the escaper changes).
_MANAGE, _UNSUBSCRIBE = "about:digest-manage-link", "about:digest-unsubscribe-link"


def _anchor(href: str) -> re.Pattern[str]:
    return re.compile(rf'(<a\b[^>]*?\bhref="){re.escape(href)}("[^>]*>).*?(</a>)', re.S | re.I)


def _public_links(html: str) -> str:
    """An anonymous reader has no subscription to manage or leave: the manage link becomes
    "Subscribe" (the hosted sign-up page, same style), the unsubscribe link goes."""
    html = _anchor(_MANAGE).sub(r"\g<1>/subscribe\g<2>Subscribe\g<3>", html)
    html = re.sub(_anchor(_UNSUBSCRIBE).pattern + r"[ \t]*", "", html, flags=re.S | re.I)
    return html.replace(_MANAGE, "/subscribe").replace(_UNSUBSCRIBE, "/subscribe")


def web_version(settings: Settings, issue: Issue) -> str:
    """The compiled email with neutral values for the personal markers, and the archive banner."""
    main = issue.main_edition
    assert main is not None and main.html is not None and main.placeholder_nonce
    view = f"/archive/{issue.week}"
    personalizer = Personalizer.build(main.html, main.text or "", main.placeholder_nonce)
    neutral = {
        "view_url": view,
        "manage_url": _MANAGE,
        "unsubscribe_url": _UNSUBSCRIBE,
        "name": "",
        "greeting": "Hi there,",
        **direct_values(main.links),  # tracked links go straight to the comparison on the web
        "open_url": BLANK_GIF_URL,  # no pixel
    }
    # A personal field added to the templates later still gets a safe value: links go to the archive.
    for slot in personalizer.html_slots:
        neutral.setdefault(slot, "/archive" if slot.endswith("_url") else "")
    html, _ = personalizer.fill(neutral)
    html = _public_links(html)
    html = _REMOTE_FONT_LINK.sub("", html)
    html = _REMOTE_FONT_IMPORT.sub("", html)
    entry = entry_for(settings, issue)
    head_extra = _ENV.from_string(
        '<link rel="icon" href="data:,"><link rel="canonical" href="{{ canonical }}">'
        '<link rel="alternate" type="application/atom+xml" title="{{ name }}" href="/archive.xml">'
        '<meta name="description" content="{{ summary }}">'
    ).render(canonical=f"{settings.site.public_url}{view}", name=settings.site.name, summary=entry.summary)
    banner = _ENV.get_template("archive_banner.html.j2").render(number=issue.number, date=entry.date)
    html = _HEAD_CLOSE.sub(lambda m: head_extra + m.group(0), html, count=1)
    match = _BODY_OPEN.search(html)
    if match:
        html = html[: match.end()] + banner + html[match.end() :]
    else:
        html = banner + html
    return html


def _page(name: str, rt: Runtime, status: int = 200, **context: Any) -> HTMLResponse:
    s = rt.settings
    body = _ENV.get_template(name).render(
        site=s.site, schedule=s.schedule, public_url=s.site.public_url, feed_url="/archive.xml", **context
    )
    headers = dict(HEADERS)
    if status != 200:
        headers["Cache-Control"] = "no-store"
    return HTMLResponse(body, status_code=status, headers=headers)


def _database_guard(handler: Callable[..., Response]) -> Callable[..., Response]:
    """A database outage answers 503 with a short message, never a 500 with a traceback."""

    @functools.wraps(handler)
    def wrapper(request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return handler(request, *args, **kwargs)
        except SQLAlchemyError as exc:
            log.error("archive: database error: %s", str(exc).splitlines()[0])
            return Response(
                "The archive is unavailable for a moment; please try again shortly.\n",
                status_code=503,
                media_type="text/plain; charset=utf-8",
                headers={"Retry-After": "60", "Cache-Control": "no-store"},
            )

    return wrapper


@router.api_route("/archive", methods=["GET", "HEAD"], include_in_schema=False)
@_database_guard
def archive_list(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    issues = [entry_for(rt.settings, i) for i in public_issues(rt)]
    return _page("archive_list.html.j2", rt, issues=issues)


@router.api_route("/archive/", methods=["GET", "HEAD"], include_in_schema=False)
def archive_list_slash(request: Request) -> Response:
    return archive_list(request)


@router.api_route("/archive/{week}", methods=["GET", "HEAD"], include_in_schema=False)
@_database_guard
def archive_issue(request: Request, week: str) -> Response:
    rt: Runtime = request.app.state.rt
    try:
        key = Week.parse(week[:20]).key
    except UserError as exc:
        return _page("archive_missing.html.j2", rt, status=404, message=str(exc).removeprefix("week: "))
    with rt.sessions() as session:
        issue = session.scalar(
            select(Issue).where(Issue.week == key, Issue.status.in_(PUBLIC)).options(selectinload(Issue.main_edition))
        )
    main = issue.main_edition if issue is not None else None
    if issue is None or main is None or not main.html or not main.placeholder_nonce:
        return _page("archive_missing.html.j2", rt, status=404, message=f"No issue went out in week {key}.")
    return HTMLResponse(web_version(rt.settings, issue), headers=HEADERS)


def _text(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    el.text = plaintext.strip(text)  # XML 1.0 cannot hold control characters: one would break the feed
    return el


def _stamp(moment: datetime) -> str:
    return as_utc(moment).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _entry_content(issue: Issue) -> str:
    """A short HTML list of the issue's comparisons (escaped by the serializer as Atom type="html")."""
    rows = []
    for item in issue.main_edition.items if issue.main_edition is not None else ():
        # What was sent (frozen with the issue); issues frozen before snapshots existed fall back to today's row.
        data = item.snapshot or {**item.comparison.data, "url": item.comparison.url, "slug": item.comparison.slug}
        tools = data.get("tools") or []
        line = Markup('<li><a href="{}">{}</a>').format(data.get("url", ""), data.get("title", data.get("slug", "")))
        if len(tools) == 2:
            line += Markup(" — {}").format(verdict(tools[0], tools[1]))
        rows.append(line + Markup("</li>"))
    return str(Markup("<ul>") + Markup("").join(rows) + Markup("</ul>")) if rows else ""


def atom_feed(rt: Runtime) -> bytes:
    s = rt.settings
    base = s.site.public_url
    issues = public_issues(rt, FEED_ENTRIES, with_items=True)
    entries = [(entry_for(s, i), i) for i in issues]
    feed = ET.Element("feed", {"xmlns": ATOM_NS, "{http://www.w3.org/XML/1998/namespace}lang": s.site.language})
    _text(feed, "id", f"{base}/archive")
    _text(feed, "title", s.site.name)
    _text(feed, "subtitle", s.site.tagline)
    updated = max((e.updated for e, _ in entries), default=None)
    _text(feed, "updated", _stamp(updated) if updated else "1970-01-01T00:00:00Z")
    ET.SubElement(feed, "link", {"rel": "self", "type": "application/atom+xml", "href": f"{base}/archive.xml"})
    ET.SubElement(feed, "link", {"rel": "alternate", "type": "text/html", "href": f"{base}/archive"})
    author = ET.SubElement(feed, "author")
    _text(author, "name", s.site.name)
    _text(author, "uri", s.site.site_url)
    _text(feed, "generator", "weekly-ai-tool-verdicts")
    for entry, issue in entries:
        el = ET.SubElement(feed, "entry")
        _text(el, "id", f"{base}/archive/{entry.week}")
        _text(el, "title", entry.title)
        ET.SubElement(el, "link", {"rel": "alternate", "type": "text/html", "href": f"{base}/archive/{entry.week}"})
        _text(el, "published", _stamp(entry.published))
        _text(el, "updated", _stamp(entry.updated))
        if entry.summary:
            _text(el, "summary", entry.summary)
        content = _entry_content(issue)
        if content:
            _text(el, "content", content, type="html")
    document: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return document


@router.api_route("/archive.xml", methods=["GET", "HEAD"], include_in_schema=False)
@_database_guard
def archive_feed(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    return Response(
        atom_feed(rt),
        media_type="application/atom+xml; charset=utf-8",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=300"},
    )
