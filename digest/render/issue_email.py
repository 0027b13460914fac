"""Render an issue: context from the stored picks, Jinja2 + MJML once, placeholders for each reader."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from digest import plaintext
from digest.config import Config
from digest.mail import NoUriForm, ascii_uri
from digest.render.personalize import markers, new_nonce
from digest.render.templates import cached_env, compile_mjml, render_template
from digest.render.tracked import add_links
from digest.selection.scoring import tool_key
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
    links: list[dict[str, Any]] | None = None  # tracked links by position (None: clicks not tracked)


def with_utm(url: str, campaign: str) -> str:
    """The destination with this issue's UTM parameters, as a URI (a comparison stored before ingest did that).

    One stored before ingest refused IRIs with no URI form (bad port, bad host) keeps its IRI: one bad link
    must not stop a week's issue, and the click redirect answers "link not valid" for it."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not k.startswith("utm_")]
    query += [("utm_source", "newsletter"), ("utm_medium", "email"), ("utm_campaign", campaign)]
    iri = urlunsplit(parts._replace(query=urlencode(query)))
    try:
        return ascii_uri(iri)
    except NoUriForm:
        return iri


_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)]*\s+(?=[\"'“‘(]?[A-Z0-9])")


def sentences(text: str) -> list[str]:
    """Split prose at sentence ends (a stop followed by a capital), keeping `3.2` and `e.g. x` intact."""
    return [s for s in _SENTENCE_END.split(" ".join(text.split())) if s]


ELLIPSIS = "\u00a0…"  # a no-break space keeps the ellipsis on the line of the last word


def pull_quote(text: str, limit: int = 220) -> str:
    """The quote as it fits in `limit` characters: whole sentences, or failing that whole words,
    ending with an ellipsis whenever something was left out (a reader must know it was shortened)."""
    text = " ".join(text.split()).strip('“”"')
    if len(text) <= limit:
        return text
    out = ""
    for s in sentences(text):
        if len(out) + len(s) + (1 if out else 0) > limit - len(ELLIPSIS):
            break
        out = f"{out} {s}" if out else s
    if out:
        return out + ELLIPSIS
    head = text[: limit - 1]
    cut = head.rsplit(" ", 1)[0] if " " in head and not text[limit - 1 : limit].isspace() else head
    return cut.rstrip(" ,;:—–-") + "…"


def _quote_key(text: str) -> str:
    return " ".join(str(text).split()).strip('“”"').casefold()


def pick_quote(
    quotes: list[dict[str, Any]], which: str, limit: int = 220, avoid: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any] | None:
    """The first of the tool's quotes not in `avoid` whose opening sentence fits `limit`.

    A reviewer's quote is a paragraph; a pull quote must be short and end where a sentence ends,
    so a later reviewer's quote is taken when the first one opens with an over-long sentence.
    `avoid` holds quotes an earlier card already showed (`_quote_key` of the shown text): a tool that
    appears in two comparisons gets a different reviewer the second time, or no quote at all.
    """
    own = [
        (q, pull_quote(str(q["text"]), limit))
        for q in quotes
        if q.get("tool") == which and str(q.get("text", "")).strip()
    ]
    own = [(q, t) for q, t in own if _quote_key(t) not in avoid]
    for q, trimmed in own:
        if not trimmed.endswith("…") or trimmed.endswith(ELLIPSIS):  # whole sentences first
            return {"text": trimmed, "reviewer": q.get("reviewer", 1)}
    if own:
        q, trimmed = own[0]
        return {"text": trimmed, "reviewer": q.get("reviewer", 1)}
    return None


def _favourite(a: dict[str, Any], b: dict[str, Any], key: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    if a.get(key) is None or b.get(key) is None or a[key] == b[key]:
        return None
    return (a, b) if a[key] > b[key] else (b, a)


def verdict(tool_a: dict[str, Any], tool_b: dict[str, Any]) -> str:
    """The panel's verdict in one line, and the community's when it prefers the other tool."""
    panel = _favourite(tool_a, tool_b, "panel_ship")
    if panel is None:
        return "The panel ships both" if tool_a["panel_ship"] >= 50 else "The panel ships neither"
    win, lose = panel
    line = f"The panel favours {win['name']} ({win['panel_ship']}% vs {lose['panel_ship']}%)"
    crowd = _favourite(tool_a, tool_b, "community")
    if crowd is not None and crowd[0] is not win:
        line += f"; the community prefers {crowd[0]['name']} ({crowd[0]['community']}% vs {crowd[1]['community']}%)"
    return line


def item_context(
    item: Any, week: str, first_seen: dict[str, int] | None = None, shown_quotes: set[str] | None = None
) -> dict[str, Any]:
    """One card's values; quote_a/quote_b are `{text, reviewer}` or None.

    `first_seen` (tool key -> rank of its first card) and `shown_quotes` carry what earlier cards
    showed: a tool seen before gets `seen_in_a`/`seen_in_b` (that rank) and never the same quote.
    """
    first_seen = {} if first_seen is None else first_seen
    shown_quotes = set() if shown_quotes is None else shown_quotes
    data = item.comparison.data
    tools = data["tools"]
    quotes = data.get("quotes", [])
    ctx: dict[str, Any] = {
        "rank": item.rank,
        "title": data["title"],
        "slug": item.comparison.slug,
        "intro": data.get("intro", ""),
        "url": with_utm(item.comparison.url, week),
        "tool_a": tools[0],
        "tool_b": tools[1],
        "verdict": verdict(tools[0], tools[1]),
        "score": item.score,
        "community_votes": data.get("community_votes"),
    }
    for side, tool in (("a", tools[0]), ("b", tools[1])):
        quote = pick_quote(quotes, side, avoid=shown_quotes)
        if quote is not None:
            shown_quotes.add(_quote_key(quote["text"]))
        ctx[f"quote_{side}"] = quote
        ctx[f"seen_in_{side}"] = first_seen.get(tool_key(tool))
    for tool in tools[:2]:
        first_seen.setdefault(tool_key(tool), item.rank)
    return ctx


def items_context(items: list[Any], week: str) -> list[dict[str, Any]]:
    """Every card, in rank order, each knowing what the cards above it showed."""
    first_seen: dict[str, int] = {}
    shown: set[str] = set()
    return [item_context(i, week, first_seen, shown) for i in items]


SUBJECT_MAX = 60  # phones show about 60 characters; the preview's subject check uses this too
PREHEADER_MAX = 140  # inboxes show about 90-140; the preview's preheader check uses this too


def _fit(text: str, limit: int) -> str:
    """`text`, or its words up to `limit` characters with an ellipsis."""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:—–-") + "…"


def subject_for(site_name: str, number: int | None, items: list[dict[str, Any]]) -> str:
    """The week's top comparison first, then how many more, within SUBJECT_MAX characters.

    The newsletter's name is the sender's name in every inbox, and the issue number is in the
    preheader: the subject's room goes to what this issue is about.
    """
    if not items:
        return _fit(f"{site_name}: this week's verdicts", SUBJECT_MAX)
    head = str(items[0]["title"])
    more = f" + {len(items) - 1} more" if len(items) > 1 else ""
    if len(head) + len(more) <= SUBJECT_MAX:
        return head + more
    return _fit(head, SUBJECT_MAX)


def preheader_for(site_name: str, number: int | None, items: list[dict[str, Any]]) -> str:
    """What the subject leaves out: the other comparisons by name (as many as fit), the top
    comparison's verdict when there is room, and the issue number."""
    issue = f" Issue {number}." if number else ""
    if not items:
        return f"{site_name}: the panel's verdicts and the community vote.{issue}"
    lead = items[0]["verdict"] + "."
    others = [i["title"] for i in items[1:]]
    if not others:
        return _fit(f"{lead} {site_name}.{issue}", PREHEADER_MAX)
    also = ""
    for k in range(len(others), -1, -1):  # as many titles as fit; at least the count
        rest = len(others) - k
        if k:
            listed = ", ".join(others[:k]) if rest else " and ".join([", ".join(others[: k - 1]), others[k - 1]][-k:])
            also = "Also: " + listed + (f" and {rest} more" if rest else "") + "."
        else:
            also = f"Also: {rest} more comparison{'s' if rest > 1 else ''}."
        if len(also) + len(issue) <= PREHEADER_MAX:
            break
    text = f"{lead} {also}{issue}"
    return text if len(text) <= PREHEADER_MAX else _fit(also + issue, PREHEADER_MAX)


@dataclass(frozen=True)
class EditionView:
    """What a reader's edition tells them about itself: its topics, whether it is the monthly one,
    and from which card on it shows the overall best because its topics had too few."""

    label: str = "All topics"
    topics: tuple[str, ...] = ()  # topic names; () = every topic
    monthly: bool = False

    def as_context(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        first_filler = next((i["rank"] for i in items if i.get("filler")), None)
        return {
            "label": self.label,
            "topics": list(self.topics),
            "monthly": self.monthly,
            "period": "month" if self.monthly else "week",
            "first_filler": first_filler,
        }


def issue_context(
    config: Config, issue: Issue, personal: dict[str, str], source: list[Any], *, edition: EditionView | None = None
) -> dict[str, Any]:
    s = config.settings
    items = items_context(source, issue.week)
    for ctx, item in zip(items, source):
        ctx["filler"] = bool(getattr(item, "filler", False))
    add_links(items, None)  # plain links; compile_issue puts a tracked link's marker in their place
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
        "edition": (edition or EditionView()).as_context(items),
        "subject": subject_for(s.site.name, issue.number, items),
        "preheader": preheader_for(s.site.name, issue.number, items),
        "personal": personal,
        "tracking": s.tracking,
    }


def compile_issue(
    config: Config, issue: Issue, items: list[Any], *, edition: EditionView | None = None
) -> CompiledEmail:
    """Render the digest of `issue` with `items` (its edition's picks, rank order: EditionItems or alike),
    as one of its editions (`edition`; None: every topic, weekly); raises TemplateError naming file and line."""
    nonce = new_nonce()
    ctx = issue_context(config, issue, markers(nonce), items, edition=edition)
    tracked = config.settings.tracking.clicks
    links = add_links(ctx["items"], nonce if tracked else None)
    html, text = render_pair(config, "digest", ctx)
    subject, preheader = plaintext.one_line(ctx["subject"]), plaintext.one_line(ctx["preheader"])  # headers
    return CompiledEmail(subject, preheader, html, text, nonce, size_warnings(html), links if tracked else None)


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
