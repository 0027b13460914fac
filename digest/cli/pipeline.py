"""Pipeline commands: db upgrade, ingest, comparisons list, select, send, demo.

Long because each command's Typer options are declared in its signature, a line each.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path

import typer
from sqlalchemy import select

from digest import defaults
from digest.cli import app
from digest.cli.context import out, print_json, runtime
from digest.cli.help import command_group
from digest.cli.output import Table
from digest.cycle.draft import draft_view, update_choices
from digest.cycle.editions import Plan
from digest.cycle.send import send_week
from digest.cycle.week import check_not_future, get_or_create_issue, resolve_week
from digest.delivery.summary import SendSummary
from digest.errors import UserError
from digest.ingest.sources import expand
from digest.ingest.store import upsert
from digest.selection.scoring import Selection, resolve_slugs
from digest.storage.db import current_revision, head_revision, upgrade
from digest.storage.models import Comparison, Issue, IssueStatus
from digest.weeks import as_utc

db_app = command_group("Database schema.")
comparisons_app = command_group("Stored comparisons.")
app.add_typer(db_app, name="db")
app.add_typer(comparisons_app, name="comparisons")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations (every command also does this on a new database)."""
    from digest.cli.context import state
    from digest.runtime import open_runtime

    rt = open_runtime(state.config_path, migrate=False)
    applied = upgrade(rt.engine)
    out.print(f"database at revision {current_revision(rt.engine)}" + (" (upgraded)" if applied else " (up to date)"))


@db_app.command("status")
def db_status() -> None:
    """Show the schema revision and the head revision."""
    from digest.cli.context import state
    from digest.runtime import open_runtime

    rt = open_runtime(state.config_path, migrate=False)
    out.print(f"current: {current_revision(rt.engine) or 'empty'}  head: {head_revision(rt.engine)}")


def parse_date(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(datetime.strptime(value, "%Y-%m-%d").date(), time(0, 0), UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UserError(f"{option}: {value!r} is not a date (YYYY-MM-DD or ISO 8601 date-time)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command()
def ingest(
    sources: list[str] = typer.Argument(
        ...,
        help="Page-text (.txt) or JSON files, folders of them, or http(s) URLs of a JSON list.",
        metavar="PATH_OR_URL...",
    ),
    published: str = typer.Option(
        None, "--published", help="Publication date for the items (YYYY-MM-DD); default: now."
    ),
    url: str = typer.Option(
        None, "--url", help="Comparison URL for a single page-text item (default: site_url/<slug>)."
    ),
) -> None:
    """Read comparisons and upsert them by slug. A file with an error stores nothing."""
    when = parse_date(published, "--published")
    if url is not None and not url.startswith(("http://", "https://")):
        raise UserError(f"--url: {url!r} is not an http(s) URL")
    rt = runtime()
    counts = {"added": 0, "updated": 0, "unchanged": 0}
    failures = 0
    for source in expand(sources):
        if source.error:
            failures += 1
            out.print(f"error {source.error}")
            continue
        items = source.items or []
        if url is not None:
            if len(items) != 1:
                raise UserError(f"--url: only for a single comparison, but {source.name} holds {len(items)}")
            items = [items[0].model_copy(update={"url": url})]
        with rt.sessions.begin() as session:
            results = upsert(session, items, default_url=rt.settings.site.site_url + "/compare", published=when)
        for r in results:
            counts[r.action] += 1
            if r.action != "unchanged":
                out.print(f"{r.action:9} {r.slug}  ({source.name})", markup=False)
    out.print(
        f"ingest: {counts['added']} added, {counts['updated']} updated, {counts['unchanged']} unchanged, "
        f"{failures} source(s) with errors",
        markup=False,
    )
    if failures:
        raise typer.Exit(1)


@comparisons_app.command("list")
def comparisons_list(as_json: bool = typer.Option(False, "--json", help="Every field, quotes included.")) -> None:
    """Print the stored comparisons, newest first."""
    rt = runtime()
    with rt.sessions() as session:
        rows = list(session.scalars(select(Comparison).order_by(Comparison.published_at.desc(), Comparison.slug)))
    if as_json:
        print_json(
            [
                {
                    **r.data,
                    "slug": r.slug,
                    "url": r.url,
                    "published_at": as_utc(r.published_at).isoformat(),
                    "community_votes": r.community_votes,
                    "content_hash": r.content_hash,
                }
                for r in rows
            ]
        )
        return
    table = Table()
    table.add_column("slug", no_wrap=True)
    for header in ("published", "A ship", "B ship", "quotes"):
        table.add_column(header)
    for r in rows:
        tools = r.data["tools"]
        table.add_row(
            r.slug,
            f"{as_utc(r.published_at):%Y-%m-%d %H:%M}",
            f"{tools[0]['panel_ship']}%",
            f"{tools[1]['panel_ship']}%",
            str(len(r.data.get("quotes", []))),
        )
    out.print(table)
    out.print(f"{len(rows)} comparison(s)")


def _print_selection(sel: Selection, status: str) -> None:
    table = Table()
    table.add_column("#")
    table.add_column("slug", no_wrap=True)  # what --pin/--exclude take: never cut
    learning = any("interest" in p.parts for p in sel.picks)  # selection.weight_interest > 0
    for header in ("score", "panel", "community", "freshness", "diversity", *(("interest",) if learning else ()), ""):
        table.add_column(header)
    for i, p in enumerate(sel.picks, 1):
        table.add_row(
            str(i),
            p.comparison.slug,
            f"{p.score:.3f}",
            f"{p.parts['panel']:.3f}",
            f"{p.parts['community']:.3f}",
            f"{p.parts['freshness']:.3f}",
            f"{p.parts.get('diversity', 0.0):.3f}",
            *((f"{p.parts.get('interest', 0.0):.3f}",) if learning else ()),
            "pinned" if p.pinned else "",
        )
    out.print(
        f"issue {sel.week} ({status}); cut-off {sel.cutoff:%Y-%m-%d %H:%M} UTC, "
        f"window from {sel.window_start:%Y-%m-%d %H:%M}; {sel.candidates} candidate(s)",
        markup=False,
    )
    out.print(table)
    if sel.skip_reason:
        out.print(f"skipped: {sel.skip_reason}", markup=False)


@app.command("select")
def select_cmd(
    week: str = typer.Option(None, "--week", help="ISO week key, e.g. 2026-W47 (default: this week)."),
    pin: list[str] = typer.Option([], "--pin", help="Always include this slug (kept on the week's draft issue)."),
    exclude: list[str] = typer.Option([], "--exclude", help="Never include this slug (kept on the draft)."),
    clear: bool = typer.Option(False, "--clear", help="Forget the draft's pins and excludes first."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show the picks for a week's issue, each with its score and the parts of it."""
    rt = runtime()
    wk = resolve_week(rt, week)
    with rt.sessions() as session:
        if pin or exclude:
            resolve_slugs(session, pin, "--pin")
            resolve_slugs(session, exclude, "--exclude")
    if pin or exclude or clear:
        get_or_create_issue(rt, wk)
    with rt.sessions.begin() as session:
        issue = session.scalar(select(Issue).where(Issue.week == wk.key))
        if issue is not None and (pin or exclude or clear):
            update_choices(session, issue, pin=pin, exclude=exclude, clear=clear)  # a frozen issue: UserError
        view = draft_view(rt, session, wk, issue)
    status = view.status if view.frozen else IssueStatus.DRAFT
    if as_json:
        print_json({**view.selection.as_dict(), "status": status, **(view.editions.as_dict() if view.editions else {})})
    else:
        _print_selection(view.selection, status)
        if view.editions is not None:
            _print_editions(view.editions)


def _print_editions(the_plan: Plan) -> None:
    table = Table()
    for header in ("edition", "readers", "picks"):
        table.add_column(header)
    for ed in the_plan.editions:
        picks = [
            p.comparison.slug + (" (filler)" if p.filler else "") for p in (ed.selection.picks if ed.selection else [])
        ]
        table.add_row(f"{ed.key}\n{ed.label}", str(ed.readers), "\n".join(picks) or (ed.skip_reason or ""))
    out.print(
        f"{len(the_plan.editions)} edition(s); {the_plan.paused} paused reader(s) skipped; "
        f"{the_plan.monthly_waiting} monthly reader(s) wait for the month's first issue",
        markup=False,
    )
    out.print(table)


@app.command()
def send(
    week: str = typer.Option(None, "--week", help="ISO week key (default: this week)."),
    retry_failed: bool = typer.Option(
        False,
        "--retry-failed",
        help="Send the issue's failed deliveries again (same key while the provider "
        "keeps it; a new request only when no copy can have gone out).",
    ),
    accept_duplicates: bool = typer.Option(
        False,
        "--accept-duplicates",
        help="With --retry-failed: also resend batches that may have been "
        "delivered without an answer (some readers may get two copies).",
    ),
) -> None:
    """Create, render, enqueue and send a week's issue. Running it again sends nothing more.

    Long because a Typer command declares its options in its signature; the body is the send's report.
    """
    from digest.cli import err as err_console
    from digest.cli.sending import SendProgress, open_transport, retry_failed_deliveries, stop_on_signals

    rt = runtime()
    wk = resolve_week(rt, week)
    check_not_future(rt, wk)
    if accept_duplicates and not retry_failed:
        raise UserError("--accept-duplicates: only together with --retry-failed")
    transport = open_transport(rt)
    try:
        if retry_failed:
            for line in retry_failed_deliveries(rt, wk.key, accept_duplicates=accept_duplicates):
                out.print(line, markup=False)
        progress = SendProgress(rt, wk.key, console=out, log_console=err_console)
        with stop_on_signals(err_console) as stop:
            try:
                result = send_week(rt, wk, manual=True, transport=transport, stop=stop, on_batch=progress)
            finally:
                progress.close()
    finally:
        transport.close()
    p = result.prepared
    if p.skip_reason:
        out.print(f"issue {p.week}: skipped — {p.skip_reason}", markup=False)
        return
    for w in p.warnings:
        out.print(f"warning: {w}", markup=False)
    if p.plan is not None and (len(p.plan.editions) > 1 or p.plan.paused or p.plan.monthly_waiting):
        counts = ", ".join(f"{e.key} {e.readers}" for e in p.plan.editions)
        out.print(
            f"issue {p.week}: {len(p.plan.editions)} edition(s) ({counts}); {p.plan.paused} paused reader(s) "
            f"skipped, {p.plan.monthly_waiting} monthly reader(s) wait for the month's first issue",
            markup=False,
        )
    s = result.summary
    if s is None:
        out.print(f"issue {p.week}: already sent; nothing more to send", markup=False)
        return
    picks = len(p.selection.picks) if p.selection else None
    head = f"issue {p.week}: " + (
        f"{picks} pick(s), {p.recipients} recipient(s) enqueued; " if p.frozen_now else "resumed; "
    )
    out.print(head + f"{s.sent} sent, {s.failed} failed, {s.dropped} dropped", markup=False)
    if rt.config.transport_spec.capabilities.writes_files:
        folder = rt.outbox_dir / p.week
        out.print(f"files written: {s.sent} under {folder}", markup=False)
    for e in s.errors[:10]:
        out.print(f"error: {e}", markup=False)
    if len(s.errors) > 10:
        out.print(
            f"error: ... and {len(s.errors) - 10} more failed batch(es); `digest stats` shows the totals", markup=False
        )
    if s.stopped == "stopped on request":
        out.print(
            f"issue {p.week}: stopped on request; run `digest send --week {p.week}` again to resume", markup=False
        )
        raise typer.Exit(130)
    if s.stopped:
        from digest.errors import ProviderAuthError

        raise ProviderAuthError(f"send stopped: {s.stopped}. Run `digest send` again to resume where it stopped")
    _explain_unfinished(p.week, s)
    if s.failed:
        if not retry_failed:
            out.print(
                f"issue {p.week}: {s.failed} failed; `digest send --week {p.week} --retry-failed` sends them again",
                markup=False,
            )
        raise typer.Exit(1)


EX_TEMPFAIL = 75  # sysexits: try again later


def _explain_unfinished(week: str, s: SendSummary) -> None:
    """One line for what stopped the send and what happens next; exit non-zero while readers are owed."""
    if s.paused:
        out.print(
            f"issue {week}: paused: {s.paused}; {s.owed} reader(s) still owed, nobody is mailed twice. "
            f"`digest serve` (or `digest worker`) retries by itself on a growing interval; "
            f"`digest send --week {week}` resumes by hand",
            markup=False,
        )
        raise typer.Exit(EX_TEMPFAIL)
    if s.unconfirmed:
        out.print(
            f"issue {week}: {s.unconfirmed} reader(s) may or may not have received it; not resent. "
            f"`digest send --week {week} --retry-failed --accept-duplicates` resends them, and some may "
            f"get it twice",
            markup=False,
        )
        raise typer.Exit(1)
    if s.owed and s.deferred_batches:
        out.print(
            f"issue {week}: {s.owed} reader(s) still owed: {s.deferred_batches} batch(es) kept failing and "
            f"wait for the next run under the same key, nobody is mailed twice. `digest send --week {week}` "
            f"tries again (`digest serve` does by itself)",
            markup=False,
        )
        raise typer.Exit(EX_TEMPFAIL)


DEMO_PEOPLE = [
    ("ada@example.com", "Ada Lovelace"),
    ("grace@example.com", "Grace Hopper"),
    ("linus@example.net", "Linus Example"),
]


@app.command()
def demo() -> None:
    """The whole cycle on the embedded default: ingest the samples, add 3 readers, send this week's issue."""
    from subscribers.api import add_subscriber

    rt = runtime()
    samples = rt.config.resolve("samples/comparisons")
    if not samples.is_dir():  # a folder made by `digest init`: the comparisons packaged with the digest
        samples = defaults.SAMPLES
    for source in expand([str(samples)]):
        if source.error:
            raise UserError(source.error)
        with rt.sessions.begin() as session:
            for r in upsert(session, source.items or [], default_url=rt.settings.site.site_url + "/compare"):
                out.print(f"comparison {r.action:9} {r.slug}", markup=False)
    with rt.sessions.begin() as session:
        for email, name in DEMO_PEOPLE:
            added = add_subscriber(session, email, name=name, confirmed=True, source="demo")
            out.print(f"subscriber {added.action:9} {email}", markup=False)
    wk = resolve_week(rt, None)
    before = _count_files(rt.outbox_dir / wk.key)
    result = send_week(rt, wk, manual=True)
    after = _count_files(rt.outbox_dir / wk.key)
    p = result.prepared
    if p.skip_reason:
        raise UserError(f"issue {p.week} skipped: {p.skip_reason}")
    out.print(
        f"issue {p.week}: {after - before} new file(s) written; the outbox holds {after} for this week", markup=False
    )
    out.print(f"outbox: {rt.outbox_dir / wk.key}", markup=False)


def _count_files(folder: Path) -> int:
    return len(list(folder.glob("*.eml"))) if folder.is_dir() else 0


@app.command("note")
def note_cmd(
    text: str = typer.Argument(
        None, help="The note (Markdown: paragraphs, [links](https://...), *emphasis*).", metavar="TEXT"
    ),
    week: str = typer.Option(None, "--week", help="ISO week key, e.g. 2026-W47 (default: this week).", metavar="WEEK"),
    file: Path = typer.Option(None, "--file", help="Read the note from this UTF-8 file.", metavar="PATH"),
    clear: bool = typer.Option(False, "--clear", help="Remove the week's note."),
) -> None:
    """Set the editor's note that opens a week's issue; with no TEXT, --file or --clear, print it."""
    from digest.cycle.note import current_note, set_note

    given = [name for name, on in (("TEXT", text is not None), ("--file", file is not None), ("--clear", clear)) if on]
    if len(given) > 1:
        raise UserError(f"note: give one of TEXT, --file or --clear, not {' and '.join(given)}")
    rt = runtime()
    wk = resolve_week(rt, week)
    if not given:
        current = current_note(rt, wk)
        out.print(current if current else f"issue {wk.key} has no note", markup=False, highlight=False)
        return
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(f"--file: {file}: no such file") from None
        except UnicodeDecodeError:
            raise UserError(f"--file: {file}: not UTF-8 text") from None
        except OSError as exc:
            raise UserError(f"--file: {file}: {exc.strerror or exc}") from None
    out.print(set_note(rt, wk, None if clear else text), markup=False)
