"""What a visitor sees of the embedded form on someone's site, in real Chromium against uvicorn.

- any `data-accent` gets button text that reads (WCAG contrast at least 4.5:1), light and dark;
- on a page whose origin is not in `site.allowed_origins` the form says it is not enabled
  here (not "could not reach the server") and the console names the setting;
- a sign-up through the iframe records the page that embeds it, not /embed.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from tests.conftest import output_dir
from tests.support_subscribers import subscriber, wait_for
from tests.test_signup_browser import EXTRA_PAGES, stack  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser


def _channel(v: float) -> float:
    v /= 255
    return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4


def _luminance(css: str) -> float:
    r, g, b = (float(x) for x in re.findall(r"[\d.]+", css)[:3])
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast(a: str, b: str) -> float:
    x, y = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (x + 0.05) / (y + 0.05)


def _serve(url: str, body: str) -> None:
    """A page on the second origin (a real server: Chromium lets only local pages reach loopback)."""
    EXTRA_PAGES[urlsplit(url).path] = body


def _host(app_url: str, attrs: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Host</title></head><body>'
        f'<h1>An article</h1><script src="{app_url}/embed.js" {attrs}></script></body></html>'
    )


ACCENTS = ["#1d4ed8", "#3b82f6", "#1e3a8a", "#0f172a", "#facc15", "#22c55e", "#e11d48", "#777777", "#f0f", "#6366f1"]


def test_accent_button_text_is_readable_in_light_and_dark(stack, browser) -> None:  # noqa: F811
    _, app_url, site = stack
    page = browser.new_page(viewport={"width": 600, "height": 500})
    worst = 99.0
    for theme in ("light", "dark"):
        for accent in ACCENTS:
            url = f"{site}/accent-{theme}-{accent[1:]}.html"
            _serve(url, _host(app_url, f'data-theme="{theme}" data-accent="{accent}"'))
            page.goto(url)
            button = page.get_by_role("button", name="Subscribe")
            button.wait_for()
            colours = button.evaluate("b => { const s = getComputedStyle(b); return [s.color, s.backgroundColor]; }")
            ratio = contrast(*colours)
            worst = min(worst, ratio)
            assert ratio >= 4.5, (
                f"{theme} theme, accent {accent}: button text {colours[0]} on {colours[1]} is {ratio:.2f}:1"
            )
            if accent == "#1e3a8a" and theme == "dark":
                page.screenshot(path=str(output_dir("signup") / "embed-dark-accent.png"))
    print(f"lowest button contrast over {len(ACCENTS)} accents x 2 themes: {worst:.2f}:1")


def test_form_on_an_origin_not_allowed_says_so_and_names_the_setting(stack, browser) -> None:  # noqa: F811
    rt, app_url, site = stack
    page = browser.new_page(viewport={"width": 600, "height": 500})
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text))
    other = site.replace("localhost", "127.0.0.1")  # same server, an origin not in site.allowed_origins
    _serve(f"{other}/post.html", _host(app_url, 'data-source="elsewhere"'))
    page.goto(f"{other}/post.html")
    page.get_by_label("Email address").fill("elsewhere@example.com")
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_text("This form isn’t enabled for this site").wait_for(timeout=15000)
    assert "could not reach" not in page.locator("[data-digest-signup]").inner_text().lower()
    assert wait_for(lambda: any("site.allowed_origins" in line and other in line for line in console), timeout=5), (
        console
    )
    assert subscriber(rt, "elsewhere@example.com") is None
    page.screenshot(path=str(output_dir("signup") / "embed-origin-not-allowed.png"))


def test_server_down_still_says_could_not_reach(stack, browser) -> None:  # noqa: F811
    _, app_url, site = stack
    page = browser.new_page(viewport={"width": 600, "height": 500})
    _serve(f"{site}/down.html", _host(app_url, 'data-source="down"'))
    page.goto(f"{site}/down.html")
    page.get_by_label("Email address").wait_for()
    page.route(f"{app_url}/**", lambda route: route.abort("connectionrefused"))
    page.get_by_label("Email address").fill("down@example.com")
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_text("We could not reach the server").wait_for(timeout=15000)


README_IFRAME = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>iframe</title></head><body>
<iframe src="{app}/embed" title="Newsletter sign-up" referrerpolicy="no-referrer-when-downgrade"
        style="border:0;width:100%;max-width:32rem;height:230px"></iframe></body></html>"""


@pytest.mark.parametrize("policy", ["readme", "browser-default"])
def test_iframe_sign_up_records_the_host_page(stack, browser, policy) -> None:  # noqa: F811
    rt, app_url, site = stack
    page = browser.new_page(viewport={"width": 600, "height": 500})
    html = README_IFRAME.format(app=app_url)
    if policy == "browser-default":  # strict-origin-when-cross-origin: the browser sends only the origin
        html = html.replace(' referrerpolicy="no-referrer-when-downgrade"', "")
    _serve(f"{site}/articles/cursor-vs-smollm3.html?utm=x", html)
    page.goto(f"{site}/articles/cursor-vs-smollm3.html?utm=x")
    address = f"framed-{policy}@example.com"
    frame = page.frame_locator("iframe")
    frame.get_by_label("Email address").fill(address)
    frame.get_by_role("button", name="Subscribe").click()
    frame.get_by_text("Almost there").wait_for(timeout=15000)
    source = subscriber(rt, address).consent_source
    expected = f"{site}/articles/cursor-vs-smollm3.html" if policy == "readme" else f"{site}/"
    assert source == f"web:embed on {expected}", source
    assert "/embed" not in source.split(" on ", 1)[1]


def test_page_field_from_an_origin_not_allowed_is_not_recorded(stack) -> None:  # noqa: F811
    import httpx

    rt, app_url, site = stack
    r = httpx.post(
        f"{app_url}/subscribe",
        json={"email": "forged-page@example.com", "source": "embed", "page": "https://evil.example/phish"},
    )
    assert r.status_code == 200
    assert "evil.example" not in subscriber(rt, "forged-page@example.com").consent_source
    ok = httpx.post(
        f"{app_url}/subscribe",
        json={"email": "good-page@example.com", "source": "embed", "page": f"{site}/a/b.html?email=x"},
    )
    assert ok.status_code == 200
    assert subscriber(rt, "good-page@example.com").consent_source == f"web:embed on {site}/a/b.html"
