"""The checks panel: each check finds its problem and says where (no database needed)."""

from __future__ import annotations

from pathlib import Path

from digest.config import Settings
from digest.preview.checks import FAIL, PASS, WARN, TemplateProblem, preheader_of, run_checks

SETTINGS = Settings.model_validate(
    {"site": {"site_url": "https://verdicts.example.com", "public_url": "https://news.verdicts.example.com"}}
)
UNSUB = "https://news.verdicts.example.com/u/tok"
GOOD_HEADERS = {
    "List-Unsubscribe": f"<{UNSUB}>, <mailto:unsubscribe@example.com?subject=unsubscribe>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}
PREHEADER = "This week: three AI tools compared, with the panel's verdict on each one."


def page(body: str, preheader: str = PREHEADER) -> str:
    hidden = f'<div style="display:none;font-size:1px;">{preheader}</div>' if preheader else ""
    return (
        f"<!doctype html><html><head><title>x</title></head><body>{hidden}\n{body}\n"
        f'<a href="{UNSUB}">Unsubscribe</a></body></html>'
    )


def run(
    html: str,
    text: str = f"Hello\nUnsubscribe: {UNSUB}\n",
    subject: str = "Weekly verdicts #3",
    headers: dict[str, str] | None = None,
    unsub: str | None = UNSUB,
) -> dict[str, object]:
    checks = run_checks(
        html=html,
        text=text,
        subject=subject,
        headers=GOOD_HEADERS if headers is None else headers,
        settings=SETTINGS,
        unsubscribe_url=unsub,
        needs_list_headers=True,
    )
    return {c.name: c for c in checks}


def test_a_clean_email_passes_everything() -> None:
    html = page(
        '<a href="https://verdicts.example.com/compare/a-vs-b">Read</a>'
        '<img src="https://verdicts.example.com/logo.png" alt="Verdicts">'
    )
    checks = run(html)
    assert {name: c.status for name, c in checks.items()} == {n: PASS for n in checks}  # type: ignore[attr-defined]
    assert preheader_of(html) == PREHEADER


def test_each_problem_is_named_with_where_it_is() -> None:
    html = page(
        '<img src="https://verdicts.example.com/a.png">\n'
        '<a href="http://verdicts.example.com/x">Insecure</a>\n'
        '<a href="https://tracker.example.org/c">Elsewhere</a>\n'
        '<a href="/relative">Relative</a>'
    )
    checks = run(html)
    alt = checks["Image alt text"]
    assert alt.status == FAIL and "a.png has no alt text" in alt.findings[0].message  # type: ignore[attr-defined]
    assert alt.findings[0].where == "HTML line 2"  # type: ignore[attr-defined]
    https = checks["https links"]
    assert https.status == WARN and "“Insecure”" in https.findings[0].message  # type: ignore[attr-defined]
    assert https.findings[0].where == "HTML line 3"  # type: ignore[attr-defined]
    hosts = checks["Link hosts"]
    messages = " | ".join(f.message for f in hosts.findings)  # type: ignore[attr-defined]
    assert hosts.status == FAIL and "tracker.example.org" in messages and "not an absolute http(s) URL" in messages


def test_http_public_url_is_grouped_and_blamed_on_the_setting() -> None:
    s = Settings()  # defaults: public_url = http://127.0.0.1:8000
    unsub = "http://127.0.0.1:8000/u/tok"
    html = (
        f'<html><body><div style="display: none">{PREHEADER}</div><a href="{unsub}">Unsubscribe</a>'
        f'<a href="{unsub}?manage=1">Manage</a></body></html>'
    )
    checks = {
        c.name: c
        for c in run_checks(
            html=html,
            text=unsub,
            subject="s",
            headers={
                "List-Unsubscribe": f"<{unsub}>, <mailto:u@example.com>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
            settings=s,
            unsubscribe_url=unsub,
            needs_list_headers=True,
        )
    }
    [finding] = checks["https links"].findings
    assert "site.public_url" in finding.message and "“Unsubscribe”, “Manage”" in finding.message
    assert any("this machine" in f.message for f in checks["Link hosts"].findings)
    assert checks["Unsubscribe"].status == WARN  # http:// one-click URL: Gmail wants https


def test_missing_unsubscribe_text_part_and_lengths() -> None:
    html = "<html><body><p>No way out</p></body></html>"
    checks = run(html, text="", subject="x" * 80, headers={})
    unsub = checks["Unsubscribe"]
    msgs = [f.message for f in unsub.findings]  # type: ignore[attr-defined]
    assert unsub.status == FAIL  # type: ignore[attr-defined]
    assert any("no link to the reader's unsubscribe URL" in m for m in msgs)
    assert any("List-Unsubscribe header is missing" in m for m in msgs)
    assert any("List-Unsubscribe-Post" in m for m in msgs)
    assert checks["Text part"].status == FAIL  # type: ignore[attr-defined]
    assert checks["Subject"].status == WARN  # type: ignore[attr-defined]
    assert checks["Preheader"].status == FAIL  # type: ignore[attr-defined]
    assert run(page("<p>x</p>", preheader="Too short"))["Preheader"].status == WARN  # type: ignore[attr-defined]


def test_html_size_against_gmail_clipping() -> None:
    assert run(page("x" * (95 * 1024)))["HTML size"].status == WARN  # type: ignore[attr-defined]
    big = run(page("x" * (103 * 1024)))["HTML size"]
    assert big.status == FAIL and "102 KB" in big.summary  # type: ignore[attr-defined]


def test_template_problem_points_at_file_and_line(tmp_path: Path) -> None:
    tpl = tmp_path / "digest.mjml.j2"
    tpl.write_text("one\ntwo\n{% if %}\nfour\nfive\n")
    p = TemplateProblem.from_message(f"{tpl}:3: template syntax error: Expected an expression", tmp_path)
    assert (p.file, p.line) == ("digest.mjml.j2", 3)
    assert (3, "{% if %}") in p.excerpt and p.excerpt[0][0] == 1
    check = p.as_check()
    assert check.status == FAIL and check.findings[0].where == "digest.mjml.j2, line 3"
    plain = TemplateProblem.from_message("the rendered HTML is 130 KB; Gmail clips past 102 KB", tmp_path)
    assert plain.file is None and plain.as_check().status == FAIL


def test_preheader_filler_is_not_counted() -> None:
    filler = "&#847;&zwnj;&nbsp;" * 60
    html = page("<p>x</p>", preheader=PREHEADER + filler)
    assert preheader_of(html) == PREHEADER
    assert run(html)["Preheader"].status == PASS  # type: ignore[attr-defined]
