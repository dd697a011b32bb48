"""Recurring Calendar series in the emulator, driven through google-api-python-client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import google.oauth2.credentials
import google_auth_httplib2
import httplib2
import pytest
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from gwsync.emulator import calendar_events as cal
from gwsync.emulator import calendar_recurrence as rec
from tests.emulator.support import Emulator

EVENTS_RO = "https://www.googleapis.com/auth/calendar.events.readonly"
FREEBUSY = "https://www.googleapis.com/auth/calendar.freebusy"
#: Series start at 09:00 UTC today, so Google's six-month window is measured from now.
DAY0 = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)


def _z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _series(rule: str, summary: str = "standup", **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "start": {"dateTime": _z(DAY0), "timeZone": "UTC"},
            "end": {"dateTime": _z(DAY0 + timedelta(minutes=15)), "timeZone": "UTC"},
            "recurrence": [rule], "description": "private", **extra}


@pytest.fixture
def calendar(emulator: Emulator, sync_http: httplib2.Http) -> Iterator[tuple[str, Any]]:
    """A user with the events and freebusy scopes, and a Calendar v3 service for them."""
    issued = emulator.state.add_user("alice@example.com", [], [EVENTS_RO, FREEBUSY])
    token = emulator.state.mint_access_token(issued.refresh_token)
    creds = google.oauth2.credentials.Credentials(token=token)
    service = build("calendar", "v3", http=google_auth_httplib2.AuthorizedHttp(
        creds, http=sync_http), client_options={"api_endpoint": f"{emulator.url}/calendar/v3/"},
        static_discovery=True, cache_discovery=False)
    yield issued.user, service
    service.close()


def _pages(service: Any, **params: Any) -> tuple[list[dict[str, Any]], str]:
    """Every page of events.list (page size 2500); the items and the last sync token."""
    items: list[dict[str, Any]] = []
    page_token = None
    while True:
        extra = {"pageToken": page_token} if page_token else {}
        body = service.events().list(calendarId="primary", maxResults=2500, **params,
                                     **extra).execute()
        items += body["items"]
        page_token = body.get("nextPageToken")
        if not page_token:
            return items, body["nextSyncToken"]


async def _list(service: Any, **params: Any) -> tuple[list[dict[str, Any]], str]:
    return await asyncio.to_thread(_pages, service, **params)


async def test_an_endless_daily_series_expands_into_730_instances(
    emulator: Emulator, calendar: tuple[str, Any]
) -> None:
    """singleEvents=true lists ~730 instances of an endless series, each naming its series."""
    user, service = calendar
    [series_id] = cal.add_events(emulator.state, user, [_series("RRULE:FREQ=DAILY")])
    items, _ = await _list(service, singleEvents=True)
    assert len(items) == rec.INSTANCE_CAP == 730
    first, second = items[0], items[1]
    assert first["id"] == f"{series_id}_{DAY0:%Y%m%dT%H%M%SZ}"
    assert first["recurringEventId"] == series_id and "recurrence" not in first
    assert first["originalStartTime"] == first["start"] == {"dateTime": _z(DAY0),
                                                             "timeZone": "UTC"}
    assert second["start"]["dateTime"] == _z(DAY0 + timedelta(days=1))
    assert second["end"]["dateTime"] == _z(DAY0 + timedelta(days=1, minutes=15))
    masters, _ = await _list(service)
    assert [(m["id"], m["recurrence"]) for m in masters] == [(series_id, ["RRULE:FREQ=DAILY"])]


async def test_modified_and_cancelled_instances_are_exceptions(
    emulator: Emulator, calendar: tuple[str, Any]
) -> None:
    """A changed instance keeps its id and original start; a deleted one leaves the listing."""
    user, service = calendar
    [sid] = cal.add_events(emulator.state, user, [_series("RRULE:FREQ=DAILY;COUNT=5")])
    ids = [f"{sid}_{DAY0 + timedelta(days=d):%Y%m%dT%H%M%SZ}" for d in range(5)]
    moved = {"dateTime": _z(DAY0 + timedelta(days=1, hours=2))}
    cal.update_event(emulator.state, user, ids[1], {"summary": "moved", "start": moved,
                                                    "end": moved})
    cal.cancel_event(emulator.state, user, ids[3])
    items, _ = await _list(service, singleEvents=True)
    assert [i["id"] for i in items] == [ids[0], ids[2], ids[4], ids[1]]  # change order
    assert items[3]["summary"] == "moved" and items[3]["start"] == moved
    assert items[3]["originalStartTime"]["dateTime"] == _z(DAY0 + timedelta(days=1))
    # Without singleEvents: the master and both exceptions, the cancelled one included
    # although showDeleted is false (the events.list reference says so).
    plain, _ = await _list(service)
    assert [(i["id"], i["status"]) for i in plain] == [
        (sid, "confirmed"), (ids[1], "confirmed"), (ids[3], "cancelled")]
    assert plain[2]["recurringEventId"] == sid


async def test_editing_a_series_resends_every_instance(
    emulator: Emulator, calendar: tuple[str, Any]
) -> None:
    """A changed series comes back on the next incremental page as all of its instances."""
    user, service = calendar
    [sid] = cal.add_events(emulator.state, user, [_series("RRULE:FREQ=DAILY;COUNT=40")])
    _, token = await _list(service, singleEvents=True)
    cal.update_event(emulator.state, user, sid, {"summary": "renamed"})
    changes, _ = await _list(service, singleEvents=True, syncToken=token)
    assert len(changes) == 40 and {c["summary"] for c in changes} == {"renamed"}


async def test_shortening_a_series_cancels_instances_only_within_six_months(
    emulator: Emulator, calendar: tuple[str, Any]
) -> None:
    """After an UNTIL is set, cancelled instances come back for ~6 months; later ones vanish."""
    user, service = calendar
    [sid] = cal.add_events(emulator.state, user, [_series("RRULE:FREQ=DAILY")])
    _, token = await _list(service, singleEvents=True)
    until = DAY0 + timedelta(days=10)
    cal.update_event(emulator.state, user, sid,
                     {"recurrence": [f"RRULE:FREQ=DAILY;UNTIL={until:%Y%m%dT%H%M%SZ}"]})
    changes, _ = await _list(service, singleEvents=True, syncToken=token)
    live = [c for c in changes if c["status"] == "confirmed"]
    cancelled = [c for c in changes if c["status"] == "cancelled"]
    assert len(live) == 11
    starts = sorted(c["originalStartTime"]["dateTime"] for c in cancelled)
    horizon = datetime.fromtimestamp(emulator.state.now(), UTC) + rec.CANCELLED_WINDOW
    assert starts[0] == _z(DAY0 + timedelta(days=11)) and starts[-1] < _z(horizon)
    assert 170 < len(cancelled) < 730 - 11  # the rest of the 730 is never reported
    assert {c["recurringEventId"] for c in cancelled} == {sid}
    assert len((await _list(service, singleEvents=True))[0]) == 11


async def test_deleting_a_series_cancels_its_instances_within_six_months(
    emulator: Emulator, calendar: tuple[str, Any]
) -> None:
    """A deleted series yields cancelled instances (not the master) up to ~6 months ahead."""
    user, service = calendar
    [sid] = cal.add_events(emulator.state, user, [_series("RRULE:FREQ=DAILY")])
    _, token = await _list(service, singleEvents=True)
    cal.cancel_event(emulator.state, user, sid)
    changes, _ = await _list(service, singleEvents=True, syncToken=token)
    assert changes and {c["status"] for c in changes} == {"cancelled"}
    assert sid not in {c["id"] for c in changes} and 170 < len(changes) < 200
    assert (await _list(service, singleEvents=True))[0] == []
    masters, _ = await _list(service, syncToken=(await _list(service))[1])
    assert masters == []


async def test_incremental_calls_must_repeat_the_initial_parameters(
    emulator: Emulator, calendar: tuple[str, Any]
) -> None:
    """Adding showDeleted (or dropping singleEvents) only on the incremental call is a 400."""
    user, service = calendar
    cal.add_events(emulator.state, user, [_series("RRULE:FREQ=WEEKLY;COUNT=3")])
    _, token = await _list(service, singleEvents=True)
    for changed in ({"singleEvents": True, "showDeleted": True}, {}):
        with pytest.raises(HttpError) as caught:
            await _list(service, syncToken=token, **changed)
        assert caught.value.status_code == 400
    assert (await _list(service, singleEvents=True, syncToken=token))[0] == []


async def test_freebusy_counts_the_instances_of_a_series(
    emulator: Emulator, calendar: tuple[str, Any]
) -> None:
    """Busy time includes each instance of a series in the window, not only its first."""
    user, service = calendar
    cal.add_events(emulator.state, user, [_series("RRULE:FREQ=DAILY;COUNT=3")])
    body = await asyncio.to_thread(service.freebusy().query(body={
        "timeMin": _z(DAY0 - timedelta(hours=1)), "timeMax": _z(DAY0 + timedelta(days=5)),
        "items": [{"id": "primary"}]}).execute)
    assert [b["start"] for b in body["calendars"]["primary"]["busy"]] == [
        _z(DAY0 + timedelta(days=d)) for d in range(3)]


def test_series_keep_their_wall_clock_time_across_dst_and_all_day_ids_are_dates() -> None:
    """A Paris 09:00 weekly stays at 09:00 local over DST; all-day instance ids are dates."""
    paris = {"start": {"dateTime": "2030-03-18T09:00:00+01:00", "timeZone": "Europe/Paris"},
             "recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=3"]}
    assert rec.occurrences(paris) == [  # summer time starts on 31 March 2030
        datetime(2030, 3, 18, 8, tzinfo=UTC), datetime(2030, 3, 25, 8, tzinfo=UTC),
        datetime(2030, 4, 1, 7, tzinfo=UTC)]
    day = {"start": {"date": "2030-01-07"}, "end": {"date": "2030-01-08"},
           "recurrence": ["RRULE:FREQ=DAILY;COUNT=2", "EXDATE;VALUE=DATE:20300107"]}
    [only] = rec.occurrences(day)
    assert rec.instance_id("abc", day, only) == "abc_20300108"
    assert rec.parse_instance_id("abc_20300108") == ("abc", datetime(2030, 1, 8, tzinfo=UTC))
    assert rec.instance_fields("abc", day, only)["end"] == {"date": "2030-01-09"}


async def test_admin_routes_create_shorten_and_delete_series(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Admin routes add a series, shorten it, cancel one instance, seed series, refuse bad rules."""
    user = emulator.state.add_user("bob@example.com", [], [EVENTS_RO]).user
    base = f"{emulator.url}/_emulator/users/{user}/calendar"
    async with http.post(f"{base}/events", json=_series("RRULE:FREQ=DAILY")) as resp:
        assert resp.status == 201
        [sid] = (await resp.json())["ids"]
    data = cal.calendar_of(emulator.state, user)
    until = f"RRULE:FREQ=DAILY;UNTIL={DAY0 + timedelta(days=2):%Y%m%dT%H%M%SZ}"
    async with http.patch(f"{base}/events/{sid}", json={"recurrence": [until]}) as resp:
        assert resp.status == 200
    second = f"{sid}_{DAY0 + timedelta(days=1):%Y%m%dT%H%M%SZ}"
    async with http.delete(f"{base}/events/{second}") as resp:
        assert resp.status == 200
    assert [e.id for e in data.listable(True) if not e.cancelled] == [
        f"{sid}_{DAY0:%Y%m%dT%H%M%SZ}", f"{sid}_{DAY0 + timedelta(days=2):%Y%m%dT%H%M%SZ}"]
    async with http.post(f"{base}/seed", json={"n_events": 1, "n_series": 2}) as resp:
        assert resp.status == 201 and len((await resp.json())["ids"]) == 3
    for bad in (["FREQ=DAILY"], ["RRULE:FREQ=SOMETIMES"], "RRULE:FREQ=DAILY"):
        async with http.post(f"{base}/events", json=_series("x") | {"recurrence": bad}) as resp:
            assert resp.status == 400, bad
