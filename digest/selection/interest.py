"""The learnt reader interest: per tool category, how far readers' click-through on it was above the
average comparison's (digest.selection.scoring's `interest` term, off unless `weight_interest` > 0).

The click-through itself is counted by the reports (scanners set aside, one reader once), and the
cycle passes their rows in: selection scores what it is given and reads no report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def lift(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Category -> (click-through - average) / average, for the categories above the average; {} with
    no clicks yet. `rows`: per category its `unique_clicks`, `emails` and `click_through`."""
    rows = list(rows)
    clicks = sum(r["unique_clicks"] for r in rows)
    emails = sum(r["emails"] for r in rows)
    if not clicks or not emails:
        return {}
    average = clicks / emails  # the click-through of an average category placement
    return {
        r["category"]: round((r["click_through"] - average) / average, 4)
        for r in rows
        if r["click_through"] is not None and r["click_through"] > average
    }
