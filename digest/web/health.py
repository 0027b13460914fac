"""`/healthz`: is this `digest serve` doing its job? JSON for people and monitors.

    GET /healthz        database, scheduler, next run, last issue, overdue flag;
                        503 when the database is unreachable, the scheduler is not
                        running, or the latest issue is overdue (an operator must act)
    GET /healthz/live   200 while the process and its database answer: for load
                        balancers and restarts, which an overdue issue must not trigger

Anyone may ask whether the service is well (`{"status": "ok"}` or `"error"`, and the HTTP
code); the details (delivery counts, database error text, the scheduler's last run) only go
to an operator: see `digest.web.operator.may_see_details`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select, text

from digest.runtime import Runtime
from digest.schedule.slots import slot_state
from digest.storage.models import MAIN_EDITION_KEY, Delivery, Edition, Issue
from digest.web.operator import may_see_details
from digest.weeks import iso_utc

router = APIRouter()

NO_CACHE = {"Cache-Control": "no-store"}


def _database(rt: Runtime) -> str | None:
    """None when reachable, else the first line of the driver's error."""
    try:
        with rt.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "unreachable"
        orig = getattr(exc, "orig", None) or exc
        return (str(orig).strip().splitlines() or [type(exc).__name__])[0]


def last_issue(rt: Runtime) -> dict[str, Any] | None:
    with rt.sessions() as session:
        issue = session.scalar(select(Issue).order_by(Issue.week.desc()).limit(1))
        if issue is None:
            return None
        subject = session.scalar(
            select(Edition.subject).where(Edition.issue_id == issue.id, Edition.key == MAIN_EDITION_KEY)
        )
        counts = dict(
            session.execute(
                select(Delivery.status, func.count()).where(Delivery.issue_id == issue.id).group_by(Delivery.status)
            ).all()
        )
    return {
        "week": issue.week,
        "number": issue.number,
        "status": issue.status,
        "subject": subject,
        "skip_reason": issue.skip_reason,
        "scheduled_for": iso_utc(issue.scheduled_for),
        "enqueued_at": iso_utc(issue.enqueued_at),
        "sent_at": iso_utc(issue.sent_at),
        "deliveries": {str(k): int(v) for k, v in counts.items()},
    }


@router.api_route("/healthz", methods=["GET", "HEAD"], include_in_schema=False)
def healthz(request: Request) -> JSONResponse:
    rt: Runtime = request.app.state.rt
    service = getattr(request.app.state, "scheduler", None)
    problems: list[str] = []
    db_error = _database(rt)
    body: dict[str, Any] = {"database": {"reachable": db_error is None, "backend": rt.engine.dialect.name}}
    if db_error:
        body["database"]["error"] = db_error
        problems.append(f"database unreachable: {db_error}")
    if service is None:
        body["scheduler"] = {"running": False, "next_run_time": None, "last_run": None}
        problems.append("the scheduler is not running in this process (start the service with `digest serve`)")
    else:
        body["scheduler"] = service.status()
        if not body["scheduler"]["running"]:
            problems.append("the scheduler is not running")
        last = service.last_run
        if last is not None and last.outcome == "error":
            problems.append(f"the last weekly job failed: {last.error}")
    body["last_issue"] = None
    body["overdue"] = False
    if db_error is None:
        try:
            body["last_issue"] = last_issue(rt)
            state = slot_state(rt, service.clock() if service is not None else None)
            body["schedule"] = state.as_dict()
            body["overdue"] = state.overdue
            if state.overdue:
                problems.append(state.message)
        except Exception as exc:  # noqa: BLE001 - a failing query is a health problem, not a 500
            problems.append(f"database query failed: {type(exc).__name__}")
    body["status"] = "error" if problems else "ok"
    body["problems"] = problems
    ordered = {"status": body.pop("status"), "problems": body.pop("problems"), **body}
    return _answer(request, ordered, 503 if problems else 200)


def _answer(request: Request, body: dict[str, Any], status: int) -> JSONResponse:
    """The details for an operator; for everyone else only ok / error and the code."""
    if not may_see_details(request):
        body = {"status": body["status"]}
    return JSONResponse(body, status_code=status, headers={**NO_CACHE, "Vary": "Authorization"})


@router.api_route("/healthz/live", methods=["GET", "HEAD"], include_in_schema=False)
def live(request: Request) -> JSONResponse:
    rt: Runtime = request.app.state.rt
    db_error = _database(rt)
    if db_error:
        return _answer(request, {"status": "error", "database": {"reachable": False, "error": db_error}}, 503)
    return _answer(request, {"status": "ok", "database": {"reachable": True}}, 200)
