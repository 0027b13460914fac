"""The preview's pieces on SQLite and PostgreSQL: draft loading, pins/excludes, test sends,
history, the outbox browser, escaping, template errors and request guards (HTTP, no browser)."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from digest.cycle.send import send_week
from digest.errors import UserError
from digest.preview.app import create_preview_app
from digest.preview.build import build_preview
from digest.preview.draft import change_draft, load_draft
from digest.preview.history import issue_history
from digest.preview.state import PreviewState
from digest.preview.testsend import send_test
from digest.runtime import Runtime
from digest.storage.models import Batch, Delivery, Event, Issue
from digest.weeks import Week, current_week
from subscribers.api import add_subscriber
from tests.support_preview import comparison, preview_runtime, seed_items, seed_samples

BASE = "http://127.0.0.1:8025"


@pytest.fixture
def prt(tmp_path: Path, db_url: str):
    """A runtime on a project with its own template copy and two allowed test recipients."""
    rt = preview_runtime(tmp_path / "project", db_url, ["me@example.com", "editor@example.com"])
    yield rt
    rt.close()


def client_for(rt: Runtime) -> tuple[TestClient, PreviewState]:
    state = PreviewState(rt)
    return TestClient(create_preview_app(state, watch=False), base_url=BASE), state


def counts(rt: Runtime) -> tuple[int, int, int]:
    with rt.sessions() as s:
        return (
            s.scalar(select(func.count()).select_from(Issue)) or 0,
            s.scalar(select(func.count()).select_from(Delivery)) or 0,
            s.scalar(select(func.count()).select_from(Batch)) or 0,
        )


def picks_order(html: str) -> list[str]:
    block = html.split('data-testid="picks"', 1)[1].split("</ol>", 1)[0]
    return re.findall(r'<li class="pick" data-slug="([^"]+)"', block)


def test_preview_reads_without_writing(prt: Runtime) -> None:
    seed_samples(prt)
    week = current_week(prt.settings.schedule)
    draft = load_draft(prt, week)
    assert draft.status == "new" and len(draft.selection.picks) == 2
    preview = build_preview(prt, "digest", draft)
    assert preview.ok, preview.problem
    assert preview.subject and "Sample" in preview.html
    headers = dict(preview.headers)
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "<mailto:" in headers["List-Unsubscribe"]
    msg = email.message_from_bytes(preview.eml, policy=email.policy.default)
    assert {p.get_content_type() for p in msg.walk()} >= {"text/plain", "text/html"}
    assert counts(prt) == (0, 0, 0)  # no issue row, no deliveries: previewing changes nothing
    client, _ = client_for(prt)
    page = client.get("/")
    assert page.status_code == 200 and "Checks" in page.text
    assert client.get("/render/digest.html").status_code == 200
    assert client.get("/render/digest.eml").headers["content-type"].startswith("message/rfc822")
    for kind in ("confirm", "welcome"):
        r = client.get(f"/emails/{kind}")
        assert r.status_code == 200, r.text
        assert "Template" not in r.text.split('data-testid="checks"')[0] or "does not render" not in r.text
    assert counts(prt) == (0, 0, 0)


def test_pin_exclude_release_clear_change_the_draft(prt: Runtime) -> None:
    first, second = seed_samples(prt)
    week = current_week(prt.settings.schedule)
    order = [p.comparison.slug for p in load_draft(prt, week).selection.picks]
    top, other = order
    client, state = client_for(prt)
    assert picks_order(client.get("/").text) == order

    r = client.post("/selection", data={"csrf": state.csrf, "week": week.key, "action": "pin", "slug": other})
    assert r.status_code == 200 and "Pinned" in r.text  # followed the 303 back to the page
    assert picks_order(r.text) == [other, top]
    with prt.sessions() as s:
        issue = s.scalar(select(Issue).where(Issue.week == week.key))
        assert issue is not None and issue.pins == [other] and issue.status == "draft"

    change_draft(prt, week, "exclude", other)  # exclude takes it out of the pins, as `digest select` does
    d = load_draft(prt, week)
    assert d.pins == [] and [s for s, _ in d.excluded] == [other]
    assert [p.comparison.slug for p in d.selection.picks] == [top]
    change_draft(prt, week, "release", other)
    assert load_draft(prt, week).excluded == []
    change_draft(prt, week, "pin", top)
    change_draft(prt, week, "clear")
    d = load_draft(prt, week)
    assert d.pins == [] and d.excluded == []

    with pytest.raises(UserError, match="unknown comparison slug 'nope'"):
        change_draft(prt, week, "pin", "nope")
    bad = client.post("/selection", data={"csrf": state.csrf, "week": week.key, "action": "pin", "slug": "nope"})
    assert bad.status_code == 200 and "unknown comparison slug" in bad.text
    assert counts(prt)[1:] == (0, 0)


def test_requests_from_elsewhere_are_refused(prt: Runtime) -> None:
    slugs = seed_samples(prt)
    client, state = client_for(prt)
    week = current_week(prt.settings.schedule).key
    r = client.post("/selection", data={"csrf": "wrong", "week": week, "action": "pin", "slug": slugs[1]})
    assert "out of date" in r.text
    r = client.post(
        "/selection",
        data={"csrf": state.csrf, "week": week, "action": "pin", "slug": slugs[1]},
        headers={"Origin": "https://evil.example"},
    )
    assert "another site" in r.text
    assert counts(prt)[0] == 0  # neither created the draft
    rebound = TestClient(create_preview_app(state, watch=False), base_url="http://evil.example:8025")
    assert rebound.get("/").status_code == 421  # DNS rebinding: Host is not loopback
    assert client.get("/outbox/..%2F..%2Fetc/passwd").status_code in (400, 404)
    assert client.get("/outbox/test/..%2Fsecret.eml").status_code in (400, 404)
    assert client.get("/render/nope.html").status_code == 400
    assert "not an ISO week key" in client.get("/?week=2026-W99x").text


def test_test_send_goes_to_the_allowlist_only_and_is_not_the_issue_send(prt: Runtime) -> None:
    seed_samples(prt)
    with prt.sessions.begin() as s:
        add_subscriber(s, "reader@example.com", name="Reader", confirmed=True)
    week = current_week(prt.settings.schedule)
    client, state = client_for(prt)
    r = client.post(
        "/test-send",
        data={"csrf": state.csrf, "kind": "digest", "week": week.key, "to": ["me@example.com", "editor@example.com"]},
    )
    assert r.status_code == 200 and "Test sent to me@example.com, editor@example.com" in r.text
    files = sorted((prt.outbox_dir / "test").glob("*.eml"))
    assert len(files) == 2
    msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert msg["Subject"].startswith("[TEST] ")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert counts(prt) == (0, 0, 0)  # no issue, no deliveries, no batches
    assert not (prt.outbox_dir / week.key).exists()

    r = client.post(
        "/test-send", data={"csrf": state.csrf, "kind": "digest", "week": week.key, "to": ["stranger@example.com"]}
    )
    assert "not on preview.test_recipients" in r.text
    assert len(list((prt.outbox_dir / "test").glob("*.eml"))) == 2
    with pytest.raises(UserError, match="choose at least one"):
        send_test(prt, "digest", load_draft(prt, week), [])

    r = client.post("/test-send", data={"csrf": state.csrf, "kind": "welcome", "to": ["me@example.com"]})
    assert "Test sent to me@example.com" in r.text
    assert len(list((prt.outbox_dir / "test").glob("*.eml"))) == 3

    # Then the real send still goes to the subscriber exactly once, unaffected by the tests.
    result = send_week(prt, week, manual=True)
    assert result.summary is not None and result.summary.sent == 1
    assert counts(prt)[:2] == (1, 1)


def test_outbox_browser_lists_and_opens_messages(prt: Runtime) -> None:
    seed_samples(prt)
    with prt.sessions.begin() as s:
        add_subscriber(s, "ada@example.com", name="Ada <b>Lovelace</b>", confirmed=True)
    week = current_week(prt.settings.schedule)
    send_week(prt, week, manual=True)
    client, _ = client_for(prt)
    page = client.get("/outbox")
    assert page.status_code == 200 and week.key in page.text and "ada@example.com" in page.text
    link = re.search(r'href="(/outbox/[^"]+\.eml)"', page.text)
    assert link is not None
    opened = client.get(link.group(1))
    assert opened.status_code == 200
    assert "List-Unsubscribe" in opened.text and "Weekly AI Tool Verdicts" in opened.text
    assert "<b>Lovelace</b>" not in opened.text and 'data-testid="text-part"' in opened.text
    html = client.get(link.group(1) + "/html")
    assert html.status_code == 200 and "script-src" not in html.headers["content-security-policy"]
    assert "default-src 'none'" in html.headers["content-security-policy"]
    assert client.get(link.group(1) + "/raw").text.startswith(("From:", "Content-Type", "MIME-Version"))


def test_history_counts_and_frozen_issue_shows_what_was_sent(prt: Runtime) -> None:
    seed_samples(prt)
    with prt.sessions.begin() as s:
        for i in range(3):
            add_subscriber(s, f"r{i}@example.com", confirmed=True)
    week = current_week(prt.settings.schedule)
    send_week(prt, week, manual=True)
    with prt.sessions.begin() as s:
        issue = s.scalar(select(Issue).where(Issue.week == week.key))
        assert issue is not None and issue.main_edition is not None
        stored_subject = issue.main_edition.subject or ""
        d1, d2 = s.scalars(select(Delivery).where(Delivery.issue_id == issue.id).order_by(Delivery.id).limit(2)).all()
        d1.delivered_at = d1.sent_at
        d1.opened_at = d1.sent_at
        d2.delivered_at = d2.sent_at
        s.add(Event(kind="unsubscribed", subscriber_id=d2.subscriber_id, issue_id=issue.id, delivery_id=d2.id))
    [row] = [h for h in issue_history(prt).rows if h.week == week.key]
    assert (row.recipients, row.sent, row.failed, row.delivered, row.opened, row.clicked, row.unsubscribed) == (
        3,
        3,
        0,
        2,
        1,
        0,
        1,
    )
    client, _ = client_for(prt)
    hist = client.get("/history")
    assert hist.status_code == 200 and f"/?week={week.key}" in hist.text
    page = client.get(f"/?week={week.key}")
    assert page.status_code == 200 and "Picks as sent" in page.text and 'data-action="pin"' not in page.text
    assert stored_subject and stored_subject.replace("&", "&amp;") in page.text
    frame = client.get(f"/render/digest.html?week={week.key}")
    assert frame.status_code == 200
    r = client.post(
        "/selection", data={"csrf": client_for(prt)[1].csrf, "week": week.key, "action": "clear", "slug": ""}
    )
    assert r.status_code == 200  # form token of another state: refused, nothing changed
    with pytest.raises(UserError, match="already sent"):
        change_draft(prt, week, "clear")


def test_history_shows_half_a_year_a_page_newest_first(prt: Runtime) -> None:
    """Each row costs a whole `digest stats` (its clicks and opens are classified): a page of 26 issues
    keeps the History quick however many years the newsletter has run; older ones are a link away."""
    from digest.preview.history import PAGE

    weeks = [Week.parse("2026-W01")]
    for _ in range(PAGE + 3):
        weeks.append(weeks[-1].next())
    with prt.sessions.begin() as s:
        for w in weeks:
            s.add(Issue(week=w.key, status="skipped", skip_reason="too few comparisons"))
    newest = [w.key for w in reversed(weeks)]
    client, _ = client_for(prt)
    first = client.get("/history")
    assert first.status_code == 200
    shown = re.findall(r'href="/\?week=(\d{4}-W\d{2})"', first.text)
    assert shown == newest[:PAGE]
    assert f'href="/history?before={newest[PAGE - 1]}"' in first.text and "Newest issues" not in first.text
    older = client.get(f"/history?before={newest[PAGE - 1]}")
    assert re.findall(r'href="/\?week=(\d{4}-W\d{2})"', older.text) == newest[PAGE:]
    assert "/history?before=" not in older.text and 'href="/history"' in older.text
    past = client.get("/history?before=2025-W10")  # before every issue: said so, with the way back
    assert past.status_code == 200 and "No issues before 2025-W10" in past.text and 'href="/history"' in past.text
    bad = client.get("/history?before=2026-W99")
    assert bad.status_code == 400 and "2026-W99" in bad.text and "Traceback" not in bad.text


def test_content_is_escaped_in_page_and_email(prt: Runtime) -> None:
    hostile = comparison('Evil<script>alert(1)</script> vs "Quoted" & <b>Bold</b>', a_ship=95, b_ship=95)
    seed_items(prt, [hostile, comparison("Plain Tool vs Other Tool")])
    client, _ = client_for(prt)
    page = client.get("/").text
    assert "<script>alert(1)</script>" not in page
    assert "Evil&lt;script&gt;alert(1)&lt;/script&gt;" in page
    frame = client.get("/render/digest.html").text
    assert "<script>alert(1)</script>" not in frame and "&lt;script&gt;" in frame


def test_template_error_is_shown_with_its_line_and_the_preview_keeps_serving(prt: Runtime) -> None:
    seed_samples(prt)
    client, _ = client_for(prt)
    tpl = prt.config.templates_dir / "digest.mjml.j2"
    good = tpl.read_text()
    lines = good.splitlines()
    lines.insert(4, "{% if %}")  # line 5: an if with no condition
    tpl.write_text("\n".join(lines) + "\n")
    page = client.get("/")
    assert page.status_code == 200
    assert 'data-testid="template-error"' in page.text
    assert "digest.mjml.j2" in page.text and "line <strong>5</strong>" in page.text
    assert 'data-check="Template"' in page.text
    assert client.get("/render/digest.html").status_code == 200  # the frame shows the error too
    tpl.write_text(good)
    again = client.get("/")
    assert again.status_code == 200 and 'data-testid="template-error"' not in again.text


def test_broken_config_keeps_last_good_settings(prt: Runtime) -> None:
    seed_samples(prt)
    client, state = client_for(prt)
    cfg = prt.config.path
    good = cfg.read_text()
    cfg.write_text(good.replace('day = "monday"', 'day = "funday"'))
    state.reload_config()
    page = client.get("/")
    assert page.status_code == 200 and "config.toml was not reloaded" in page.text and "funday" in page.text
    cfg.write_text(
        good.replace(
            'test_recipients = ["me@example.com", "editor@example.com"]', 'test_recipients = ["new@example.com"]'
        )
    )
    state.reload_config()
    page = client.get("/").text
    assert "config.toml was not reloaded" not in page and 'value="new@example.com"' in page


def _cli_env(db_url: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update({"DIGEST_SECRET_KEY": "cli-test-secret-key", "DIGEST_DATABASE_URL": db_url})
    return env


def test_cli_preview_serves_on_loopback_and_stops_cleanly(prt: Runtime, db_url: str) -> None:
    import signal
    import subprocess
    import sys

    import httpx

    seed_samples(prt)
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(prt.config.path), "preview", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_cli_env(db_url),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"at (http://127\.0\.0\.1:(\d+))/", line)
        assert m, line + (proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        r = httpx.get(m.group(1) + "/", timeout=30)
        assert r.status_code == 200 and "Selection" in r.text
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err


def test_cli_preview_bad_input_is_one_line(prt: Runtime, db_url: str) -> None:
    import socket
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "digest", "--config", str(prt.config.path), "preview", *args],
            capture_output=True,
            text=True,
            env=_cli_env(db_url),
            timeout=60,
        )

    r = run("--week", "2026-W99")
    assert r.returncode == 2 and r.stderr.startswith("error: week: '2026-W99' does not exist")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = run("--port", str(port))
    assert r.returncode == 2 and f"--port: {port} is in use" in r.stderr and "Traceback" not in r.stderr


def test_preview_selection_is_the_cycle_selection(prt: Runtime) -> None:
    """The page's picks are exactly what digest.cycle would pick now, and the rest are offered."""
    from datetime import timedelta

    from digest.cycle.draft import current_selection
    from digest.cycle.week import cutoff_for, get_or_create_issue
    from digest.weeks import utcnow

    now = utcnow()
    items = [comparison(f"Tool {i} vs Rival {i}", a_ship=40 + 7 * i, b_ship=90 - 5 * i) for i in range(8)]
    seed_items(prt, items, published=now - timedelta(hours=5))
    week = current_week(prt.settings.schedule, now)
    change_draft(prt, week, "pin", "tool-0-vs-rival-0")
    change_draft(prt, week, "exclude", "tool-7-vs-rival-7")
    draft = load_draft(prt, week, now=now)
    get_or_create_issue(prt, week)
    with prt.sessions() as s:
        issue = s.scalar(select(Issue).where(Issue.week == week.key))
        assert issue is not None
        expected = current_selection(prt, s, issue, cutoff_for(prt, week, manual=True, now=now))
    assert [(p.comparison.slug, p.score, p.pinned) for p in draft.selection.picks] == [
        (p.comparison.slug, p.score, p.pinned) for p in expected.picks
    ]
    assert draft.selection.candidates == expected.candidates and draft.selection.skip_reason is None
    assert draft.selection.picks[0].comparison.slug == "tool-0-vs-rival-0"
    shown = {p.comparison.slug for p in draft.selection.picks} | {p.comparison.slug for p in draft.others}
    assert len(shown) == 7 and "tool-7-vs-rival-7" not in shown
    assert [slug for slug, _ in draft.excluded] == ["tool-7-vs-rival-7"]


def test_a_week_that_would_be_skipped_says_why(prt: Runtime) -> None:
    seed_items(prt, [comparison("Lonely Tool vs Other Tool")])
    draft = load_draft(prt, current_week(prt.settings.schedule))
    assert draft.selection.skip_reason and "selection.min_items" in draft.selection.skip_reason
    client, _ = client_for(prt)
    page = client.get("/")
    assert page.status_code == 200 and "Would be skipped" in page.text


def test_overdue_slot_is_shown_to_the_operator(prt: Runtime) -> None:
    """A missed slot past max_lateness (after earlier issues went out) waits for the operator: say so."""
    from digest.schedule.slots import latest_slot_week
    from digest.weeks import utcnow

    schedule = prt.settings.schedule.model_copy(update={"max_lateness_hours": 0})
    prt.config.settings = prt.settings.model_copy(update={"schedule": schedule})  # any past slot is too late
    week = latest_slot_week(schedule, utcnow())
    client, _ = client_for(prt)
    assert 'id="schedule-alert"' not in client.get("/").text  # nothing went out yet: not "late", just new
    with prt.sessions.begin() as s:
        s.add(Issue(week=week.previous().key, status="sent", pins=[], excludes=[]))
    page = client.get("/").text
    assert 'id="schedule-alert"' in page
    assert f"digest send --week {week.key}" in page


def test_off_loopback_every_request_needs_the_access_token(prt: Runtime) -> None:
    """The outbox pages hold every reader's personal links: off loopback, no token, no page."""
    seed_samples(prt)
    token = "a-long-random-access-token-for-this-test"
    state = PreviewState(prt, loopback_only=False, access_token=token)
    client = TestClient(create_preview_app(state, watch=False), base_url="http://192.0.2.10:8025")
    for path in ("/", "/outbox", "/emails/welcome", "/render/digest.html"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 401 and "access token" in r.text and len(r.text) < 300, path
        assert r.headers["content-type"].startswith("text/plain") and "set-cookie" not in r.headers
    for wrong in ("nope", token[:-1], token + "x", "é" * 10):
        r = client.get("/", params={"token": wrong}, follow_redirects=False)
        assert r.status_code == 403 and "access token" in r.text and "set-cookie" not in r.headers
    r = client.post("/selection", data={"csrf": state.csrf, "action": "clear"}, follow_redirects=False)
    assert r.status_code == 401 and counts(prt)[0] == 0
    # The first request with the token sets the cookie and drops the token from the address bar.
    r = client.get(f"/emails/welcome?week=x&token={token}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/emails/welcome?week=x"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and token.lower() in cookie
    page = client.get("/")
    assert page.status_code == 200 and "Selection" in page.text
    assert client.get("/outbox").status_code == 200
    client.cookies.clear()
    client.cookies.set("digest_preview", "stale-token-of-an-earlier-run")
    assert client.get("/", follow_redirects=False).status_code == 401


def test_off_loopback_the_preview_does_not_start_without_a_token(prt: Runtime) -> None:
    from digest.preview.server import PreviewServer

    with pytest.raises(UserError, match="access token"):
        create_preview_app(PreviewState(prt, loopback_only=False), watch=False)
    server = PreviewServer(prt, host="0.0.0.0", port=0, watch=False)
    try:
        token = server.state.access_token
        assert token and len(token) >= 32 and server.open_url == f"{server.url}/?token={token}"
    finally:
        server.sock.close()
    local = PreviewServer(prt, host="127.0.0.1", port=0, watch=False)
    try:
        assert local.state.access_token is None and local.open_url == f"{local.url}/"  # loopback: as before
    finally:
        local.sock.close()


def test_cli_preview_off_loopback_prints_a_token_url_that_every_request_needs(prt: Runtime, db_url: str) -> None:
    """A real uvicorn bound to 0.0.0.0 (off loopback by its bind address), asked through 127.0.0.1."""
    import signal
    import subprocess
    import sys

    import httpx

    seed_samples(prt)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "digest",
            "--config",
            str(prt.config.path),
            "preview",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_cli_env(db_url),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"at (http://[^/ ]+:(\d+))/\?token=([A-Za-z0-9_-]{32,})\s", line)
        assert m, line + (proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        base, token = f"http://127.0.0.1:{m.group(2)}", m.group(3)
        assert httpx.get(base + "/", timeout=30).status_code == 401
        assert httpx.get(base + "/outbox", timeout=30).status_code == 401
        assert httpx.get(base + "/?token=wrong", timeout=30).status_code == 403
        with httpx.Client(base_url=base, timeout=30) as browser:
            first = browser.get(f"/?token={token}", follow_redirects=False)
            assert first.status_code == 303 and first.headers["location"] == "/"
            page = browser.get("/")
            assert page.status_code == 200 and "Selection" in page.text
            assert browser.get("/outbox").status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
    assert (line + out + err).count(token) == 1  # printed once for the operator; never logged
