"""Preview benchmark: how fast `digest preview` shows the issue, and re-shows it after a template edit.

Starts the real preview server (uvicorn, 127.0.0.1, free port) on a throw-away project with its
own copy of templates/email and `--comparisons` candidates (SQLite, or DIGEST_DATABASE_URL), then:

  first render      GET / and its email frame on a server that has compiled nothing yet (the real
                    server also builds the week's issue while starting, so its first view is faster)
  cached render     the same again, nothing changed (render cache hit)
  re-render         after each edit of a template file: GET / + frame (recompiles once)
  reload latency    file write -> the `version` event on the page's event stream (watchfiles)
  browser           (with Chromium) first page load; file write -> page reloaded with the new email

Targets: first render < 300 ms, re-render < 100 ms.   .venv/bin/python bench/preview.py
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from digest.config import load_config  # noqa: E402
from digest.ingest.schema import ComparisonData  # noqa: E402
from digest.ingest.sources import expand  # noqa: E402
from digest.ingest.store import upsert  # noqa: E402
from digest.preview.server import PreviewServer  # noqa: E402
from digest.runtime import open_runtime  # noqa: E402
from digest.weeks import utcnow  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def make_project(folder: Path, templates: Path) -> Path:
    shutil.copytree(templates, folder / "templates" / "email")
    text = (ROOT / "config.toml").read_text()
    text = text.replace("test_recipients = []", 'test_recipients = ["bench@example.com"]')
    (folder / "config.toml").write_text(text)
    return folder / "config.toml"


def seed(rt, n: int) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    items = []
    for i in range(n):
        items.append(
            ComparisonData.model_validate(
                {
                    "title": f"Bench Tool {i} vs Other Tool {i}",
                    "intro": "Which one should you ship with?",
                    "community_votes": 10 + i,
                    "tools": [
                        {
                            "category": "Developer Tools",
                            "name": f"Bench Tool {i}",
                            "tagline": "Does things",
                            "panel_ship": (37 * i) % 101,
                            "community": (53 * i) % 101,
                            "price": "Free",
                            "description": "A tool.",
                        },
                        {
                            "category": "Developer Tools",
                            "name": f"Other Tool {i}",
                            "tagline": "Does other things",
                            "panel_ship": (71 * i) % 101,
                            "community": None,
                            "price": "$20/mo",
                            "description": "Another.",
                        },
                    ],
                    "quotes": [
                        {"tool": "a", "reviewer": 1, "text": "Solid primitive. " * 6},
                        {"tool": "b", "reviewer": 1, "text": "Clean, fast, cheap. " * 6},
                    ],
                }
            )
        )
    with rt.sessions.begin() as s:
        for src in expand([str(ROOT / "samples" / "comparisons")]):
            upsert(
                s,
                src.items or [],
                default_url="https://verdicts.example.com/compare",
                published=now - timedelta(hours=2),
            )
        upsert(s, items, default_url="https://verdicts.example.com/compare", published=now - timedelta(days=1))


def page_and_frame(client: httpx.Client, server: list[float] | None = None) -> float:
    """Wall time of GET / plus its email frame; the page's own Server-Timing total goes to `server`."""
    t = time.perf_counter()
    page = client.get("/")
    token = re.search(r'data-src="([^"]+)"', page.text)
    frame = client.get(token.group(1).replace("&amp;", "&") if token else "/render/digest.html")
    took = time.perf_counter() - t
    assert page.status_code == 200 and frame.status_code == 200, (page.status_code, frame.status_code)
    if 'data-testid="template-error"' in page.text:
        msg = page.text.split('class="problem-message">', 1)[1].split("</pre>", 1)[0]
        raise SystemExit(f"the templates do not render: {msg}")
    if server is not None:
        server.append(sum(float(d) for d in re.findall(r"dur=([0-9.]+)", page.headers.get("server-timing", ""))))
    return took * 1000


def edit(template: Path, i: int) -> None:
    """A real edit: a Jinja comment that changes the file's size and mtime (the output stays the same)."""
    text = template.read_text()
    template.write_text(text.rstrip("\n").split("\n{#- bench")[0] + f"\n{{#- bench edit {i} -#}}\n")


class EventWatcher:
    """Follow /events like the page does; record when each new version arrives."""

    def __init__(self, url: str):
        self.url = url
        self.arrivals: dict[int, float] = {}
        self.ready = threading.Event()
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        with httpx.Client(timeout=None) as c, c.stream("GET", self.url + "/events") as r:
            for line in r.iter_lines():
                if self.stop:
                    return
                if line.startswith("data: "):
                    self.arrivals[int(line[6:])] = time.perf_counter()
                    self.ready.set()

    def wait_for(self, version: int, timeout: float = 5) -> float | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if version in self.arrivals:
                return self.arrivals[version]
            time.sleep(0.002)
        return None


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def browser_times(url: str, template: Path, rounds: int) -> tuple[float, list[float], list[float]] | None:
    """Chromium: first page load (page + email frame), then edit -> live reload -> new frame shown."""
    if not os.path.exists(CHROMIUM):
        return None
    from playwright.sync_api import Error, sync_playwright

    shown = (
        "() => !window.__old && document.readyState === 'complete' && "
        "document.querySelector('.email-frame').contentDocument.readyState === 'complete' && "
        "document.getElementById('live').dataset.state === 'on'"
    )
    out, loads = [], []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = b.new_page(viewport={"width": 1440, "height": 900})
        page.goto("about:blank")  # start the renderer first: time the page, not Chromium's start-up
        t = time.perf_counter()
        page.goto(url + "/", wait_until="load")  # load waits for the email frame too
        first = (time.perf_counter() - t) * 1000
        page.wait_for_selector("#live[data-state=on]")
        for i in range(rounds):
            page.evaluate("window.__old = true")
            t = time.perf_counter()
            edit(template, 1000 + i)
            while True:
                try:
                    if page.evaluate(shown):
                        break
                except Error:  # the document is being replaced
                    pass
                time.sleep(0.005)
            out.append((time.perf_counter() - t) * 1000)
            loads.append(page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd"))
            time.sleep(0.2)
        b.close()
    return first, out, loads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--comparisons", type=int, default=60, help="candidates in the week's window")
    ap.add_argument("--edits", type=int, default=20, help="template edits to time")
    ap.add_argument(
        "--templates",
        type=Path,
        default=ROOT / "templates" / "email",
        help="email templates to copy into the throw-away project (default: the repo's)",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="digest-bench-preview-") as tmp:
        cfg_path = make_project(Path(tmp), args.templates)
        env = {"DIGEST_SECRET_KEY": "bench-secret-key-0123456789"}
        if os.environ.get("DIGEST_DATABASE_URL"):
            env["DIGEST_DATABASE_URL"] = os.environ["DIGEST_DATABASE_URL"]
        rt = open_runtime(load_config(cfg_path, env=env))
        seed(rt, args.comparisons)
        db = "PostgreSQL" if rt.on_postgres else "SQLite"
        # Cold: a server without the start-up warm-up (watch=False), so the first request compiles
        # everything itself: Jinja environments, MJML, the checks. Nothing of it was cached before.
        cold_server = PreviewServer(rt, port=0, watch=False)
        with httpx.Client(base_url=cold_server.start(), timeout=30) as client:
            first_server: list[float] = []
            first = page_and_frame(client, first_server)
        cold_server.stop()
        t = time.perf_counter()
        server = PreviewServer(rt, port=0)
        url = server.start()
        started = (time.perf_counter() - t) * 1000
        template = rt.config.templates_dir / "digest.mjml.j2"
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                after_start = page_and_frame(client)  # right away: the warm-up may still be running
                cached_server: list[float] = []
                cached = [page_and_frame(client, cached_server) for _ in range(20)]
                watcher = EventWatcher(url)
                watcher.ready.wait(5)
                rerender, latency, rerender_server = [], [], []
                for i in range(args.edits):
                    version = server.state.version
                    t = time.perf_counter()
                    edit(template, i)
                    arrived = watcher.wait_for(version + 1)
                    if arrived is not None:
                        latency.append((arrived - t) * 1000)
                    rerender.append(page_and_frame(client, rerender_server))
                watcher.stop = True
                hits, misses = server.state.cache.hits, server.state.cache.misses
            browser = browser_times(url, template, 5)
        finally:
            server.stop()
            rt.close()

    print(
        f"preview benchmark: {db}, {args.comparisons + 2} comparisons in the window; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print("                                              wall (page + frame)    in the server (page)")
    print(
        f"  first render, cold server (nothing compiled):{first:7.1f} ms             {first_server[0]:7.1f} ms"
        "    target < 300 ms"
    )
    print(
        f"  first page view right after `digest preview` started (it builds the issue while starting): "
        f"{after_start:.1f} ms; start -> listening {started:.1f} ms"
    )
    print(
        f"  cached render (nothing changed), median:     {statistics.median(cached):7.1f} ms             "
        f"{statistics.median(cached_server):7.1f} ms"
    )
    print(
        f"  re-render after a template edit, median:     {statistics.median(rerender):7.1f} ms             "
        f"{statistics.median(rerender_server):7.1f} ms    target < 100 ms"
    )
    print(
        f"  re-render after a template edit, p95:        {pct(rerender, 0.95):7.1f} ms             "
        f"{pct(rerender_server, 0.95):7.1f} ms    ({args.edits} edits)"
    )
    if latency:
        print(
            f"  edit -> reload event on the page, median:    {statistics.median(latency):7.1f} ms   "
            f"max {max(latency):.1f} ms   ({len(latency)}/{args.edits} seen)"
        )
    if browser:
        first_load, reloads, loads = browser
        print(f"  Chromium, open the page (page + frame loaded): {first_load:7.1f} ms")
        print(
            f"  Chromium, edit -> page reloaded, new email shown: {statistics.median(reloads):7.1f} ms median, "
            f"max {max(reloads):.1f} ms ({len(reloads)} edits); of which the reload's own navigation "
            f"(request -> load event, frame included) {statistics.median(loads):.1f} ms"
        )
    print(f"  render cache: {hits} hits, {misses} misses")


if __name__ == "__main__":
    main()
