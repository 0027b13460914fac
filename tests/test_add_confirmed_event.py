"""An operator's `add --confirmed` (or import) of someone still pending puts them on the list:
a `confirmed` event as for a new address, so the list's size over time counts them."""

from __future__ import annotations

from sqlalchemy import select

from digest.reports.insights import subscribers_by_week
from digest.storage.models import Event
from subscribers.api import add_subscriber
from tests.support_subscribers import client


def test_adding_a_pending_person_as_confirmed_records_their_confirmation(rt) -> None:
    assert client(rt).post("/subscribe", json={"email": "pat@example.com"}).status_code == 200
    with rt.sessions.begin() as s:
        assert add_subscriber(s, "pat@example.com", confirmed=True, source="cli: asked at the desk").action == "updated"
    with rt.sessions.begin() as s:  # again: already active, nothing more recorded
        assert add_subscriber(s, "pat@example.com", confirmed=True).action == "unchanged"
    with rt.sessions() as s:
        events = s.execute(select(Event.kind, Event.detail).order_by(Event.id)).all()
        weeks = subscribers_by_week(s)
    assert [k for k, _ in events] == ["subscribed", "confirmed"]
    assert events[1][1] == {"source": "cli: asked at the desk"}
    assert weeks[-1]["list_size"] == 1
