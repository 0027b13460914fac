"""Selection prefers comparisons that bring tools the issue does not have yet (the diversity term)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from digest.config import load_config
from digest.errors import ConfigError
from digest.selection.scoring import select_picks
from tests.conftest import apply_overrides
from tests.test_selection import CUTOFF, add, item


def test_a_new_tool_beats_a_slightly_better_repeat_and_the_breakdown_says_why(rt) -> None:
    add(rt, item("Cursor vs Devin", 100, 100), days_before=1)
    add(rt, item("Cursor vs Aider", 95, 95), days_before=1)  # stronger, but Cursor again
    add(rt, item("Lovable vs Bolt", 85, 85), days_before=1)  # two new tools
    with rt.sessions() as s:
        sel = select_picks(s, rt.settings.selection.model_copy(update={"max_items": 2}), week="2026-W48", cutoff=CUTOFF)
    assert [p.comparison.slug for p in sel.picks] == ["cursor-vs-devin", "lovable-vs-bolt"]
    assert sel.picks[0].parts["diversity"] == sel.picks[1].parts["diversity"] > 0
    # The repeat is still a candidate, scored against the picks: half its tools are new.
    [other] = sel.others
    assert other.comparison.slug == "cursor-vs-aider"
    assert other.parts["diversity"] == pytest.approx(sel.picks[0].parts["diversity"] / 2, abs=1e-4)
    assert other.score == pytest.approx(sum(other.parts.values()), abs=1e-3)


def test_a_repeat_still_gets_in_when_there_are_not_enough_other_candidates(rt) -> None:
    add(rt, item("Cursor vs Devin", 100, 100), days_before=1)
    add(rt, item("Cursor vs Aider", 95, 95), days_before=1)
    with rt.sessions() as s:
        sel = select_picks(s, rt.settings.selection, week="2026-W48", cutoff=CUTOFF)
    assert [p.comparison.slug for p in sel.picks] == ["cursor-vs-devin", "cursor-vs-aider"]
    assert sel.skip_reason is None


def test_pins_count_as_tools_the_issue_already_has(rt) -> None:
    add(rt, item("Cursor vs Devin", 50, 50), days_before=1)
    add(rt, item("Cursor vs Aider", 100, 100), days_before=1)
    add(rt, item("Lovable vs Bolt", 95, 95), days_before=1)
    with rt.sessions() as s:
        sel = select_picks(
            s,
            rt.settings.selection.model_copy(update={"max_items": 2}),
            week="2026-W48",
            cutoff=CUTOFF,
            pins=["cursor-vs-devin"],
        )
    assert [p.comparison.slug for p in sel.picks] == ["cursor-vs-devin", "lovable-vs-bolt"]


def test_weight_zero_turns_the_term_off(rt) -> None:
    add(rt, item("Cursor vs Devin", 100, 100), days_before=1)
    add(rt, item("Cursor vs Aider", 95, 95), days_before=1)
    add(rt, item("Lovable vs Bolt", 85, 85), days_before=1)
    cfg = rt.settings.selection.model_copy(update={"max_items": 2, "weight_diversity": 0.0})
    with rt.sessions() as s:
        sel = select_picks(s, cfg, week="2026-W48", cutoff=CUTOFF)
    assert [p.comparison.slug for p in sel.picks] == ["cursor-vs-devin", "cursor-vs-aider"]
    assert all(p.parts["diversity"] == 0 for p in sel.picks)


def test_digest_select_shows_the_diversity_part(rt, project: Path) -> None:
    add(rt, item("Cursor vs Devin", 100, 100), days_before=0)
    add(rt, item("Cursor vs Aider", 95, 95), days_before=0)
    env = {"DIGEST_SECRET_KEY": "cli-test-secret", "DIGEST_DATABASE_URL": rt.config.database_url}
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    res = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(project), "select", "--week", "2026-W48", "--json"],
        capture_output=True,
        text=True,
        env={**base, **env},
        timeout=120,
        cwd=project.parent,
    )
    assert res.returncode == 0, res.stderr
    picks = json.loads(res.stdout)["picks"]
    assert [set(p["parts"]) for p in picks] == [{"panel", "community", "freshness", "diversity"}] * 2
    table = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(project), "select", "--week", "2026-W48"],
        capture_output=True,
        text=True,
        env={**base, **env},
        timeout=120,
        cwd=project.parent,
    ).stdout
    assert "diversity" in table


@pytest.mark.parametrize("value, message", [(-0.1, "config.toml: selection.weight_diversity: -0.1")])
def test_a_negative_diversity_weight_is_refused(project: Path, value: float, message: str) -> None:
    project.write_text(apply_overrides(project.read_text(), {"selection": {"weight_diversity": value}}))
    with pytest.raises(ConfigError) as exc:
        load_config(project, env={})
    assert str(exc.value).startswith(message)


def test_all_weights_zero_is_refused(project: Path) -> None:
    zero = {"weight_panel": 0, "weight_community": 0, "weight_freshness": 0, "weight_diversity": 0}
    project.write_text(apply_overrides(project.read_text(), {"selection": zero}))
    with pytest.raises(ConfigError, match="the weights add up to 0"):
        load_config(project, env={})
