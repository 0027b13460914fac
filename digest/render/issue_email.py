"""Render an issue: context from the stored picks, Jinja2 + MJML once, placeholders for each reader."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from digest import plaintext
from digest.config import Config
from digest.render.personalize import markers, new_nonce
from digest.render.templates import cached_env, compile_mjml, render_template
from digest.storage.models import Issue
from digest.weeks import Week, as_utc

GMAIL_CLIP_BYTES = 102 * 1024
WARN_BYTES = 90 * 1024


@dataclass
class CompiledEmail:
    subject: str
    preheader: str
    html: str  # with personalization markers
    text: str
    nonce: str
    warnings: list[str]


def with_utm(url: str, campaign: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not k.startswith("utm_")]
    query += [("utm_source", "newsletter"), ("utm_medium", "email"), ("utm_campaign", campaign)]
    return urlunsplit(parts._replace(query=urlencode(query)))


_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)]*\s+(?=[\"'“‘(]?[A-Z0-9])")


def sentences(text: str) -> list[str]:
    """Split prose at sentence ends (a stop followed by a capital), keeping `3.2` and `e.g. x` intact."""
    return [s for s in _SENTENCE_END.split(" ".join(text.split())) if s]


def pull_quote(text: str, limit: int = 220) -> str:
    """Trim at a sentence boundary within `limit` characters; fall back to a word boundary."""
    text = " ".join(text.split()).strip("“”\"")
    if len(text) <= limit:
        return text
    out = ""
    for s in sentences(text):
        if len(out) + len(s) + (1 if out else 0) > limit:
            break
        out = f"{out} {s}" if out else s
    if out:
        return out
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(",;:—–-")
    return cut + "…"


def pick_quote(quotes: list[dict[str, Any]], which: str, limit: int = 220) -> dict[str, Any] | None:
    """The first of the tool's quotes whose opening sentence fits `limit`, trimmed at a sentence end.

    A reviewer's quote is a paragraph; a pull quote must be short and end where a sentence ends,
    so a later reviewer's quote is taken when the first one opens with an over-long sentence.
    """
    own = [q for q in quotes if q.get("tool") == which and str(q.get("text", "")).strip()]
    for q in own:
        trimmed = pull_quote(str(q["text"]), limit)
        if not trimmed.endswith("…"):
            return {"text": trimmed, "reviewer": q.get("reviewer", 1)}
    if own:
        return {"text": pull_quote(str(own[0]["text"]), limit), "reviewer": own[0].get("reviewer", 1)}
    return None


def verdict(tool_a: dict[str, Any], tool_b: dict[str, Any]) -> str:
    a, b = tool_a["panel_ship"], tool_b["panel_ship"]
    if a == b:
        if a >= 50:
            return "The panel ships both"
        return "The panel ships neither"
    win, lose = (tool_a, tool_b) if a > b else (tool_b, tool_a)
    return f"The panel favours {win['name']} ({win['panel_ship']}% vs {lose['panel_ship']}%)"


def item_context(item: Any, week: str) -> dict[str, Any]:
    """One card's values; quote_a/quote_b are `{text, reviewer}` or None."""
    data = item.comparison.data
    tools = data["tools"]
    quotes = data.get("quotes", [])
    return {
        "rank": item.rank,
        "title": data["title"],
        "slug": item.comparison.slug,
        "intro": data.get("intro", ""),
        "url": with_utm(item.comparison.url, week),
        "tool_a": tools[0],
        "tool_b": tools[1],
        "quote_a": pick_quote(quotes, "a"),
        "quote_b": pick_quote(quotes, "b"),
        "verdict": verdict(tools[0], tools[1]),
        "score": item.score,
        "community_votes": data.get("community_votes"),
    }


def subject_for(site_name: str, number: int | None, items: list[dict[str, Any]]) -> str:
    head = items[0]["title"] if items else "This week's verdicts"
    more = f" + {len(items) - 1} more" if len(items) > 1 else ""
    num = f" #{number}" if number else ""
    return f"{site_name}{num}: {head}{more}"


def preheader_for(items: list[dict[str, Any]]) -> str:
    titles = [i["title"] for i in items[:3]]
    rest = len(items) - len(titles)
    text = "This week: " + ", ".join(titles)
    return text + (f" and {rest} more" if rest > 0 else "")


def issue_context(config: Config, issue: Issue, personal: dict[str, str]) -> dict[str, Any]:
    s = config.settings
    items = [item_context(i, issue.week) for i in issue.items]
    if issue.scheduled_for:
        date = as_utc(issue.scheduled_for).astimezone(ZoneInfo(s.schedule.timezone)).date()
    else:
        date = Week.parse(issue.week).day(s.schedule.weekday_index)
    return {
        "site": s.site,
        "sender": s.sender,
        "issue": {
            "week": issue.week,
            "number": issue.number,
            "date": f"{date:%A %-d %B %Y}",
            "editor_note": issue.editor_note or "",
        },
        "schedule": s.schedule,
        "items": items,
        "subject": subject_for(s.site.name, issue.number, items),
        "preheader": preheader_for(items),
        "personal": personal,
    }


def compile_issue(config: Config, issue: Issue) -> CompiledEmail:
    """Render the digest for `issue` (items loaded); raises TemplateError naming file and line."""
    nonce = new_nonce()
    ctx = issue_context(config, issue, markers(nonce))
    html, text = render_pair(config, "digest", ctx)
    subject, preheader = plaintext.one_line(ctx["subject"]), plaintext.one_line(ctx["preheader"])  # headers
    return CompiledEmail(subject, preheader, html, text, nonce, size_warnings(html))


def render_pair(config: Config, name: str, ctx: dict[str, Any]) -> tuple[str, str]:
    """Render `<name>.mjml.j2` to HTML and `<name>.txt.j2` to text; TemplateError names file and line."""
    env = cached_env(config.templates_dir)
    mjml_source = render_template(env, f"{name}.mjml.j2", ctx)
    html = compile_mjml(mjml_source, config.templates_dir / f"{name}.mjml.j2", env)
    text = render_template(env, f"{name}.txt.j2", ctx).rstrip() + "\n"
    return html, text


def size_warnings(html: str) -> list[str]:
    from digest.errors import TemplateError

    size = len(html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        raise TemplateError(f"the rendered HTML is {size // 1024} KB; Gmail clips past 102 KB, so it is not sent")
    if size > WARN_BYTES:
        return [f"the rendered HTML is {size // 1024} KB, close to Gmail's 102 KB clipping limit"]
    return []
