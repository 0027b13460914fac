"""The preview's charts: SVG drawn on the server by pygal, inline in the page, nothing fetched at view time.

Each chart comes with its title, a one-sentence text alternative (the SVG's `aria-label` and
the figure's caption) and the numbers as a table beside it: a chart is for looking, the table
for reading and copying. pygal's inline script (tooltips) is removed: the page's CSP allows
only its own scripts, and the charts need none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pygal
from markupsafe import Markup, escape
from pygal.style import Style

_STYLE = Style(
    background="transparent",
    plot_background="transparent",
    foreground="#15181e",
    foreground_strong="#15181e",
    foreground_subtle="#e3e6eb",
    opacity=".85",
    opacity_hover="1",
    colors=("#4f46e5", "#0ea5e9", "#f59e0b", "#15803d", "#b91c1c"),
    font_family='-apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif',
    label_font_size=13,
    major_label_font_size=13,
    value_font_size=13,
    title_font_size=16,
    legend_font_size=13,
    tooltip_font_size=13,
)
_SCRIPT = re.compile(r"<script\b.*?</script>", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)


@dataclass
class Chart:
    """One figure: `svg` (inline), `alt` (the text alternative), and the table of its numbers."""

    key: str
    title: str
    alt: str
    svg: Markup
    headers: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    note: str = ""

    @staticmethod
    def is_num(value: Any) -> bool:
        """Right-aligned in the table: counts, shares and their stand-ins (n/a, —)."""
        text = str(value)
        return isinstance(value, int | float) or text.endswith("%") or text in ("n/a", "—", "")


def _svg(chart: Any, title: str, alt: str) -> Markup:
    raw = chart.render(is_unicode=True)
    raw = _SCRIPT.sub("", _COMMENT.sub("", raw))
    label = f'role="img" aria-label="{escape(title)}: {escape(alt)}" focusable="false" '
    return Markup(raw.replace("<svg ", "<svg " + label, 1))


def _config(title: str, **extra: Any) -> dict[str, Any]:
    # The figure's heading names the chart (and the SVG's aria-label): no second title inside the drawing.
    return {
        "title": None,
        "style": _STYLE,
        "js": [],
        "disable_xml_declaration": True,
        "explicit_size": False,
        "width": 520,
        "height": 280,
        "show_legend": False,
        "print_values": False,
        "margin": 12,
        **extra,
    }


def list_over_time(weeks: list[dict[str, Any]]) -> Chart:
    """A line of the list's size at each week's end (the table adds what moved it)."""
    title = "The list over time"
    if not weeks:
        return Chart("list", title, "No sign-ups or departures recorded yet.", Markup(""), [])
    sizes = [int(w["list_size"]) for w in weeks]
    alt = (
        f"The list went from {sizes[0]} to {sizes[-1]} readers over {len(weeks)} week"
        f"{'s' if len(weeks) != 1 else ''} ({weeks[0]['week']} to {weeks[-1]['week']}); "
        f"largest {max(sizes)}."
    )
    chart = pygal.Line(
        **_config(title, x_label_rotation=0, show_minor_x_labels=False, dots_size=3, min_scale=2, max_scale=6)
    )
    chart.x_labels = [w["week"].split("-")[-1] for w in weeks]  # "W47": the year is in the table
    chart.x_labels_major = chart.x_labels[:: max(1, len(weeks) // 8)]
    chart.add("Readers", sizes)
    rows = [
        [w["week"], w["list_size"], w["sign_ups"], w["confirmations"], w["unsubscribes"], w["bounces"], w["complaints"]]
        for w in weeks
    ]
    return Chart(
        "list",
        title,
        alt,
        _svg(chart, title, alt),
        ["Week", "List", "Signed up", "Conf.", "Unsub.", "Bounced", "Compl."],
        rows,
    )


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def click_through(comparisons: list[dict[str, Any]], sent: int, *, set_aside: int = 0, editions: int = 1) -> Chart:
    """Bars of readers' click-through per comparison, most clicked first. With several editions a
    comparison's rank differs between them: bars are named by title, and the table says how many
    emails (of every edition that had it) each comparison's share is of."""
    title = "Click-through per comparison"
    note = f"{set_aside} scanner click{'s' if set_aside != 1 else ''} set aside, not counted." if set_aside else ""
    if not comparisons or not sent:
        return Chart("ctr", title, "Nothing sent yet, so no click-through.", Markup(""), [], note=note)
    top = comparisons[0]
    alt = (
        f"Of {sent} emails sent, {top['title']} drew the most readers: {top['unique_clicks']} "
        f"({_pct(top['click_through'])}); {len(comparisons)} comparisons in all."
    )
    chart = pygal.HorizontalBar(
        **_config(
            title,
            range=(0, max(0.01, max(c["click_through"] or 0 for c in comparisons) * 1.15)),
            value_formatter=_bar_pct,
            print_values=True,
            height=40 + 44 * len(comparisons),
            show_x_labels=False,
            truncate_label=24,
        )
    )
    if editions > 1:
        chart.x_labels = [c["title"] for c in reversed(comparisons)]
        chart.add("Click-through", [c["click_through"] or 0 for c in reversed(comparisons)])
        rows = [[c["title"], c.get("emails", sent), c["unique_clicks"], _pct(c["click_through"])] for c in comparisons]
        return Chart(
            "ctr",
            title,
            alt,
            _svg(chart, title, alt),
            ["Comparison (all editions)", "Emails", "Clicked", "CTR"],
            rows,
            note,
        )
    chart.x_labels = [f"#{c['rank']}" for c in reversed(comparisons)]  # the titles are in the table beside
    chart.add("Click-through", [c["click_through"] or 0 for c in reversed(comparisons)])
    rows = [[c["rank"], c["title"], c["unique_clicks"], _pct(c["click_through"])] for c in comparisons]
    return Chart("ctr", title, alt, _svg(chart, title, alt), ["#", "Comparison", "Clicked", "CTR"], rows, note)


def _bar_pct(v: float) -> str:
    """A bar's printed value; none on an empty bar, where it would run into the label (the table has it)."""
    return f"{v * 100:.0f}%" if v else ""


def _bar_pct_fine(v: float) -> str:
    return f"{v * 100:.1f}%" if v else ""


def delivery_funnel(stats: dict[str, Any]) -> Chart:
    """Sent, delivered, opened, clicked: each stage the transport or the tracking can tell."""
    title = "Delivery funnel"
    unmeasured = set(stats.get("unmeasured") or ())
    clicks = stats.get("clicks") or {}
    stages = [
        ("Sent", stats.get("sent", 0)),
        ("Delivered", None if "delivered" in unmeasured else stats["delivered"]),
        (
            "Opened",
            None
            if "opened" in unmeasured and not (stats.get("opens") or {}).get("unique_opens")
            else (stats.get("opens") or {}).get("unique_opens", 0),
        ),
        (
            "Clicked",
            clicks.get("unique_clicks", 0)
            if clicks.get("tracked")
            else (None if "clicked" in unmeasured else stats.get("clicked", 0)),
        ),
        ("Bounced", None if "bounced" in unmeasured else stats["bounced"]),
        ("Complained", None if "complained" in unmeasured else stats["complained"]),
        ("Unsubscribed", stats.get("unsubscribed", 0)),
    ]
    known = [(name, int(n)) for name, n in stages if n is not None]
    sent = int(stats.get("sent") or 0)
    unknown = [name.lower() for name, n in stages if n is None]
    alt = ", ".join(f"{n} {name.lower()}" for name, n in known) + "."
    note = (
        f"Not reported by this transport: {', '.join(unknown)}. " if unknown else ""
    ) + "Opens are unreliable since Apple Mail Privacy Protection."
    chart = pygal.HorizontalBar(
        **_config(
            title, print_values=True, height=40 + 40 * len(known), range=(0, max(1, sent) * 1.15), show_x_labels=False
        )
    )
    chart.x_labels = [name for name, _ in reversed(known)]
    chart.add("Emails", [n for _, n in reversed(known)])
    rows = [[name, "n/a" if n is None else n, "" if n is None or not sent else _pct(n / sent)] for name, n in stages]
    return Chart("funnel", title, alt, _svg(chart, title, alt), ["Stage", "Emails", "Of sent"], rows, note)


def category_click_through(rows_in: list[dict[str, Any]]) -> Chart:
    title = "Click-through by category"
    if not rows_in:
        return Chart("categories", title, "No tracked clicks yet.", Markup(""), [])
    alt = (
        f"Readers clicked {rows_in[0]['category']} comparisons most ({_pct(rows_in[0]['click_through'])}); "
        f"{len(rows_in)} categor{'ies' if len(rows_in) != 1 else 'y'} over the last issues."
    )
    chart = pygal.HorizontalBar(
        **_config(
            title,
            print_values=True,
            value_formatter=_bar_pct_fine,
            height=40 + 40 * len(rows_in),
            truncate_label=24,
            show_x_labels=False,
        )
    )
    chart.x_labels = [r["category"] for r in reversed(rows_in)]
    chart.add("Click-through", [r["click_through"] or 0 for r in reversed(rows_in)])
    rows = [
        [r["category"], r["comparisons"], r["unique_clicks"], r["emails"], _pct(r["click_through"])] for r in rows_in
    ]
    return Chart(
        "categories", title, alt, _svg(chart, title, alt), ["Category", "Compar­isons", "Clicked", "Emails", "CTR"], rows
    )


def edition_click_through(editions: list[dict[str, Any]]) -> list[Chart]:
    """With several editions: bars of each edition's click-through, then each edition's comparisons as a
    table (its own readers, its own emails sent), most clicked first."""
    counted = [e for e in editions if e.get("clicks") and e["clicks"].get("tracked") and e.get("sent")]
    if len(editions) < 2 or not counted:
        return []
    title = "Click-through per edition"
    top = max(counted, key=lambda e: e["clicks"]["click_through"] or 0)
    alt = (
        f"{len(counted)} editions sent; {top['label']} drew the most readers: "
        f"{top['clicks']['unique_clicks']} of {top['sent']} ({_pct(top['clicks']['click_through'])})."
    )
    chart = pygal.HorizontalBar(
        **_config(
            title,
            range=(0, max(0.01, max(e["clicks"]["click_through"] or 0 for e in counted) * 1.15)),
            value_formatter=_bar_pct,
            print_values=True,
            height=40 + 44 * len(counted),
            truncate_label=24,
            show_x_labels=False,
        )
    )
    chart.x_labels = [e["label"] for e in reversed(counted)]
    chart.add("Click-through", [e["clicks"]["click_through"] or 0 for e in reversed(counted)])
    rows = [
        [
            e["label"],
            e["sent"],
            (e.get("opens") or {}).get("unique_opens", ""),
            e["clicks"]["unique_clicks"],
            _pct(e["clicks"]["click_through"]),
        ]
        for e in counted
    ]
    out = [
        Chart(
            "ctr-editions", title, alt, _svg(chart, title, alt), ["Edition", "Sent", "Opened", "Clicked", "CTR"], rows
        )
    ]
    for i, e in enumerate(counted, start=1):
        comps = e["clicks"]["comparisons"]
        best = comps[0] if comps else None
        alt = (
            f"Of {e['sent']} emails of this edition, {best['title']} drew the most readers: "
            f"{best['unique_clicks']} ({_pct(best['click_through'])})."
            if best
            else "No comparisons."
        )
        out.append(
            Chart(
                f"ctr-edition-{i}",
                f"Click-through per comparison: {e['label']}",
                alt,
                Markup(""),
                ["#", "Comparison", "Clicked", "CTR"],
                [[c["rank"], c["title"], c["unique_clicks"], _pct(c["click_through"])] for c in comps],
            )
        )
    return out
