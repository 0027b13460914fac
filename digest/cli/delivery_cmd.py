"""`digest worker` (send batches of issues being sent) and `digest stats` (what happened to an issue)."""

from __future__ import annotations

from typing import Any

import typer
from sqlalchemy import select

from digest.cli import app, err
from digest.cli.context import out, print_json, runtime
from digest.cli.output import Table
from digest.cli.sending import SendProgress, open_transport, stop_on_signals
from digest.delivery.leases import worker_name
from digest.delivery.worker import run_worker
from digest.errors import ProviderAuthError, UserError
from digest.reports.stats import issue_stats
from digest.storage.models import Issue
from digest.weeks import Week


@app.command()
def worker(
    poll: float = typer.Option(5.0, "--poll", help="Seconds between looks for work when idle.", min=0.1),
    until_idle: bool = typer.Option(False, "--until-idle", help="Exit once no batch is left to claim."),
) -> None:
    """Send the batches of every issue being sent. Run several on PostgreSQL; on SQLite one sends."""
    rt = runtime()
    transport = open_transport(rt)
    progress = SendProgress(rt, None, console=err, log_console=err, interactive=False)

    def ready() -> None:
        err.print(
            f"worker {worker_name()} ready: sending the batches of every issue being sent"
            + (" until none is left" if until_idle else "; SIGTERM or Ctrl-C stops it"),
            markup=False,
        )

    try:
        with stop_on_signals(err) as stop:
            totals = run_worker(
                rt, transport, stop=stop, poll_seconds=poll, until_idle=until_idle, on_batch=progress, on_ready=ready
            )
    finally:
        progress.close()
        transport.close()
    weeks = ", ".join(sorted(totals.weeks)) or "no issue"
    out.print(
        f"worker: {totals.sent} sent, {totals.failed} failed in {totals.batches} batch(es) ({weeks})", markup=False
    )
    for e in totals.errors[:10]:
        out.print(f"error: {e}", markup=False)
    if totals.paused:
        out.print(
            f"worker: the last send was paused: {totals.paused}; {totals.owed} reader(s) still owed "
            f"(a running worker or `digest serve` retries by itself)",
            markup=False,
        )
    if totals.stopped and totals.stopped != "stopped on request":
        raise ProviderAuthError(f"worker stopped: {totals.stopped}")
    if totals.paused and until_idle:
        raise typer.Exit(75)  # readers are still owed: try again later (sysexits EX_TEMPFAIL)


def _pick_issue(week: str | None) -> Issue:
    rt = runtime()
    with rt.sessions() as session:
        if week:
            wk = Week.parse(week)
            issue = session.scalar(select(Issue).where(Issue.week == wk.key))
            if issue is None:
                raise UserError(f"week: there is no issue for {wk.key}")
            return issue
        issue = session.scalar(select(Issue).where(Issue.enqueued_at.is_not(None)).order_by(Issue.week.desc()).limit(1))
        if issue is None:
            raise UserError("no issue has been sent yet (`digest send` sends this week's)")
        return issue


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}%"


@app.command()
def stats(
    week: str = typer.Option(None, "--week", help="ISO week key, e.g. 2026-W47 (default: the latest issue sent)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    as_csv: bool = typer.Option(False, "--csv", help="The same numbers as CSV rows (section, key, metric, value)."),
) -> None:
    """Recipients, sent, failed, delivered, bounced, complained, opens, readers' clicks per comparison, unsubscribes."""
    import csv
    import sys

    from digest.delivery.transports import reported_events
    from digest.reports.insights import csv_rows, over_time

    rt = runtime()
    issue = _pick_issue(week)
    tracking = rt.settings.tracking
    with rt.sessions() as session:
        data = issue_stats(
            session,
            session.get_one(Issue, issue.id),
            measured=reported_events(rt.config.transport_kind),
            tracking=tracking,
        )
        data["over_time"] = over_time(session, tracking)
    if as_json:
        print_json(data)
        return
    if as_csv:
        csv.writer(sys.stdout, lineterminator="\n").writerows(csv_rows(data))
        return
    number = f" #{data['number']}" if data["number"] else ""
    out.print(f"issue {data['week']}{number} ({data['status']}): {data['subject'] or ''}".rstrip(": "), markup=False)
    _print_totals(data, rt.config.transport_kind)
    _print_reasons(data)
    _print_editions(data)
    _print_clicks(data)
    if data["paused"]:
        out.print(
            f"paused: {data['paused']}; the send resumes with `digest send` or by itself under `digest serve`",
            markup=False,
        )


def _print_totals(data: dict[str, Any], transport_kind: str) -> None:
    table = Table("", "count", "rate", "of")
    rates = data["rates"]
    table.add_row("recipients", str(data["recipients"]), "", "")
    for key in ("sent", "failed"):
        table.add_row(key, str(data[key]), _pct(rates[key]), "recipients")
    if data["owed"]:
        table.add_row("still owed (not sent yet)", str(data["owed"]), "", "")
    if data["unconfirmed"]:
        table.add_row("unconfirmed (may have been delivered)", str(data["unconfirmed"]), "", "")
    if data["dropped"]:
        table.add_row("dropped (left before sending)", str(data["dropped"]), "", "")
    for key in ("delivered", "bounced", "complained", "opened", "clicked", "unsubscribed"):
        if key in data["unmeasured"]:
            table.add_row(key, "n/a", "n/a", "")
        else:
            table.add_row(key, str(data[key]), _pct(rates[key]), "sent")
    out.print(table)
    if data["unmeasured"]:
        out.print(
            f"n/a: the {transport_kind} transport does not report {', '.join(data['unmeasured'])} ({_reporting()})"
        )


def _print_reasons(data: dict[str, Any]) -> None:
    from subscribers.lifecycle import REASONS

    reasons = data["unsubscribe_reasons"]
    if reasons:
        out.print("unsubscribe reasons given:")
        for code, count in reasons.items():
            out.print(f"  {count:>4}  {REASONS.get(code, code)}")
    elif data["unsubscribed"]:
        out.print("unsubscribe reasons given: none")


def _print_editions(data: dict[str, Any]) -> None:
    if len(data["editions"]) > 1 or data["skipped_paused"] or data["skipped_monthly"]:
        eds = Table(
            "edition", "label", "recipients", "sent", "failed", "unique opens", "readers' clicks", "click-through"
        )
        for ed in data["editions"]:
            own, opens = ed.get("clicks") or {}, ed.get("opens") or {}
            eds.add_row(
                ed["key"],
                ed["label"],
                *(str(ed[k]) for k in ("recipients", "sent", "failed")),
                str(opens.get("unique_opens", "")),
                str(own.get("unique_clicks", "")),
                _pct(own.get("click_through")),
            )
        out.print(eds)
        out.print(
            f"not sent this time: {data['skipped_paused']} paused reader(s), {data['skipped_monthly']} monthly "
            "reader(s) waiting for the month's first issue",
            markup=False,
        )


def _print_clicks(data: dict[str, Any]) -> None:
    clicks, opens = data["clicks"], data["opens"]
    out.print(f"unique opens: {opens['unique_opens']} ({_pct(opens['open_rate'])}); {opens['note']}", markup=False)
    if not clicks["tracked"]:
        out.print("clicks: not tracked for this issue ([tracking] clicks = false when it was sent)", markup=False)
        return
    out.print(
        f"readers' clicks: {clicks['unique_clicks']} unique ({_pct(clicks['click_through'])} of sent), "
        f"{clicks['reader_clicks']} in all; {clicks['set_aside_total']} set aside as scanners",
        markup=False,
    )
    for reason, n in clicks["set_aside"].items():
        if n:
            out.print(f"  {n:>4}  {clicks['set_aside_why'][reason]}", markup=False)
    several = len(data["editions"]) > 1
    # Across editions a comparison has a rank in each: the total names it by title only.
    _comparisons_table(clicks["comparisons"], "all editions" if several else "", ranked=not several)
    for ed in data["editions"] if several else []:
        if ed.get("clicks") and ed["sent"]:
            _comparisons_table(ed["clicks"]["comparisons"], f"edition {ed['key']} ({ed['label']})")


def _comparisons_table(comparisons: list[dict[str, Any]], title: str, ranked: bool = True) -> None:
    if title:
        out.print(title, markup=False)  # plain text: a label comes from config.toml
    table = Table(*(["#"] if ranked else []), "comparison", "sent", "unique clicks", "click-through")
    for c in comparisons:
        table.add_row(
            *([str(c["rank"])] if ranked else []),
            c["title"],
            str(c["emails"]),
            str(c["unique_clicks"]),
            _pct(c["click_through"]),
        )
    out.print(table)


def _reporting() -> str:
    """Which registered transports report delivery events (read from their capabilities)."""
    from digest.providers import registry

    names = [n for n in registry.names() if registry.get(n).capabilities.reports]
    return f"the {' and '.join(names)} transports do, through their webhooks" if names else "no transport does"
