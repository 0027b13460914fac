"""The fake Resend's limiter counts arrivals: at most N in any one-second window, no burst credit.

A token bucket lets a client that paused send a burst and then a refill on top of it
(up to 2N - 1 requests in one second); a provider counting arrivals refuses that.
Arrival times are given to the fake directly, so these checks do not depend on timing.
"""

from __future__ import annotations

import random

from tests.fake_resend import FakeResend

KEY = "re_test_key"
AUTH = f"Bearer {KEY}"


def test_no_refill_inside_the_window_after_n_arrivals() -> None:
    state = FakeResend(api_keys={KEY}, rate_limit=4)
    t0 = 1_000.0
    assert [state.admit(t0 + i * 0.01, AUTH, None) for i in range(4)] == [None] * 4
    # Half a second later a token bucket has refilled two tokens; the window still holds 4 arrivals.
    limited = state.admit(t0 + 0.5, AUTH, None)
    assert limited is not None and limited.status == 429
    assert limited.headers["ratelimit-limit"] == "4" and limited.headers["ratelimit-remaining"] == "0"
    assert limited.headers["retry-after"] == "1" and limited.headers["ratelimit-reset"] == "1"
    # Once the first arrival has left the window, exactly one more fits.
    assert state.admit(t0 + 1.005, AUTH, None) is None
    again = state.admit(t0 + 1.006, AUTH, None)
    assert again is not None and again.status == 429


def test_any_one_second_window_holds_at_most_n_admitted_arrivals_and_nothing_more_is_refused() -> None:
    n = 10
    state = FakeResend(api_keys={KEY}, rate_limit=n)
    rng = random.Random(7)
    t, admitted, refused = 5_000.0, [], []
    for _ in range(600):
        t += rng.expovariate(1.5 * n)  # arrivals 50 % above the limit, with bursts and gaps
        (admitted if state.admit(t, AUTH, None) is None else refused).append(t)
    assert refused, "the sequence should exceed the limit"
    for i in range(len(admitted) - n):
        assert admitted[i + n] - admitted[i] >= 1.0, f"{n + 1} arrivals within one second at {admitted[i]}"
    for r in refused:  # refused only when the window before it was already full
        assert sum(1 for a in admitted if r - 1.0 < a <= r) == n


def test_every_answer_carries_the_ratelimit_headers() -> None:
    state = FakeResend(api_keys={KEY}, rate_limit=3)
    answer = state.handle_batch(100.0, b"[]", None, True)  # answered (422) after admission
    assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= set(answer.headers)
