"""The fake Resend can fail the ways a real provider does after accepting mail: a stalled answer,
a cut connection, and an outage that comes back with its idempotency keys intact."""

from __future__ import annotations

import httpx
import pytest

from tests.fake_resend import FakeResend, FakeResendServer, Faults
from tests.test_fake_resend import KEY, email, post


def test_accept_then_stall_keeps_the_emails_and_answers_a_retry_with_the_first_result() -> None:
    state = FakeResend(api_keys={KEY}, faults=Faults(stall_rate=1.0, stall_seconds=3.0))
    with FakeResendServer(state) as server:
        with httpx.Client(base_url=server.url, timeout=0.5) as client, pytest.raises(httpx.ReadTimeout):
            post(client, [email(1), email(2)], key="k-stall")
        assert state.copies_by_recipient() == {"r1@example.com": 1, "r2@example.com": 1}
        state.set_faults(Faults())
        with httpx.Client(base_url=server.url, timeout=10) as client:
            again = post(client, [email(1), email(2)], key="k-stall")
    assert again.status_code == 200 and len(again.json()["data"]) == 2
    assert state.copies_by_recipient() == {"r1@example.com": 1, "r2@example.com": 1}
    assert "accepted+stalled" in state.summary()["outcomes"]


def test_accept_then_drop_cuts_the_connection_after_the_emails_are_in() -> None:
    state = FakeResend(api_keys={KEY}, faults=Faults(accept_then_drop_rate=1.0))
    with FakeResendServer(state) as server, httpx.Client(base_url=server.url, timeout=5) as client:
        with pytest.raises(httpx.HTTPError):
            post(client, [email(3)], key="k-drop")
    assert state.copies_by_recipient() == {"r3@example.com": 1}
    assert state.summary()["outcomes"] == {"accepted+dropped_after": 1}


def test_an_outage_refuses_connections_then_comes_back_with_its_keys() -> None:
    state = FakeResend(api_keys={KEY})
    with FakeResendServer(state) as server:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            first = post(client, [email(4)], key="k-outage")
        assert first.status_code == 200
        server.outage()
        with httpx.Client(base_url=server.url, timeout=5) as client, pytest.raises(httpx.ConnectError):
            post(client, [email(4)], key="k-outage")
        server.restore()
        with httpx.Client(base_url=server.url, timeout=5) as client:
            again = post(client, [email(4)], key="k-outage")
    assert again.status_code == 200 and again.json() == first.json()
    assert state.copies_by_recipient() == {"r4@example.com": 1}
    assert state.summary()["outcomes"] == {"accepted": 1, "replayed": 1}
