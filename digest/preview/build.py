"""Build the preview message exactly as the real send would, for a sample reader, and cache it.

Digest: compile_edition (once) -> IssueMessages.build (per reader) -> mail.to_mime, the same path
the sender takes. Confirm and welcome: digest.delivery.mail_builder.MailBuilder (render_transactional).
A build is cached under the template files' mtimes, the settings generation and the selection, so an unchanged page is a
dictionary look-up and a template edit recompiles only once.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from digest.cycle import editions
from digest.delivery.mail_builder import MailBuilder
from digest.delivery.messages import IssueMessages, Recipient
from digest.errors import TemplateError
from digest.links import Tokens, personal_links
from digest.mail import OutgoingEmail, domain_of, to_mime
from digest.preview.checks import Check, TemplateProblem, run_checks, scan_html
from digest.preview.draft import Draft
from digest.runtime import Runtime
from digest.storage.installation import message_id_salt
from digest.storage.models import Edition, Issue, Subscriber

KINDS = ("digest", "confirm", "welcome")
SAMPLE = Recipient(delivery_id=0, subscriber_id=0, email="sample.reader@example.com", name="Sample Reader")


@dataclass
class Preview:
    kind: str
    subject: str = ""
    preheader: str = ""
    html: str = ""
    text: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    eml: bytes = b""
    checks: list[Check] = field(default_factory=list)
    problem: TemplateProblem | None = None
    build_ms: float = 0.0
    token: str = ""  # names this build in the cache, so the page's frame fetches exactly it

    @property
    def ok(self) -> bool:
        return self.problem is None

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k.lower() == name.lower()), "")


def templates_signature(folder: Path) -> tuple[Any, ...]:
    """Name, mtime and size of every file under the templates folder: changes when any is edited."""
    if not folder.is_dir():
        return ("missing", str(folder))
    out = []
    for p in sorted(folder.rglob("*")):
        try:
            st = p.stat()
        except OSError:
            continue
        if p.is_file():
            out.append((str(p.relative_to(folder)), st.st_mtime_ns, st.st_size))
    return (str(folder), tuple(out))


def _message_id_salt(rt: Runtime, issue: Issue) -> str:
    """What the sender mixes into this issue's Message-IDs (digest.storage.installation.message_id_salt)."""
    with rt.sessions.begin() as session:
        return message_id_salt(session, issue.id)


def issue_mail(
    rt: Runtime, issue: Issue, edition: Edition, to: Recipient, *, subject_prefix: str = "", key: str = ""
) -> OutgoingEmail:
    """One reader's copy of an issue's compiled edition, built by the sender's own IssueMessages."""
    mail = IssueMessages(
        rt.settings, Tokens(rt.secret_key), issue, edition, installation=_message_id_salt(rt, issue)
    ).build(to, subject_prefix=subject_prefix)
    if key:
        mail.key, mail.message_id = key, ""  # a test send is a new message: a fresh Message-ID
    return mail


def transactional_mail(
    rt: Runtime, kind: str, to: Recipient, *, subject_prefix: str = "", key: str = ""
) -> OutgoingEmail:
    """Confirm or welcome mail for `to`, built by the subscriber side's own MailBuilder (the real send path)."""
    person = Subscriber(id=to.subscriber_id, email=to.email, name=to.name)  # transient: never added to a session
    mail = MailBuilder(rt).build(0, kind, person)
    mail.subject = subject_prefix + mail.subject
    mail.key, mail.message_id = key or f"preview-{kind}", ""  # a test send is a new message: a fresh Message-ID
    return mail


def compiled_issue(rt: Runtime, draft: Draft) -> Edition:
    """The issue's main edition: a draft's compiled now from its picks (a transient row), a frozen
    issue's as stored."""
    if draft.main is not None:
        return draft.main
    return editions.compile_main(rt.config, draft.issue, draft.selection.picks)[0]


def _finish(rt: Runtime, kind: str, mail: OutgoingEmail, unsubscribe_url: str | None) -> Preview:
    msg = to_mime(mail, domain_of(rt.settings.sender.from_email))
    headers = [(k, str(v)) for k, v in msg.items()]
    hdict = {k: v for k, v in headers}
    scan = scan_html(mail.html)
    checks = run_checks(
        html=mail.html,
        text=mail.text,
        subject=mail.subject,
        headers=hdict,
        settings=rt.settings,
        unsubscribe_url=unsubscribe_url,
        needs_list_headers=kind == "digest",
        scan=scan,
    )
    return Preview(
        kind,
        subject=mail.subject,
        preheader=scan.preheader or "",
        html=mail.html,
        text=mail.text,
        headers=headers,
        eml=msg.as_bytes(),
        checks=checks,
    )


def build_preview(rt: Runtime, kind: str, draft: Draft | None) -> Preview:
    """Render one email for the sample reader; a template error becomes Preview.problem."""
    start = time.perf_counter()
    try:
        if kind == "digest":
            assert draft is not None
            issue = draft.issue
            mail = issue_mail(rt, issue, compiled_issue(rt, draft), SAMPLE, key=f"preview-{draft.week.key}")
            links = personal_links(
                rt.settings, Tokens(rt.secret_key), SAMPLE.subscriber_id, SAMPLE.email, issue.id, issue.week
            )
            preview = _finish(rt, kind, mail, links["unsubscribe_url"])
        else:
            mail = transactional_mail(rt, kind, SAMPLE)
            unsub = None
            if kind == "welcome":
                unsub = personal_links(
                    rt.settings, Tokens(rt.secret_key), SAMPLE.subscriber_id, SAMPLE.email, None, None
                )["unsubscribe_url"]
            preview = _finish(rt, kind, mail, unsub)
    except TemplateError as exc:
        problem = TemplateProblem.from_message(str(exc), rt.config.templates_dir)
        preview = Preview(kind, problem=problem, checks=[problem.as_check()])
    preview.build_ms = (time.perf_counter() - start) * 1000
    return preview


def edition_checks(rt: Runtime, draft: Draft) -> dict[str, list[Check]]:
    """The checks of each edition besides the all-topics one (whose checks the page shows in full),
    on the sample reader's copy: compiled now for a draft, as stored for a frozen issue."""
    from sqlalchemy import select

    the_plan = draft.editions
    if the_plan is None:
        return {}
    stored: dict[str, Edition] = {}
    if draft.frozen:
        with rt.sessions() as session:
            stored = {e.key: e for e in session.scalars(select(Edition).where(Edition.issue_id == draft.issue.id))}
    tokens, install = Tokens(rt.secret_key), _message_id_salt(rt, draft.issue)
    unsubscribe = personal_links(
        rt.settings, tokens, SAMPLE.subscriber_id, SAMPLE.email, draft.issue.id, draft.week.key
    )["unsubscribe_url"]
    out: dict[str, list[Check]] = {}
    for ed in the_plan.editions:
        if ed.key == editions.MAIN or ed.selection is None or ed.skip_reason:
            continue
        try:
            row = stored.get(ed.key) or editions.compile_edition(rt.config, draft.issue, ed, the_plan.catalogue)[0]
            mail = IssueMessages(rt.settings, tokens, draft.issue, row, installation=install).build(SAMPLE)
            out[ed.key] = _finish(rt, "digest", mail, unsubscribe).checks
        except TemplateError as exc:
            out[ed.key] = [TemplateProblem.from_message(str(exc), rt.config.templates_dir).as_check()]
    return out


class PreviewCache:
    """Small LRU of built previews; the key holds everything a render depends on."""

    def __init__(self, size: int = 24):
        self.size = size
        self._items: OrderedDict[tuple[Any, ...], Preview] = OrderedDict()
        self._tokens: dict[str, Preview] = {}
        self._checks: OrderedDict[tuple[Any, ...], dict[str, list[Check]]] = OrderedDict()
        self._lock = threading.Lock()  # one build at a time: a second request for it waits and hits
        self.hits = 0
        self.misses = 0

    def get(self, rt: Runtime, kind: str, draft: Draft | None, config_generation: int) -> Preview:
        key = (
            kind,
            config_generation,
            templates_signature(rt.config.templates_dir),
            draft.signature if (draft is not None and kind == "digest") else None,
        )
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return found
            self.misses += 1
            preview = build_preview(rt, kind, draft)
            preview.token = hashlib.sha256(repr(key).encode()).hexdigest()[:20]
            self._items[key] = preview
            self._tokens[preview.token] = preview
            while len(self._items) > self.size:
                _, old = self._items.popitem(last=False)
                self._tokens.pop(old.token, None)
            return preview

    def edition_checks(self, rt: Runtime, draft: Draft, config_generation: int) -> dict[str, list[Check]]:
        """`edition_checks`, compiled once per change of the templates, the settings or the editions'
        picks (a page with many editions is reloaded on every template save)."""
        the_plan = draft.editions
        picks = (
            None
            if the_plan is None
            else tuple(
                (
                    ed.key,
                    ed.label,
                    ed.skip_reason,
                    None
                    if ed.selection is None
                    else tuple(
                        (p.comparison.slug, p.comparison.content_hash, p.filler, p.pinned) for p in ed.selection.picks
                    ),
                )
                for ed in the_plan.editions
            )
        )
        key = (
            "edition-checks",
            config_generation,
            templates_signature(rt.config.templates_dir),
            draft.signature,
            picks,
        )
        with self._lock:
            found = self._checks.get(key)
            if found is None:
                found = self._checks[key] = edition_checks(rt, draft)
                while len(self._checks) > self.size:
                    self._checks.popitem(last=False)
            self._checks.move_to_end(key)
            return found

    def by_token(self, token: str, kind: str) -> Preview | None:
        """A build the page was rendered with (its frame and .eml links name it), if still cached."""
        found = self._tokens.get(token)
        return found if found is not None and found.kind == kind else None
