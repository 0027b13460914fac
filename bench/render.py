"""Rendering benchmark: compile a 5-item issue once, then personalize it for many readers.

Prints the issue's size (HTML, one reader's MIME message), the compile time (Jinja + MJML,
cold and warm; the MJML step on its own), the sender's CPU time per email and how
many personalized messages per second one core builds with the same code the sender uses
(digest.delivery.messages.IssueMessages.build: signed unsubscribe token, links, fill).
Runs in well under a minute:  .venv/bin/python bench/render.py [--readers N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest.config import load_config  # noqa: E402
from digest.delivery.messages import IssueMessages, Recipient  # noqa: E402
from digest.links import Tokens  # noqa: E402
from digest.render.issue_email import issue_context  # noqa: E402
from digest.render.personalize import markers, new_nonce  # noqa: E402
from digest.render.templates import cached_env, compile_mjml, render_template  # noqa: E402
from digest.storage.models import Edition  # noqa: E402
from tests.support_render import compile_sample, sample_issue  # noqa: E402


def pin_one_core() -> str:
    """Run on a single CPU so the figure is a per-core one, whatever else the machine does."""
    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    except (AttributeError, OSError):
        return "not pinned (no sched_setaffinity)"


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readers", type=int, default=20_000, help="personalized messages per round (3 rounds)")
    args = ap.parse_args()
    where = pin_one_core()
    secret = "bench-secret-key-0123456789abcdef"
    config = load_config(ROOT / "config.toml", env={"DIGEST_SECRET_KEY": secret})
    issue = sample_issue(5)

    cold = timed(lambda: compile_sample(config, issue), 1)[0]
    warm = timed(lambda: compile_sample(config, issue), 20)
    env = cached_env(config.templates_dir)
    source = render_template(env, "digest.mjml.j2", issue_context(config, issue, markers(new_nonce()), issue.picks))
    path = config.templates_dir / "digest.mjml.j2"
    mjml_only = timed(lambda: compile_mjml(source, path, env), 20)
    compiled = compile_sample(config, issue)

    issue.id = 1
    main = Edition(
        id=1,
        issue_id=1,
        key="weekly/all",
        html=compiled.html,
        text=compiled.text,
        placeholder_nonce=compiled.nonce,
        subject=compiled.subject,
        links=compiled.links,
    )  # tracked links ([tracking] clicks = true, the default): 15 tokens per reader
    messages = IssueMessages(config.settings, Tokens(secret), issue, main, installation="bench")
    readers = [
        Recipient(i + 1, 1000 + i, f"reader{i}@example.com", f"Reader Number{i}" if i % 3 else None)
        for i in range(args.readers)
    ]

    def personalize() -> None:
        for r in readers:
            messages.build(r)

    rounds = timed(personalize, 3)
    rates = [args.readers / t for t in rounds]
    cpu_start = time.process_time()
    personalize()
    cpu_per_email = (time.process_time() - cpu_start) / args.readers
    sample = messages.build(readers[1])
    from digest.mail import domain_of, to_mime  # only for the size of one message on the wire

    domain = domain_of(config.settings.sender.from_email)
    wire = len(to_mime(sample, domain).as_bytes())
    mime_readers = readers[: max(1, args.readers // 5)]
    cpu_start = time.process_time()
    for r in mime_readers:
        to_mime(messages.build(r), domain).as_bytes()
    cpu_per_mime = (time.process_time() - cpu_start) / len(mime_readers)
    resend_messages = IssueMessages(
        config.settings, Tokens(secret), issue, main, installation="bench", json_bodies=True
    )

    def personalize_json() -> None:
        for r in readers:
            resend_messages.build(r)

    json_rates = [args.readers / t for t in timed(personalize_json, 3)]
    main.links = None
    untracked = IssueMessages(config.settings, Tokens(secret), issue, main, installation="bench")
    cpu_start = time.process_time()
    for r in readers:
        untracked.build(r)
    cpu_untracked = (time.process_time() - cpu_start) / args.readers
    main.links = compiled.links
    fill_values = {
        "unsubscribe_url": "http://127.0.0.1:8000/u/token",
        "manage_url": "http://127.0.0.1:8000/u/token?manage=1",
        "view_url": "http://127.0.0.1:8000/archive/2026-W47",
        "name": "Reader",
        "greeting": "Hi Reader,",
    }

    def fill() -> None:
        for _ in range(args.readers):
            messages.personalizer.fill(fill_values)

    fill_only = timed(fill, 3)

    print(f"rendering benchmark ({where}; Python {sys.version.split()[0]}; {os.cpu_count()} CPUs visible)")
    print(
        f"issue: 5 items, HTML {len(compiled.html.encode()) / 1024:.1f} KB ({len(compiled.html.encode()):,} bytes), "
        f"text {len(compiled.text.encode()) / 1024:.1f} KB"
    )
    print(
        f"one reader's message: HTML {len(str(sample.html).encode()) / 1024:.1f} KB filled; "
        f"{wire / 1024:.1f} KB as MIME (quoted-printable, both parts and headers)"
    )
    print(
        f"compile once per issue (Jinja + MJML): cold {cold * 1000:.1f} ms, "
        f"warm median {statistics.median(warm) * 1000:.1f} ms"
    )
    print(f"  of which MJML -> HTML (check + mjml-python): median {statistics.median(mjml_only) * 1000:.1f} ms")
    print(
        f"personalized messages/s (IssueMessages.build: token, links, fill), {args.readers} readers x 3: "
        f"median {statistics.median(rates):,.0f}/s, best {max(rates):,.0f}/s"
    )
    print(
        f"  with the JSON body the Resend transport sends (json_bodies=True): "
        f"median {statistics.median(json_rates):,.0f}/s"
    )
    print(f"  fill only (Personalizer.fill): {args.readers / statistics.median(fill_only):,.0f}/s")
    print(
        f"  of which the {len(compiled.links or [])} tracked links' tokens (clicks on vs off): "
        f"{(cpu_per_email - cpu_untracked) * 1e6:.1f} µs per email"
    )
    print(
        f"sender CPU per email (process time): build {cpu_per_email * 1e6:.1f} µs; "
        f"build + MIME bytes (what the SMTP and outbox transports also do) {cpu_per_mime * 1e6:.0f} µs"
    )
    target = 20_000
    print(f"target >= {target:,}/s on one core: {'met' if statistics.median(rates) >= target else 'NOT met'}")


if __name__ == "__main__":
    main()
