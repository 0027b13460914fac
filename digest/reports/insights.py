"""What readers did with an issue, counted honestly: clicks (scanners set aside), opens, the list over time.

Every request for a tracked link is kept (digest.reports.clicklog; repeats of one link of one
message within seconds on one row, its `hits`): counting decides which were people's, and counts
requests by `hits`, readers once. Set aside, each for the first reason that applies:

- `head`: a HEAD request (browsers follow links with GET; scanners check them with HEAD);
- `scanner_agent`: a User-Agent of a known mail-security scanner or HTTP library;
- `burst`: `[tracking] burst_links` or more different links of one message within
  `burst_seconds`: a gateway opening every link of a mail, not a person reading it.

Unique clicks count messages (one per reader of an issue); click-through is a share of the
emails sent. Opens come from the provider's webhooks (and the optional pixel) and are labelled
unreliable: Apple Mail Privacy Protection loads every image on delivery, others block images.

Clicks are counted per edition too (each click row names the edition whose links its position
is in); a comparison sent in several editions is counted across them in the issue's total.

Long because it is today's counting, kept whole as the oracle the set-based counts of issue 23 must match.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from digest.config import TrackingSettings
from digest.storage.models import (
    MAIN_EDITION_KEY,
    Click,
    Delivery,
    DeliveryStatus,
    Edition,
    EditionItem,
    Event,
    Issue,
    IssueStatus,
    SubscriberEventKind,
)
from digest.weeks import as_utc

OPENS_NOTE = (
    "Opens are unreliable: Apple Mail Privacy Protection (since 2021) loads every image when a mail "
    "arrives, so its readers all count as opened, and clients that block images never do."
)
SET_ASIDE_REASONS = {
    "head": "HEAD requests (browsers follow links with GET; link checkers use HEAD)",
    "scanner_agent": "a known scanner's or HTTP library's User-Agent",
    "burst": "many links of one message within seconds (a mail gateway opening every link)",
}


@dataclass
class _Hit:
    reader: int
    link: int
    method: str
    agent: str | None
    at: datetime
    edition: int | None = None
    reason: str | None = None
    hits: int = 1  # the requests this row stands for (repeats of one link within seconds)


def _classify(hits: list[_Hit], tracking: TrackingSettings) -> None:
    """Set `reason` on the hits that are not a reader's (see the module docstring)."""
    by_reader: dict[int, list[_Hit]] = defaultdict(list)
    for h in hits:
        if h.method.upper() == "HEAD":
            h.reason = "head"
        elif h.agent:
            h.reason = "scanner_agent"
        else:
            by_reader[h.reader].append(h)
    window = timedelta(seconds=tracking.burst_seconds)
    for own in by_reader.values():
        if len(own) < tracking.burst_links:
            continue
        own.sort(key=lambda h: h.at)
        for i, first in enumerate(own):
            span = [h for h in own[i:] if h.at - first.at <= window]
            if len({h.link for h in span}) >= tracking.burst_links:
                for h in span:
                    h.reason = "burst"


def _comparison(rank: int, data: dict[str, Any], slug: str) -> dict[str, Any]:
    cats = sorted({str(t.get("category") or "").strip() for t in data.get("tools") or [] if t.get("category")})
    return {
        "rank": rank,
        "slug": str(data.get("slug") or slug),
        "title": str(data.get("title") or ""),
        "categories": cats,
    }


@dataclass
class _Carrier:
    """One edition as sent (an issue frozen before editions is one, `id` None): its links by
    position, its comparisons by rank and the emails sent of it."""

    id: int | None
    key: str | None
    label: str | None
    links: list[dict[str, Any]]
    comparisons: dict[int, dict[str, Any]]
    sent: int = 0


def _edition_item(item: EditionItem) -> dict[str, Any]:
    """What was sent (the snapshot frozen with the edition; the comparison itself only if there is none)."""
    if item.snapshot and item.snapshot.get("slug"):
        return _comparison(item.rank, item.snapshot, str(item.snapshot["slug"]))
    c = item.comparison
    return _comparison(item.rank, {**c.data, "url": c.url, "slug": c.slug}, c.slug)


def _carriers(session: Session, issue: Issue) -> list[_Carrier]:
    """The issue's editions as sent; deliveries enqueued before editions (none named) got the main one."""
    sent = {
        e: int(n)
        for e, n in session.execute(
            select(Delivery.edition_id, func.count(Delivery.id))
            .where(Delivery.issue_id == issue.id, Delivery.status == DeliveryStatus.SENT)
            .group_by(Delivery.edition_id)
        )
    }
    rows = session.scalars(
        select(Edition)
        .where(Edition.issue_id == issue.id)
        .order_by(Edition.id)
        .options(selectinload(Edition.items).selectinload(EditionItem.comparison))
    ).all()  # one query per level, not per row
    return [
        _Carrier(
            row.id,
            row.key,
            row.label,
            list(row.links or []),
            {i.rank: _edition_item(i) for i in row.items},
            sent.get(row.id, 0) + (sent.get(None, 0) if row.key == MAIN_EDITION_KEY else 0),
        )
        for row in rows
    ]


def _hits(session: Session, issue_id: int, kind: str) -> list[_Hit]:
    q = select(Click.reader, Click.link, Click.method, Click.agent, Click.at, Click.edition_id, Click.hits).where(
        Click.issue_id == issue_id, Click.kind == kind
    )
    return [
        _Hit(int(r), int(link), str(m), a, as_utc(at), e, hits=int(n)) for r, link, m, a, at, e, n in session.execute(q)
    ]


def _requests(hits: Iterable[_Hit]) -> int:
    """Requests, not rows: a row holds the repeats of its link within seconds."""
    return sum(h.hits for h in hits)


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _counted(hits: list[_Hit], carriers: list[_Carrier], sent: int) -> dict[str, Any]:
    """Unique clicks, per comparison (by slug, across the carriers that had it) and per link."""
    readers = [h for h in hits if h.reason is None]
    set_aside = {reason: _requests(h for h in hits if h.reason == reason) for reason in SET_ASIDE_REASONS}
    comps: dict[str, dict[str, Any]] = {}
    clickers: dict[str, set[int]] = defaultdict(set)
    link_rows: list[dict[str, Any]] = []
    for carrier in carriers:
        for c in carrier.comparisons.values():
            row = comps.setdefault(c["slug"], {**c, "emails": 0, "editions": []})
            row["rank"] = min(row["rank"], c["rank"])
            row["emails"] += carrier.sent
            if carrier.key is not None:
                row["editions"].append(carrier.key)
        per_link: dict[int, list[_Hit]] = defaultdict(list)
        for h in readers:
            if h.edition == carrier.id:
                per_link[h.link].append(h)
                if h.link < len(carrier.links):
                    clickers[str(carrier.links[h.link].get("slug") or "")].add(h.reader)
        link_rows += [
            {
                "edition": carrier.key,
                "link": i,
                "rank": link.get("rank"),
                "place": link.get("place"),
                "slug": link.get("slug"),
                "url": link.get("url"),
                "clicks": _requests(per_link.get(i, ())),
                "unique_clicks": len({h.reader for h in per_link.get(i, ())}),
            }
            for i, link in enumerate(carrier.links)
        ]
    comparisons = [
        {
            **c,
            "unique_clicks": len(clickers.get(slug, ())),
            "click_through": _share(len(clickers.get(slug, ())), c["emails"]),
        }
        for slug, c in comps.items()
    ]
    comparisons.sort(key=lambda c: (-c["unique_clicks"], -(c["click_through"] or 0), c["rank"], c["slug"]))
    unique = len({h.reader for h in readers})
    return {
        "tracked": any(c.links for c in carriers),
        "recorded": _requests(hits),
        "reader_clicks": _requests(readers),
        "unique_clicks": unique,
        "click_through": _share(unique, sent),
        "set_aside": set_aside,
        "set_aside_total": sum(set_aside.values()),
        "set_aside_why": SET_ASIDE_REASONS,
        "comparisons": comparisons,
        "links": link_rows,
    }


def click_reports(
    session: Session, issue: Issue, tracking: TrackingSettings, sent: int | None = None
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The issue's click report, and one per edition (by key) when it has editions.

    A click token names its edition, and each click row keeps it: a position is looked up in
    that edition's links. Scanners are told apart over the whole issue (one reader, one
    delivery). In the issue's total a comparison sent in several editions is one row, its
    click-through a share of the emails of all the editions that carried it."""
    carriers = _carriers(session, issue)
    hits = _hits(session, issue.id, "click")
    _classify(hits, tracking)
    own = next((c.id for c in carriers if c.key == MAIN_EDITION_KEY), None)
    for h in hits:  # clicks on tokens made before editions name the main edition's links
        if h.edition is None:
            h.edition = own
    total = _counted(hits, carriers, sum(c.sent for c in carriers) if sent is None else sent)
    per = {c.key: _counted([h for h in hits if h.edition == c.id], [c], c.sent) for c in carriers if c.key is not None}
    return total, per


def click_report(session: Session, issue: Issue, tracking: TrackingSettings, sent: int | None = None) -> dict[str, Any]:
    """Unique clicks, click-through per comparison (ranked) and per link, and what was set aside."""
    return click_reports(session, issue, tracking, sent)[0]


def open_reports(
    session: Session, issue: Issue, tracking: TrackingSettings, sent: int, editions: Mapping[int, int] | None = None
) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """Unique opens of the issue, and of each edition (`editions`: id -> emails sent), from one read:
    the provider's `opened` stamps, and pixel opens that were not a scanner's. A pixel open belongs
    to its delivery's edition (kept on the row when unlinking makes it nobody's)."""
    opened = session.execute(
        select(Delivery.id, Delivery.edition_id).where(Delivery.issue_id == issue.id, Delivery.opened_at.is_not(None))
    ).all()
    q = (
        select(
            Click.reader,
            Click.link,
            Click.method,
            Click.agent,
            Click.at,
            func.coalesce(Click.edition_id, Delivery.edition_id),
        )
        .outerjoin(Delivery, Delivery.id == Click.delivery_id)
        .where(Click.issue_id == issue.id, Click.kind == "open")
    )
    main = session.scalar(select(Edition.id).where(Edition.issue_id == issue.id, Edition.key == MAIN_EDITION_KEY))
    stamps = [(d, main if e is None else e) for d, e in opened]  # enqueued before editions: the main one
    pixel = [
        _Hit(int(r), int(link), str(m), a, as_utc(at), main if e is None else e)
        for r, link, m, a, at, e in session.execute(q)
    ]
    _classify(pixel, tracking)  # by reader, and a reader is one delivery: the same answer per edition
    readers = [h for h in pixel if h.reason is None]

    def report(openers: set[int], emails: int) -> dict[str, Any]:
        return {
            "unique_opens": len(openers),
            "open_rate": _share(len(openers), emails),
            "reliable": False,
            "note": OPENS_NOTE,
            "sources": ["provider webhooks"] + (["tracking pixel"] if tracking.open_pixel else []),
        }

    total = report({int(d) for d, _ in stamps} | {h.reader for h in readers}, sent)
    per = {
        eid: report({int(d) for d, e in stamps if e == eid} | {h.reader for h in readers if h.edition == eid}, n)
        for eid, n in (editions or {}).items()
    }
    return total, per


def sent_count(session: Session, issue_id: int) -> int:
    q = select(func.count(Delivery.id)).where(Delivery.issue_id == issue_id, Delivery.status == DeliveryStatus.SENT)
    return int(session.scalar(q) or 0)


LIST_KINDS: dict[str, str] = {
    SubscriberEventKind.SUBSCRIBED: "sign_ups",
    SubscriberEventKind.CONFIRMED: "confirmations",
    SubscriberEventKind.UNSUBSCRIBED: "unsubscribes",
    SubscriberEventKind.BOUNCED: "bounces",
    SubscriberEventKind.COMPLAINED: "complaints",
    SubscriberEventKind.RESUBSCRIBED: "resubscribes",
}


def _week_of(moment: datetime) -> str:
    year, week, _ = as_utc(moment).isocalendar()
    return f"{year}-W{week:02d}"


def subscribers_by_week(session: Session, weeks: int = 26, now: datetime | None = None) -> list[dict[str, Any]]:
    """Per ISO week (oldest first, the last `weeks` with any event): sign-ups, confirmations,
    unsubscribes, bounces, complaints, and the list's size at the week's end (confirmed people
    and those who came back, less those who left), from the event trail (kept anonymous after erasure)."""
    rows = session.execute(select(Event.kind, Event.created_at).where(Event.kind.in_(list(LIST_KINDS))))
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(LIST_KINDS.values(), 0))
    for kind, at in rows:
        counts[_week_of(at)][LIST_KINDS[kind]] += 1
    if now is not None:
        counts[_week_of(now)]  # noqa: B018 - the current week shows even when nothing happened
    size = 0
    out = []
    for week in sorted(counts):
        c = counts[week]
        size += c["confirmations"] + c["resubscribes"] - c["unsubscribes"] - c["bounces"] - c["complaints"]
        out.append({"week": week, **c, "list_size": max(size, 0)})
    return out[-weeks:]


def sent_issues(session: Session, last: int) -> list[Issue]:
    return list(
        session.scalars(
            select(Issue)
            .where(Issue.status.in_([IssueStatus.SENDING, IssueStatus.SENT]))
            .order_by(Issue.week.desc())
            .limit(last)
        )
    )


def category_click_through(
    session: Session, tracking: TrackingSettings, issues: Iterable[Issue]
) -> list[dict[str, Any]]:
    """Per tool category: readers' unique clicks on its comparisons over the emails that carried them."""
    clicks: dict[str, int] = defaultdict(int)
    carried: dict[str, int] = defaultdict(int)
    comparisons: dict[str, int] = defaultdict(int)
    for issue in issues:
        sent = sent_count(session, issue.id)
        if not sent or issue.main_edition is None or not issue.main_edition.links:
            continue
        for comp in click_report(session, issue, tracking, sent)["comparisons"]:
            for cat in comp["categories"]:
                clicks[cat] += comp["unique_clicks"]
                carried[cat] += comp["emails"]
                comparisons[cat] += 1
    rows: list[dict[str, Any]] = [
        {
            "category": cat,
            "comparisons": comparisons[cat],
            "unique_clicks": clicks[cat],
            "emails": carried[cat],
            "click_through": _share(clicks[cat], carried[cat]),
        }
        for cat in carried
    ]
    rows.sort(key=lambda r: (-(r["click_through"] or 0), r["category"]))
    return rows


def over_time(
    session: Session, tracking: TrackingSettings, *, weeks: int = 26, last_issues: int = 12, now: datetime | None = None
) -> dict[str, Any]:
    """The list by week and click-through by category over the last issues."""
    return {
        "subscribers_by_week": subscribers_by_week(session, weeks, now),
        "click_through_by_category": category_click_through(session, tracking, sent_issues(session, last_issues)),
        "issues_counted": last_issues,
    }


def csv_rows(stats: dict[str, Any]) -> list[list[Any]]:
    """`digest stats --json` as rows (section, key, metric, value): the same numbers, for a spreadsheet."""
    rows: list[list[Any]] = [["section", "key", "metric", "value"]]
    week = stats.get("week", "")
    for key in (
        "recipients",
        "sent",
        "failed",
        "delivered",
        "bounced",
        "complained",
        "opened",
        "clicked",
        "unsubscribed",
    ):
        rows.append(["issue", week, key, stats.get(key)])
    opens = stats.get("opens") or {}
    rows.append(["issue", week, "unique_opens", opens.get("unique_opens")])
    clicks = stats.get("clicks") or {}
    for key in ("recorded", "reader_clicks", "unique_clicks", "click_through", "set_aside_total"):
        rows.append(["issue", week, key, clicks.get(key)])
    for reason, n in (clicks.get("set_aside") or {}).items():
        rows.append(["set_aside", reason, "clicks", n])
    for code, n in (stats.get("unsubscribe_reasons") or {}).items():
        rows.append(["unsubscribe_reason", code, "people", n])
    for c in clicks.get("comparisons") or []:
        rows.append(["comparison", c["slug"], "unique_clicks", c["unique_clicks"]])
        rows.append(["comparison", c["slug"], "click_through", c["click_through"]])
    for link in clicks.get("links") or []:
        edition = f"{link['edition']}:" if link.get("edition") else ""
        rows.append(
            ["link", f"{edition}{link['link']}:{link['slug']}:{link['place']}", "unique_clicks", link["unique_clicks"]]
        )
    for ed in stats.get("editions") or []:
        own = ed.get("clicks") or {}
        for key in ("recipients", "sent", "unique_clicks", "click_through"):
            rows.append(["edition", ed["key"], key, ed.get(key, own.get(key))])
        opens = ed.get("opens") or {}
        for key in ("unique_opens", "open_rate"):
            rows.append(["edition", ed["key"], key, opens.get(key)])
        for c in own.get("comparisons") or []:
            rows.append(["edition_comparison", f"{ed['key']}:{c['slug']}", "unique_clicks", c["unique_clicks"]])
            rows.append(["edition_comparison", f"{ed['key']}:{c['slug']}", "click_through", c["click_through"]])
    history = stats.get("over_time") or {}
    for w in history.get("subscribers_by_week") or []:
        for metric, value in w.items():
            if metric != "week":
                rows.append(["week", w["week"], metric, value])
    for c in history.get("click_through_by_category") or []:
        rows.append(["category", c["category"], "unique_clicks", c["unique_clicks"]])
        rows.append(["category", c["category"], "click_through", c["click_through"]])
    return rows


def people_clicks(
    session: Session, tracking: TrackingSettings, subscriber_ids: list[int]
) -> dict[int, list[dict[str, Any]]]:
    """Each person's clicks and pixel opens still linked to them, oldest first (for the export).

    Set aside as in the reports: a message's requests are told apart on their own (one reader
    is one delivery), clicks and opens separately. `requests`: the repeats of that link within
    seconds the entry stands for (one row). Rows that forget or the retention period
    unlinked name no delivery, so they are nobody's here.

    Long because one export row per request is built from the rows read once.
    """
    rows = session.execute(
        select(
            Delivery.subscriber_id,
            Click.id,
            Click.kind,
            Click.issue_id,
            Click.edition_id,
            Click.reader,
            Click.link,
            Click.method,
            Click.agent,
            Click.at,
            Click.hits,
        )
        .join(Delivery, Delivery.id == Click.delivery_id)
        .where(Delivery.subscriber_id.in_(subscriber_ids))
        .order_by(Click.at, Click.id)
    ).all()
    if not rows:
        return {}
    issues = {i.id: i for i in session.scalars(select(Issue).where(Issue.id.in_({r.issue_id for r in rows})))}
    edition_ids = {r.edition_id for r in rows if r.edition_id is not None}
    editions = (
        {e.id: e for e in session.scalars(select(Edition).where(Edition.id.in_(edition_ids)))} if edition_ids else {}
    )
    hits = {
        r.id: _Hit(int(r.reader), int(r.link), str(r.method), r.agent, as_utc(r.at), r.edition_id, hits=int(r.hits))
        for r in rows
    }
    for kind in ("click", "open"):
        _classify([hits[r.id] for r in rows if r.kind == kind], tracking)
    out: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        issue = issues[r.issue_id]
        edition = editions.get(r.edition_id) if r.edition_id is not None else None
        sent_in = edition if edition is not None else issue.main_edition  # no edition named: the main one
        links = list((sent_in.links if sent_in is not None else None) or [])
        link = links[r.link] if r.kind == "click" and 0 <= r.link < len(links) else {}
        out.setdefault(int(r.subscriber_id), []).append(
            {
                "at": as_utc(r.at).isoformat(timespec="seconds"),
                "kind": r.kind,
                "issue": issue.week,
                "edition": edition.key if edition is not None else None,
                "link": r.link if r.kind == "click" else None,
                "comparison": link.get("slug"),
                "url": link.get("url"),
                "method": r.method,
                "requests": int(r.hits),
                "set_aside": hits[r.id].reason,
            }
        )
    return out
