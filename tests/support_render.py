"""Build issues for rendering tests and the render benchmark without a database.

`sample_issue(n)` returns a transient Issue whose `picks` (the rows of its main edition, which
`compile_sample` compiles it with) hold the sample comparisons plus
variations of them (different tools, panel splits, community votes, prices), so a 5-item
issue looks like a real week: a clear favourite, a split verdict, tools with no votes yet, a community
vote that disagrees with the panel, and (as on the site) one tool in two comparisons.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from digest.config import Config
from digest.ingest.sources import expand
from digest.render.issue_email import CompiledEmail, EditionView, compile_issue
from digest.storage.models import Comparison, EditionItem, Issue

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples" / "comparisons"
SITE = "https://verdicts.example.com/compare"

# (tool a name, tool b name, panel a, panel b, community a, community b, price a, price b)
VARIANTS = [
    ("Claude Code", "Aider", 100, 60, 81, 64, "$20/mo", "Free"),
    ("Perplexity Labs", "Elicit", 40, 80, 64, 41, "$20/mo", "Free tier"),  # the community disagrees
    ("Lovable", "Bolt.new", 20, 0, 35, None, "$25/mo", "$20/mo"),
]


def sample_data() -> list[dict[str, Any]]:
    """The sample comparisons as stored JSON (ComparisonData dumped), ordered by title."""
    items = [i for src in expand([str(SAMPLES)]) for i in (src.items or [])]
    return [i.model_dump(mode="json", exclude={"published_at"}) for i in sorted(items, key=lambda i: i.title)]


def variant(base: dict[str, Any], spec: tuple[Any, ...]) -> dict[str, Any]:
    a_name, b_name, pa, pb, ca, cb, price_a, price_b = spec
    data = copy.deepcopy(base)
    data["title"] = f"{a_name} vs {b_name}"
    for tool, name, panel, community, price in (
        (data["tools"][0], a_name, pa, ca, price_a),
        (data["tools"][1], b_name, pb, cb, price_b),
    ):
        old = tool["name"]
        tool.update(name=name, panel_ship=panel, community=community, price=price)
        tool["description"] = tool["description"].replace(old, name)
    for q in data["quotes"]:
        q["text"] = q["text"].replace(base["tools"][0]["name"], a_name).replace(base["tools"][1]["name"], b_name)
    data["url"] = None
    return data


def comparison(data: dict[str, Any], n: int) -> Comparison:
    from digest.ingest.schema import slugify

    slug = slugify(data["title"])
    url = data.get("url") or f"{SITE}/{slug}"
    return Comparison(
        id=n,
        slug=slug,
        title=data["title"],
        url=url,
        published_at=datetime(2026, 11, 12, 9, tzinfo=UTC),
        content_hash="x" * 64,
        community_votes=data.get("community_votes"),
        data=data,
    )


def issue_from(
    datas: list[dict[str, Any]], *, week: str = "2026-W47", number: int = 12, editor_note: str | None = None
) -> Issue:
    issue = Issue(
        id=1,
        week=week,
        number=number,
        status="draft",
        pins=[],
        excludes=[],
        editor_note=editor_note,
        scheduled_for=datetime(2026, 11, 16, 9, tzinfo=UTC),
    )
    issue.picks = [
        EditionItem(rank=i, score=1.0 - i / 10, score_parts={}, pinned=False, comparison=comparison(d, i))
        for i, d in enumerate(datas, start=1)
    ]  # a test's own attribute: an issue holds no picks
    return issue


def compile_sample(config: Config, issue: Issue, *, edition: EditionView | None = None) -> CompiledEmail:
    """compile_issue for a sample issue, with its picks."""
    return compile_issue(config, issue, issue.picks, edition=edition)


def sample_issue(n: int = 5, *, editor_note: str | None = None) -> Issue:
    base = sample_data()
    datas = list(base)
    k = 0
    while len(datas) < n:
        datas.append(variant(base[k % len(base)], VARIANTS[k % len(VARIANTS)]))
        k += 1
    return issue_from(datas[:n], editor_note=editor_note)
