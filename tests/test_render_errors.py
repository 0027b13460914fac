"""An operator's broken template (bad Jinja, bad MJML) is reported as `file:line` and nothing is sent."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from digest.config import load_config
from digest.cycle.send import send_week
from digest.errors import TemplateError, UserError
from digest.ingest.sources import expand
from digest.ingest.store import upsert
from digest.render.templates import check_mjml
from digest.render.transactional import render_transactional
from digest.storage.models import Delivery, Issue, IssueStatus
from digest.weeks import Week
from subscribers.api import add_subscriber
from tests.conftest import ROOT, SAMPLES, apply_overrides, make_runtime
from tests.support_render import compile_sample, sample_issue


@pytest.fixture
def tpl(tmp_path: Path) -> Path:
    """A copy of the shipped templates the test may break."""
    return Path(shutil.copytree(ROOT / "templates" / "email", tmp_path / "email"))


def config_for(project: Path, templates: Path):
    text = apply_overrides(project.read_text(), {"templates": {"dir": str(templates)}})
    project.write_text(text)
    return load_config(project, env={"DIGEST_SECRET_KEY": "test-secret-key-0123456789"})


def edit(path: Path, anchor: str, new: str) -> int:
    """Replace the first line containing `anchor` with `new`; return its 1-based line number."""
    lines = path.read_text().splitlines(keepends=True)
    for i, line in enumerate(lines):
        if anchor in line:
            lines[i] = new + "\n"
            path.write_text("".join(lines))
            return i + 1
    raise AssertionError(f"{anchor!r} not in {path}")


def error_of(config, issue=None) -> str:
    with pytest.raises(TemplateError) as info:
        compile_sample(config, issue or sample_issue(2))
    assert isinstance(info.value, UserError)  # the CLI shows it as one line, exit status 2
    return str(info.value)


def test_jinja_syntax_error_names_file_and_line(project: Path, tpl: Path) -> None:
    line = edit(tpl / "digest.mjml.j2", "{% for item in items %}", "{% for item in %}")
    msg = error_of(config_for(project, tpl))
    assert f"{tpl / 'digest.mjml.j2'}:{line}: template syntax error" in msg


def test_jinja_error_in_a_partial_names_the_partial(project: Path, tpl: Path) -> None:
    line = edit(tpl / "_card.mjml.j2", '<h3 class="h3">', "<h3>{{ t.name | nosuchfilter }}</h3>")
    msg = error_of(config_for(project, tpl))
    assert f"{tpl / '_card.mjml.j2'}:{line}:" in msg and "nosuchfilter" in msg


def test_undefined_variable_names_file_and_line(project: Path, tpl: Path) -> None:
    line = edit(tpl / "_card.mjml.j2", '<h3 class="h3">', "<h3>{{ t.nickname }}</h3>")
    msg = error_of(config_for(project, tpl))
    assert f"{tpl / '_card.mjml.j2'}:{line}: template error" in msg and "nickname" in msg


def test_text_template_error_names_the_text_file(project: Path, tpl: Path) -> None:
    line = edit(tpl / "digest.txt.j2", "IN THIS ISSUE", "IN THIS ISSUE {{ issue.nope.deeper }}")
    msg = error_of(config_for(project, tpl))
    assert f"{tpl / 'digest.txt.j2'}:{line}:" in msg


def test_unknown_mjml_element_names_file_and_line(project: Path, tpl: Path) -> None:
    path = tpl / "_footer.mjml.j2"
    text = path.read_text().replace("<mj-text align", "<mj-txt align").replace("</mj-text>", "</mj-txt>")
    path.write_text(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "<mj-txt" in ln)
    msg = error_of(config_for(project, tpl))
    assert f"{path}:{line}: MJML error: unknown MJML element <mj-txt>" in msg


def test_mismatched_mjml_tag_names_file_and_line(project: Path, tpl: Path) -> None:
    path = tpl / "digest.mjml.j2"
    text = path.read_text()
    lines = text.splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.strip() == "</mj-column>")
    lines[i] = lines[i].replace("</mj-column>", "</mj-colum>")
    path.write_text("\n".join(lines) + "\n")
    msg = error_of(config_for(project, tpl))
    assert f"{path}:{i + 1}: MJML error:" in msg and "unknown MJML element <mj-colum>" in msg


def test_unclosed_html_in_mj_text_names_the_partial(project: Path, tpl: Path) -> None:
    path = tpl / "_footer.mjml.j2"
    line = edit(path, "{{ site.postal_address }}", '          <p style="margin:0;">{{ site.postal_address }}')
    msg = error_of(config_for(project, tpl))
    assert f"{path}:{line}: MJML error: <p> is not closed before </mj-text>" in msg


def test_unquoted_attribute_names_file_and_line(project: Path, tpl: Path) -> None:
    path = tpl / "_layout.mjml.j2"
    line = edit(path, "<mj-body ", '  <mj-body background-color=#ffffff width="600px">')
    msg = error_of(config_for(project, tpl))
    assert f"{path}:{line}: MJML error: malformed tag" in msg


def test_transactional_template_error_names_file(project: Path, tpl: Path) -> None:
    line = edit(
        tpl / "confirm.mjml.j2",
        "Confirm my subscription</mj-button>",
        '<mj-button href="{{ confirm_url }}">{% if %}</mj-button>',
    )
    config = config_for(project, tpl)
    ctx = {"subscriber": {"email": "a@example.com", "name": None}, "confirm_url": "https://x/c", "expiry_days": 7}
    with pytest.raises(TemplateError, match=rf"confirm\.mjml\.j2:{line}: template syntax error"):
        render_transactional(config, "confirm", ctx)


def test_check_mjml_finds_structural_problems_with_lines() -> None:
    ok = (
        "<mjml>\n<mj-body>\n<mj-section><mj-column><mj-text>a<br>b &amp; <!-- c --></mj-text></mj-column></mj-section>"
        "\n</mj-body>\n</mjml>"
    )
    assert check_mjml(ok) is None
    p = check_mjml("<mjml>\n<mj-body>\n<mj-section>\n</mj-body>\n</mjml>")
    assert p is not None and p.line == 3 and "<mj-section> is not closed before </mj-body>" in p.message
    p = check_mjml("<mjml>\n<mj-body>\n<mj-text>a < b</mj-text>\n</mj-body></mjml>")
    assert p is not None and p.line == 3 and "bare '<'" in p.message
    p = check_mjml("<mjml>\n<mj-body>\n")
    assert p is not None and "never closed" in p.message


def test_broken_template_stops_the_send_and_changes_nothing(project: Path, tpl: Path, db_url: str) -> None:
    edit(tpl / "_card.mjml.j2", '<h3 class="h3">', "<h3>{{ t.nickname }}</h3>")
    config_for(project, tpl)
    rt = make_runtime(project, db_url)
    try:
        now = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
        with rt.sessions.begin() as s:
            for src in expand([str(SAMPLES)]):
                upsert(
                    s, src.items, default_url="https://verdicts.example.com/compare", published=now - timedelta(days=1)
                )
            add_subscriber(s, "reader@example.com", confirmed=True)
        with pytest.raises(TemplateError, match="_card.mjml.j2"):
            send_week(rt, Week.parse("2026-W47"), manual=True, now=now)
        with rt.sessions() as s:
            issue = s.scalar(select(Issue).where(Issue.week == "2026-W47"))
            assert issue is not None and issue.status == IssueStatus.DRAFT and issue.main_edition is None
            assert s.scalar(select(func.count()).select_from(Delivery)) == 0
        assert not list(rt.outbox_dir.glob("**/*.eml"))
    finally:
        rt.close()


def test_spaces_between_head_tags_are_reported_where_mjml_python_would_fail(project: Path, tpl: Path) -> None:
    """mjml-python rejects `</mj-title> <mj-preview>` on one line with only a byte offset; we name the line."""
    path = tpl / "_layout.mjml.j2"
    text = path.read_text()
    text = text.replace("</mj-title>\n", "</mj-title>  ", 1)
    path.write_text(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "<mj-preview>" in ln)
    msg = error_of(config_for(project, tpl))
    assert f"{path}:{line}: MJML error: spaces before a tag inside <mj-head>" in msg
