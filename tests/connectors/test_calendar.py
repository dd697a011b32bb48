"""Busy intervals and meetings from the Calendar API, reduced to the fields the features show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gwsync.connectors.calendar import (
    BUSY_KIND,
    EVENT_KIND,
    HORIZON,
    ROLL,
    AvailabilityConnector,
    MeetingsConnector,
    Window,
    busy_page,
    events_page,
    to_busy,
    to_change,
)
from gwsync.connectors.errors import CursorExpiredError, UnknownGoogleError
from gwsync.domain.features import FEATURES
from gwsync.domain.pages import Removal, Upsert


def event(event_id: str = "abc123", **extra: Any) -> dict[str, Any]:
    """A full Calendar event, with fields the meetings feature must not keep."""
    return {
        "kind": "calendar#event", "etag": '"3391234567890000"', "id": event_id,
        "status": "confirmed", "htmlLink": "https://www.google.com/calendar/event?eid=abc",
        "summary": "Quarterly review",
        "description": "Board only: layoffs plan",
        "location": "Room 101",
        "start": {"dateTime": "2030-01-07T10:00:00+01:00", "timeZone": "Europe/Paris"},
        "end": {"dateTime": "2030-01-07T11:00:00+01:00", "timeZone": "Europe/Paris"},
        "attendees": [{"email": "ceo@example.com", "responseStatus": "accepted"}],
        "organizer": {"email": "alice@example.com", "self": True},
        **extra,
    }


def test_an_event_maps_to_summary_start_end_and_status() -> None:
    """A full event is stored as its summary, start, end and status, nothing more."""
    assert to_change(event()) == Upsert(EVENT_KIND, "abc123", {
        "summary": "Quarterly review", "start": "2030-01-07T10:00:00+01:00",
        "end": "2030-01-07T11:00:00+01:00", "status": "confirmed"})


def test_stored_event_fields_are_the_declared_fields() -> None:
    """The keys of a stored meeting are exactly the meetings feature's declared fields."""
    record = to_change(event())
    assert isinstance(record, Upsert)
    assert tuple(record.content) == FEATURES["meetings"].fields[EVENT_KIND]


def test_nothing_beyond_the_shown_event_fields_is_kept() -> None:
    """Descriptions, locations, attendees, organizers, links and etags do not reach the record."""
    raw, content = repr(event()), repr(to_change(event()))
    for absent in ("layoffs", "Room 101", "ceo@", "alice@", "eid=", "3391234567890000",
                   "Europe/Paris"):
        assert absent in raw and absent not in content, absent


def test_all_day_events_keep_their_dates() -> None:
    """An all-day event's start and end are its dates."""
    record = to_change(event(start={"date": "2030-01-07"}, end={"date": "2030-01-08"}))
    assert isinstance(record, Upsert)
    assert (record.content["start"], record.content["end"]) == ("2030-01-07", "2030-01-08")


def test_a_cancelled_event_is_a_removal() -> None:
    """A cancelled event (Google's deletion tombstone, id only) removes the stored meeting."""
    assert to_change({"id": "gone1", "status": "cancelled"}) == Removal(EVENT_KIND, "gone1")


def test_tentative_events_are_kept_with_their_status() -> None:
    """A tentative event is a meeting too, shown as tentative."""
    record = to_change(event(status="tentative"))
    assert isinstance(record, Upsert) and record.content["status"] == "tentative"


@pytest.mark.parametrize("bad", [{"status": "confirmed"}, event(id=""),
                                 event(start={}), event(end=None)])
def test_events_without_id_or_times_are_unknown_answers(bad: dict[str, Any]) -> None:
    """An event without an id, start or end is an odd answer from Google and stops the run."""
    with pytest.raises(UnknownGoogleError):
        to_change(bad)


def test_an_events_page_splits_upserts_and_removals() -> None:
    """A page of events becomes upserts for live events and removals for cancelled ones."""
    page = events_page([event("a"), {"id": "b", "status": "cancelled"}, event("c")])
    assert [u.external_id for u in page.upserts] == ["a", "c"]
    assert page.removals == [Removal(EVENT_KIND, "b")]


def test_a_busy_interval_is_keyed_by_its_span_in_utc() -> None:
    """A busy interval's id is its UTC span, the same however Google spells the times."""
    a = to_busy({"start": "2030-01-07T09:00:00Z", "end": "2030-01-07T10:00:00Z"})
    b = to_busy({"start": "2030-01-07T10:00:00.000+01:00", "end": "2030-01-07T11:00:00+01:00"})
    assert a == b == Upsert(BUSY_KIND, "2030-01-07T09:00:00Z/2030-01-07T10:00:00Z",
                            {"start": "2030-01-07T09:00:00Z", "end": "2030-01-07T10:00:00Z"})
    assert tuple(a.content) == FEATURES["availability"].fields[BUSY_KIND]


def test_busy_page_reads_the_primary_calendar() -> None:
    """The busy intervals of the primary calendar become one upsert each."""
    body = {"kind": "calendar#freeBusy", "calendars": {"primary": {"busy": [
        {"start": "2030-01-07T09:00:00Z", "end": "2030-01-07T10:00:00Z"},
        {"start": "2030-01-08T09:00:00Z", "end": "2030-01-08T09:30:00Z"}]}}}
    page = busy_page(body)
    assert len(page.upserts) == 2 and not page.removals


def test_an_empty_calendar_is_an_empty_page() -> None:
    """A calendar with no busy time yields a page with nothing in it (the sweep clears old ones)."""
    assert busy_page({"calendars": {"primary": {"busy": []}}}).upserts == []


@pytest.mark.parametrize("body", [
    {"calendars": {}},
    {"calendars": {"primary": {"errors": [{"domain": "global", "reason": "notFound"}]}}},
    {"calendars": {"primary": {"busy": [{"start": "2030-01-07T09:00:00"}]}}},
])
def test_odd_freebusy_answers_are_unknown(body: dict[str, Any]) -> None:
    """A missing calendar, per-calendar errors or unreadable times stop the run as unknown."""
    with pytest.raises(UnknownGoogleError):
        busy_page(body)


class _NoService:
    def close(self) -> None:
        pass


async def test_availability_has_no_incremental_sync() -> None:
    """Asked for an incremental sync, availability answers 'cursor expired' so a full one runs."""
    connector = AvailabilityConnector(_NoService(),  # type: ignore[arg-type]
                                      now=lambda: datetime(2030, 1, 7, tzinfo=UTC))
    with pytest.raises(CursorExpiredError):
        async for _ in connector.incremental("anything"):
            pass


class _Request:
    methodId = "calendar.events.list"

    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body

    def execute(self) -> dict[str, Any]:
        return self._body


class _Events:
    """A Calendar service that answers one page per call and records the parameters."""

    def __init__(self, bodies: list[dict[str, Any]] | None = None) -> None:
        self.bodies = bodies or []
        self.calls: list[dict[str, Any]] = []

    def events(self) -> _Events:
        return self

    def list(self, **params: Any) -> _Request:
        self.calls.append(params)
        return _Request(self.bodies.pop(0))

    def close(self) -> None:
        pass


async def test_a_resumed_meetings_crawl_repeats_its_own_window() -> None:
    """Resumed from a page token, a crawl sends that token's window, not today's, and the
    page tokens and cursor it hands back carry the window; incremental calls send neither
    the window nor showDeleted."""
    old = Window(datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 4, 1, tzinfo=UTC))
    service = _Events([{"items": [event()], "nextPageToken": "p2"},
                       {"items": [], "nextSyncToken": "s1"}, {"items": []}])
    connector = MeetingsConnector(service, 10,  # type: ignore[arg-type]
                                  now=lambda: datetime(2030, 1, 3, tzinfo=UTC))
    pages = [f async for f in connector.full(old.wrap("p1"))]
    assert [c["timeMin"] for c in service.calls] == ["2030-01-01T00:00:00Z"] * 2
    assert [c["pageToken"] for c in service.calls] == ["p1", "p2"]
    assert pages[0].next_page_token == old.wrap("p2")
    assert pages[1].next_cursor == old.wrap("s1")
    [_ async for _ in connector.incremental(old.wrap("s1") or "")]
    assert service.calls[2] == {"calendarId": "primary", "singleEvents": True,
                                "maxResults": 10, "syncToken": "s1"}


def test_the_meetings_window_runs_from_today_to_the_horizon() -> None:
    """A crawl's window starts at midnight UTC today and ends HORIZON later."""
    window = Window.from_day(datetime(2030, 1, 7, 15, 30, tzinfo=UTC))
    assert window.params() == {"timeMin": "2030-01-07T00:00:00Z",
                               "timeMax": (datetime(2030, 1, 7, tzinfo=UTC) + HORIZON)
                               .strftime("%Y-%m-%dT%H:%M:%SZ")}


def test_meetings_outside_the_window_become_removals() -> None:
    """An event (or all-day event) starting at or after the horizon, or over before the
    window, is removed rather than stored; one overlapping the window is kept."""
    window = Window(datetime(2030, 1, 7, tzinfo=UTC), datetime(2030, 4, 7, tzinfo=UTC))
    page = events_page([
        event("in"), event("late", start={"date": "2030-04-07"}, end={"date": "2030-04-08"}),
        event("past", start={"dateTime": "2030-01-06T10:00:00Z"},
              end={"dateTime": "2030-01-07T00:00:00Z"}),
        event("running", start={"dateTime": "2030-01-06T23:00:00Z"},
              end={"dateTime": "2030-01-07T01:00:00Z"})], window)
    assert [u.external_id for u in page.upserts] == ["in", "running"]
    assert page.removals == [Removal(EVENT_KIND, "late"), Removal(EVENT_KIND, "past")]
    with pytest.raises(UnknownGoogleError):
        events_page([event(start={"dateTime": "soon"})], window)


def test_a_wrapped_token_carries_its_window_and_a_bare_one_does_not() -> None:
    """Cursors and page tokens carry their window; a bare Google token unwraps to None."""
    window = Window(datetime(2030, 1, 7, tzinfo=UTC), datetime(2030, 4, 7, tzinfo=UTC))
    wrapped = window.wrap("Cg0 token/with spaces")
    assert wrapped is not None and window.wrap(None) is None
    assert Window.unwrap(wrapped) == (window, "Cg0 token/with spaces")
    assert Window.unwrap("CPDAlvWDx70CEPDAlvWDx70CGAU=") is None
    assert Window.unwrap("w1 not-a-time 2030-01-01T00:00:00+00:00 t") is None


@pytest.mark.parametrize("days_late", [ROLL.days + 1, 30])
def test_a_meetings_cursor_whose_horizon_fell_behind_has_expired(days_late: int) -> None:
    """Once the stored horizon is more than ROLL behind, the cursor counts as expired."""
    now = datetime(2030, 1, 7, 12, tzinfo=UTC)
    old = Window.from_day(now - timedelta(days=days_late))
    connector = MeetingsConnector(_Events(), 10,  # type: ignore[arg-type]
                                  now=lambda: now)
    with pytest.raises(CursorExpiredError):
        connector.incremental(old.wrap("token") or "")
    with pytest.raises(CursorExpiredError):
        connector.incremental("bare-sync-token")
