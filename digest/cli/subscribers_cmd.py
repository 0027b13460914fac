"""`digest subscribers ...`: the operator's view of the list."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from digest.cli import app
from digest.cli import err as err_console
from digest.cli.context import out, print_json, runtime
from digest.cli.help import command_group
from digest.cli.output import Table
from digest.delivery.mail_queue import DrainResult, drain, queue_mail
from digest.errors import DatabaseUnavailable, UserError
from digest.storage.models import MailStatus, OutgoingMail, Subscriber, SubscriberStatus, Suppression
from digest.weeks import as_utc, utcnow
from subscribers.addresses import normalize_email
from subscribers.api import add_subscriber
from subscribers.bounce_mail import poll_mailbox, process_bounce_mail
from subscribers.bulk_add import Progress as ImportProgress
from subscribers.consent import consent_history
from subscribers.csvio import ImportReport, export_csv, import_csv
from subscribers.erasure import forget
from subscribers.mailto import process_unsubscribe_mail

STATUSES = ("pending", "active", "unsubscribed", "bounced", "complained")

subscribers_app = command_group("Subscribers: add, list, count, import, export, forget.")
app.add_typer(subscribers_app, name="subscribers")


def _progress_bar(label: str) -> Progress:
    """The bar the long subscriber commands show on a terminal (stderr, gone when done)."""
    return Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err_console, transient=True
    )


def _send_queued(what: str, expected: int = 1) -> None:
    """Send the confirmations just queued (a running `digest serve` would also pick them up)."""
    rt = runtime()
    if expected > 1 and err_console.is_terminal:
        with _progress_bar(f"sending {what}") as bar:
            task = bar.add_task(what, total=expected)
            result: DrainResult = drain(rt, on_progress=lambda r: bar.update(task, completed=r.handled))
    else:
        result = drain(rt)
    if result.sent or result.failed or result.deferred:
        out.print(
            f"{what}: {result.sent} sent, {result.failed} failed, {result.deferred} to retry later "
            f"(transport: {rt.config.transport_kind})",
            markup=False,
        )
    for err in dict.fromkeys(result.errors):
        out.print(f"  {err}", markup=False)


@subscribers_app.command("add")
def subscribers_add(
    email: str = typer.Argument(..., help="Email address."),
    name: str = typer.Option(None, "--name", help="Display name."),
    confirmed: bool = typer.Option(False, "--confirmed", help="Skip double opt-in (you hold consent)."),
) -> None:
    """Add one subscriber: pending with a confirmation email, or active with --confirmed."""
    rt = runtime()
    with rt.sessions.begin() as session:
        result = add_subscriber(session, email, name=name, confirmed=confirmed, source="cli")
        queued = result.action == "added" and result.subscriber.status == SubscriberStatus.PENDING
        if queued:
            result.subscriber.confirmation_sent_at = utcnow()
            queue_mail(session, "confirm", result.subscriber.id)
    sub = result.subscriber
    if result.action == "suppressed":
        out.print(f"{sub.email}: on the suppression list (bounced, complained or erased); not added", markup=False)
        raise typer.Exit(1)
    if result.action == "left":
        out.print(
            f"{sub.email}: left the list earlier; not re-added (only their own confirmation link "
            "brings them back: they can sign up again through the form)",
            markup=False,
        )
        raise typer.Exit(1)
    out.print(f"{result.action}: {sub.email} ({sub.status})", markup=False)
    if queued:
        _send_queued("confirmation")


@subscribers_app.command("list")
def subscribers_list(
    status: str = typer.Option(None, "--status", help=f"Only this status ({', '.join(STATUSES)})."),
    limit: int = typer.Option(50, "--limit", min=1, help="Show at most this many (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show subscribers, newest first."""
    if status is not None and status not in STATUSES:
        raise UserError(f"--status: {status!r} is not a status ({', '.join(STATUSES)})")
    rt = runtime()
    with rt.sessions() as session:
        q = select(Subscriber).order_by(Subscriber.id.desc()).limit(limit)
        if status:
            q = q.where(Subscriber.status == status)
        subs = session.scalars(q).all()
    if as_json:
        print_json(
            [
                {
                    "id": s.id,
                    "email": s.email,
                    "name": s.name,
                    "status": s.status,
                    "created_at": s.created_at,
                    "confirmed_at": s.confirmed_at,
                    "consent_source": s.consent_source,
                }
                for s in subs
            ]
        )
        return
    if not subs:
        out.print("no subscribers" + (f" with status {status}" if status else ""), markup=False)
        return
    table = Table(box=None, pad_edge=False)
    for col in ("id", "email", "name", "status", "since", "consent"):
        table.add_column(col, no_wrap=col == "email")
    for s in subs:
        table.add_row(
            str(s.id),
            s.email,
            s.name or "",
            s.status,
            as_utc(s.created_at).strftime("%Y-%m-%d"),
            s.consent_source or "",
        )
    out.print(table)


@subscribers_app.command("count")
def subscribers_count(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """How many subscribers there are in each status."""
    rt = runtime()
    with rt.sessions() as session:
        by_status = select(Subscriber.status, func.count()).group_by(Subscriber.status)
        counts: dict[str, int] = dict(session.execute(by_status).all())
        suppressed = session.scalar(select(func.count()).select_from(Suppression)) or 0
        queued = (
            session.scalar(
                select(func.count()).select_from(OutgoingMail).where(OutgoingMail.status == MailStatus.QUEUED)
            )
            or 0
        )
    data = {s: int(counts.get(s, 0)) for s in STATUSES}
    data["total"] = sum(data.values())
    data["suppressed"] = int(suppressed)
    data["mail_queued"] = int(queued)
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        out.print(f"{key:13} {value}", markup=False)


# More confirmation emails than this at once, and the import asks first.
HANDFUL = 10


@subscribers_app.command("import")
def subscribers_import(
    file: Path = typer.Argument(..., help="CSV with an email column (and optionally name)."),
    confirmed: bool = typer.Option(False, "--confirmed", help="Import as active (needs --consent)."),
    consent: str = typer.Option(None, "--consent", help='How consent was given, e.g. "signed up at the 2026 meetup".'),
    yes: bool = typer.Option(
        False, "--yes", "-y", help=f"Send more than {HANDFUL} confirmation emails without asking."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Count new / already there / suppressed / invalid; change nothing, send nothing."
    ),
) -> None:
    """Import a CSV: pending with confirmation emails, or active with --confirmed --consent."""
    rt = runtime()
    if dry_run or not (confirmed or yes):
        with _import_progress("checking") as progress:
            planned = import_csv(rt, file, confirmed=confirmed, consent=consent, dry_run=True, progress=progress)
        if dry_run:
            _print_notes(file, planned)
            fate = "active" if confirmed else "pending, each gets a confirmation email"
            out.print(
                f"dry run: {planned.added} new ({fate}), "
                f"{planned.unchanged + planned.activated} already there"
                + (f" ({planned.activated} would be activated)" if planned.activated else "")
                + f", {planned.suppressed} suppressed, {planned.left} left earlier, "
                f"{len(planned.bad)} invalid, {len(planned.duplicates)} duplicates; nothing changed"
            )
            if planned.bad:
                raise typer.Exit(1)
            return
        if planned.confirmations > HANDFUL:
            _ask_before_mailing(planned.confirmations, file)
    with _import_progress("importing") as progress:
        report = import_csv(rt, file, confirmed=confirmed, consent=consent, progress=progress)
    _print_notes(file, report)
    out.print(
        f"imported: {report.added} added ({'active' if confirmed else 'pending'}), {report.activated} activated, "
        f"{report.unchanged} already on the list, {report.left} left earlier (not re-added), "
        f"{report.suppressed} suppressed (not re-added), {len(report.duplicates)} duplicates, "
        f"{len(report.bad)} bad lines"
    )
    if report.confirmations:
        _send_queued("confirmations", expected=report.confirmations)
    if report.bad:
        raise typer.Exit(1)


@contextmanager
def _import_progress(what: str) -> Iterator[ImportProgress | None]:
    """A bar on the terminal while a large file is read and stored (nothing when not a terminal)."""
    if not err_console.is_terminal:
        yield None
        return
    with _progress_bar(f"{what}: {{task.description}}") as bar:
        task = bar.add_task("reading", total=None)
        yield lambda phase, done, total: bar.update(task, description=phase, completed=done, total=total)


def _print_notes(file: Path, report: ImportReport) -> None:
    notes = report.bad + [(line, f"duplicate of line {first}; skipped") for line, first in report.duplicates]
    for line, reason in sorted(notes):
        out.print(f"{file}:{line}: {reason}")


def _ask_before_mailing(count: int, file: Path) -> None:
    """A confirmation email to every row is not undone: the operator says yes first."""
    what = f"{file} has {count} new addresses: each gets a confirmation email now"
    if not sys.stdin.isatty():
        raise UserError(f"{what}. Nothing was imported: pass --yes to send them (--dry-run shows the counts first)")
    if not typer.confirm(f"{what}. Send {count} confirmation emails?", default=False):
        out.print("import cancelled: nothing changed, nothing sent")
        raise typer.Exit(1)


@subscribers_app.command("export")
def subscribers_export(file: str = typer.Argument(..., help="Output CSV path, or - for stdout.")) -> None:
    """Export every subscriber: status, consent, preferences and their changes, their own clicks and opens."""
    rt = runtime()
    if file == "-":
        export_csv(rt, None, sys.stdout)
        return
    count = export_csv(rt, Path(file))
    out.print(f"exported {count} subscribers to {file}", markup=False)


@subscribers_app.command("forget")
def subscribers_forget(email: str = typer.Argument(..., help="The person's email address.")) -> None:
    """Erase a person (GDPR): only a hash stays, on the suppression list."""
    rt = runtime()
    result = forget(rt, email)
    what = "erased" if result.found else "not on the list; suppression hash recorded"
    out.print(
        f"{result.email}: {what}; {result.deliveries_cleared} past deliveries anonymised, "
        f"{result.files_removed} outbox copies deleted",
        markup=False,
    )


@subscribers_app.command("unsubscribe-mail")
def subscribers_unsubscribe_mail(
    files: list[str] = typer.Argument(..., help=".eml files sent to sender.unsubscribe_mailto, or - for stdin."),
) -> None:
    """Process unsubscribe requests that arrived by email (the mailto: in List-Unsubscribe).

    Only a signed token counts; a message without one changes nothing. Every message exits 0
    (a mail alias turns a non-zero exit into a bounce that would tell the sender who is on
    the list); only an unreadable file is an error.
    """
    rt = runtime()
    for name in files:
        raw = _read_mail(name)
        outcome = process_unsubscribe_mail(rt, raw)
        out.print(f"{name}: {outcome.message}", markup=False)


def _read_mail(name: str) -> bytes:
    """One mail for a pipe-alias command: a file, or `-` for standard input."""
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise UserError(f"{name}: cannot be read ({exc.strerror})") from None


EX_TEMPFAIL = 75  # sysexits.h: "try again later", which a pipe alias's MTA honours

# Set by Postfix's local(8) (and Exim's pipe transport as LOCAL_PART@DOMAIN) for a command alias.
ENVELOPE_ENV = ("ORIGINAL_RECIPIENT", "RECIPIENT")


@subscribers_app.command("bounce-mail")
def subscribers_bounce_mail(
    files: list[str] = typer.Argument(..., help="Bounce or complaint .eml files, or - for stdin (a pipe alias)."),
) -> None:
    """Process bounces (RFC 3464 and older MTA formats) and complaints (ARF) sent to the bounce address.

    Only a report to one of our VERP addresses ([transport.smtp] bounce_address) acts, on the
    recipient our own row names: a hard bounce suppresses them, soft ones count ([bounces]
    soft_bounce_limit), a complaint suppresses. Anything else changes nothing. Every message
    exits 0 (a non-zero exit would bounce the bounce); an unreadable file is an error, and a
    database that cannot take reports exits 75 (the mail system keeps the report and retries).
    """
    envelope = [v for v in (os.environ.get(k, "").strip() for k in ENVELOPE_ENV) if v]
    name = files[0]
    try:
        rt = runtime()
        for name in files:
            raw = _read_mail(name)
            outcome = process_bounce_mail(rt, raw, envelope)
            out.print(f"{name}: {outcome.message}", markup=False)
    except (SQLAlchemyError, DatabaseUnavailable) as exc:
        # EX_TEMPFAIL: Postfix and Exim keep the report and pipe it again later, instead of bouncing it.
        err_console.print(
            f"error: {name}: the database cannot take reports now ({type(exc).__name__}); "
            "exit 75 so the mail system tries again later",
            markup=False,
        )
        raise typer.Exit(EX_TEMPFAIL) from None


@subscribers_app.command("bounce-poll")
def subscribers_bounce_poll() -> None:
    """Read new bounce and complaint reports from the IMAP mailbox of [bounces] (e.g. from cron).

    Each report is flagged $DigestProcessed (and moved to imap_done_folder when set) after it
    is applied, so none is processed twice.
    """
    rt = runtime()
    result = poll_mailbox(rt, on_report=lambda note: out.print(f"  {note}", markup=False))
    if result.busy:
        out.print("another process (digest serve) is reading the mailbox now; nothing done", markup=False)
        return
    out.print(f"{result.read} reports read, {result.changed} changed a subscriber", markup=False)


@subscribers_app.command("consent")
def subscribers_consent(
    email: str = typer.Argument(..., help="The person's email address."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show how a person got on the list: every sign-up, confirmation and resubscribe, oldest first."""
    rt = runtime()
    address = normalize_email(email)
    with rt.sessions() as session:
        sub = session.scalar(select(Subscriber).where(Subscriber.email == address))
        if sub is None:
            raise UserError(f"{address}: not on the list")
        rows = [
            {
                "at": as_utc(r.created_at).isoformat(timespec="seconds"),
                "kind": r.kind,
                "source": r.source,
                "ip": r.ip,
                "user_agent": r.user_agent,
            }
            for r in consent_history(session, sub.id)
        ]
    if as_json:
        print_json(rows)
        return
    out.print(f"{address} ({sub.status})", markup=False)
    for r in rows:
        out.print(
            f"  {r['at']}  {r['kind']:<12} {r['source'] or ''}  ip {r['ip'] or '-'}  {r['user_agent'] or ''}",
            markup=False,
        )
