"""The emulator's Calendar API, driven by google-api-python-client as gwsync drives it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from googleapiclient.discovery import Resource
from googleapiclient.errors import HttpError

from gwsync.connectors import client
from gwsync.connectors.endpoints import Endpoints
from gwsync.emulator import calendar_events as cal
from gwsync.emulator.calendar import FULL_SYNC_REQUIRED
from gwsync.emulator.state import EmulatorState
from tests.emulator.support import CONTACTS_RO, Emulator

AUTH = "https://www.googleapis.com/auth/"
FREEBUSY = AUTH + "calendar.freebusy"
EVENTS_RO = AUTH + "calendar.events.readonly"
BASE = datetime(2030, 1, 7, tzinfo=UTC)
EMAIL = "alice@example.com"


def _at(hours: float) -> dict[str, str]:
    return {"dateTime": (BASE + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")}


def _event(summary: str, start_h: float, end_h: float, **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "start": _at(start_h), "end": _at(end_h),
            "description": f"secret {summary}",
            "attendees": [{"email": "guest@example.com"}], **extra}


def _user(emulator: Emulator, scopes: list[str]) -> tuple[str, str]:
    issued = emulator.state.add_user(EMAIL, [], scopes)
    return issued.user, emulator.state.mint_access_token(issued.refresh_token)


@pytest.fixture
def service(emulator: Emulator) -> Iterator[Any]:
    """A factory of Calendar services for a token, each closed after the test."""
    made: list[Resource] = []

    def build(token: str) -> Resource:
        made.append(client.service("calendar", token, Endpoints.at(emulator.url), 5))
        return made[-1]

    yield build
    for resource in made:
        resource.close()


async def _run(request: Any) -> dict[str, Any]:
    return await asyncio.to_thread(request.execute)


def _listing(svc: Resource, **params: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Page through events.list; return the items and the raw page bodies."""
    items: list[dict[str, Any]] = []
    bodies: list[dict[str, Any]] = []
    page_token = None
    while True:
        extra = {"pageToken": page_token} if page_token else {}
        body = svc.events().list(calendarId="primary", **params, **extra).execute()
        bodies.append(body)
        items += body["items"]
        page_token = body.get("nextPageToken")
        if not page_token:
            return items, bodies


async def test_freebusy_merges_clips_and_skips_free_and_cancelled(
    emulator: Emulator, service: Any
) -> None:
    """freebusy.query answers merged, window-clipped busy spans of opaque live events only."""
    user, token = _user(emulator, [FREEBUSY])
    ids = cal.add_events(emulator.state, user, [
        _event("a", 1, 2), _event("b", 1.5, 3), _event("free", 4, 5, transparency="transparent"),
        _event("gone", 6, 7), _event("edge", 9, 11), _event("outside", 20, 21)])
    cal.cancel_event(emulator.state, user, ids[3])
    body = await _run(service(token).freebusy().query(body={
        "timeMin": _at(0)["dateTime"], "timeMax": _at(10)["dateTime"],
        "items": [{"id": "primary"}, {"id": "bob@example.com"}]}))
    assert body["kind"] == "calendar#freeBusy"
    assert body["calendars"]["primary"]["busy"] == [
        {"start": _at(1)["dateTime"], "end": _at(3)["dateTime"]},
        {"start": _at(9)["dateTime"], "end": _at(10)["dateTime"]}]
    assert body["calendars"]["bob@example.com"]["errors"] == [
        {"domain": "global", "reason": "notFound"}]
    assert [c["method"] for c in emulator.state.calls()] == ["calendar.freebusy.query"]


async def test_freebusy_refuses_an_empty_window(emulator: Emulator, service: Any) -> None:
    """A timeMax not after timeMin is an HttpError 400 timeRangeEmpty."""
    _, token = _user(emulator, [FREEBUSY])
    with pytest.raises(HttpError) as caught:
        await _run(service(token).freebusy().query(body={
            "timeMin": _at(5)["dateTime"], "timeMax": _at(5)["dateTime"],
            "items": [{"id": "primary"}]}))
    assert caught.value.status_code == 400
    assert caught.value.error_details[0]["reason"] == "timeRangeEmpty"


async def test_events_list_pages_with_sync_token_only_on_last_page(
    emulator: Emulator, service: Any
) -> None:
    """A full listing pages by maxResults; only its last page carries nextSyncToken."""
    user, token = _user(emulator, [EVENTS_RO])
    cal.add_events(emulator.state, user, [_event(f"e{i}", i, i + 1) for i in range(5)])
    items, bodies = await asyncio.to_thread(_listing, service(token), maxResults=2,
                                            singleEvents=True)
    assert [i["summary"] for i in items] == [f"e{i}" for i in range(5)]
    assert [("nextPageToken" in b, "nextSyncToken" in b) for b in bodies] == [
        (True, False), (True, False), (False, True)]
    assert items[0]["description"] == "secret e0" and items[0]["attendees"]
    assert all(i["status"] == "confirmed" and i["kind"] == "calendar#event" for i in items)


async def test_incremental_listing_returns_adds_changes_and_cancellations(
    emulator: Emulator, service: Any
) -> None:
    """With a sync token, events.list returns what changed since, cancelled ones as tombstones."""
    user, token = _user(emulator, [EVENTS_RO])
    ids = cal.add_events(emulator.state, user, [_event(f"e{i}", i, i + 1) for i in range(4)])
    svc = service(token)
    _, bodies = await asyncio.to_thread(_listing, svc, singleEvents=True)
    first_token = bodies[-1]["nextSyncToken"]
    cal.update_event(emulator.state, user, ids[0], {"summary": "renamed"})
    cal.cancel_event(emulator.state, user, ids[1])
    [added] = cal.add_events(emulator.state, user, [_event("new", 8, 9)])
    changes, bodies = await asyncio.to_thread(_listing, svc, maxResults=2, singleEvents=True,
                                              syncToken=first_token)
    assert [(c["id"], c["status"]) for c in changes] == [
        (ids[0], "confirmed"), (ids[1], "cancelled"), (added, "confirmed")]
    assert changes[0]["summary"] == "renamed"
    assert set(changes[1]) == {"kind", "etag", "id", "status"}
    assert bodies[-1]["nextSyncToken"] != first_token
    quiet, _ = await asyncio.to_thread(_listing, svc, singleEvents=True,
                                       syncToken=bodies[-1]["nextSyncToken"])
    assert quiet == []


async def test_expired_or_unknown_sync_token_is_410_full_sync_required(
    emulator: Emulator, service: Any
) -> None:
    """An expired or unknown sync token is an HttpError 410 with reason fullSyncRequired."""
    user, token = _user(emulator, [EVENTS_RO])
    svc = service(token)
    _, bodies = await asyncio.to_thread(_listing, svc)
    assert cal.expire_calendar_sync_tokens(emulator.state, user) == 1
    for sync_token in (bodies[-1]["nextSyncToken"], "never-issued"):
        with pytest.raises(HttpError) as caught:
            await asyncio.to_thread(_listing, svc, syncToken=sync_token)
        assert caught.value.status_code == 410
        assert caught.value.error_details[0]["reason"] == "fullSyncRequired"
        assert caught.value.reason == FULL_SYNC_REQUIRED


@pytest.mark.parametrize("extra", [
    {"timeMin": "2030-01-01T00:00:00Z"}, {"orderBy": "updated"}, {"showDeleted": False}])
async def test_sync_token_refuses_parameters_google_forbids_with_it(
    emulator: Emulator, service: Any, extra: dict[str, Any]
) -> None:
    """timeMin, orderBy or showDeleted=false together with a sync token is a 400."""
    _, token = _user(emulator, [EVENTS_RO])
    svc = service(token)
    _, bodies = await asyncio.to_thread(_listing, svc)
    with pytest.raises(HttpError) as caught:
        await asyncio.to_thread(_listing, svc, syncToken=bodies[-1]["nextSyncToken"], **extra)
    assert caught.value.status_code == 400


async def test_time_window_and_start_time_order(emulator: Emulator, service: Any) -> None:
    """timeMin bounds the end and timeMax the start; orderBy=startTime sorts single events."""
    user, token = _user(emulator, [EVENTS_RO])
    cal.add_events(emulator.state, user, [_event("late", 5, 6), _event("early", 1, 2),
                                          _event("past", -3, -2), _event("far", 30, 31)])
    items, _ = await asyncio.to_thread(
        _listing, service(token), timeMin=_at(0)["dateTime"], timeMax=_at(24)["dateTime"],
        singleEvents=True, orderBy="startTime")
    assert [i["summary"] for i in items] == ["early", "late"]


async def test_changes_during_paging_reach_the_next_sync(
    emulator: Emulator, service: Any
) -> None:
    """An event cancelled between pages of a full listing is reported by the next incremental."""
    user, token = _user(emulator, [EVENTS_RO])
    ids = cal.add_events(emulator.state, user, [_event(f"e{i}", i, i + 1) for i in range(4)])
    svc = service(token)
    first = await _run(svc.events().list(calendarId="primary", maxResults=2))
    cal.cancel_event(emulator.state, user, ids[3])
    second = await _run(svc.events().list(calendarId="primary", maxResults=2,
                                          pageToken=first["nextPageToken"]))
    assert [i["id"] for i in second["items"]] == [ids[2]]
    changes, _ = await asyncio.to_thread(_listing, svc, syncToken=second["nextSyncToken"])
    assert [(c["id"], c["status"]) for c in changes] == [(ids[3], "cancelled")]


async def test_other_calendars_are_not_found_and_email_is_primary(
    emulator: Emulator, service: Any
) -> None:
    """The user's email names the primary calendar; any other calendar id is a 404."""
    user, token = _user(emulator, [EVENTS_RO])
    cal.add_events(emulator.state, user, [_event("mine", 1, 2)])
    svc = service(token)
    body = await _run(svc.events().list(calendarId=EMAIL))
    assert [i["summary"] for i in body["items"]] == ["mine"]
    with pytest.raises(HttpError) as caught:
        await _run(svc.events().list(calendarId="bob@example.com"))
    assert caught.value.status_code == 404


@pytest.mark.parametrize("scopes", [[CONTACTS_RO], [FREEBUSY]])
async def test_token_without_events_scope_gets_403(
    emulator: Emulator, service: Any, scopes: list[str]
) -> None:
    """events.list with a token lacking every events scope is a 403 naming the reason."""
    _, token = _user(emulator, scopes)
    with pytest.raises(HttpError) as caught:
        await _run(service(token).events().list(calendarId="primary"))
    assert caught.value.status_code == 403
    assert caught.value.error_details[0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"


async def test_token_without_freebusy_scope_gets_403(emulator: Emulator, service: Any) -> None:
    """freebusy.query with a contacts-only token is a 403 and never reaches the method."""
    _, token = _user(emulator, [CONTACTS_RO])
    with pytest.raises(HttpError) as caught:
        await _run(service(token).freebusy().query(body={
            "timeMin": _at(0)["dateTime"], "timeMax": _at(1)["dateTime"], "items": []}))
    assert caught.value.status_code == 403
    assert emulator.state.calls() == []  # refused before the method ran


async def test_call_log_names_method_and_scopes(emulator: Emulator, service: Any) -> None:
    """Each served call is logged with its method id and exactly the token's scopes."""
    _, token = _user(emulator, [EVENTS_RO])
    await _run(service(token).events().list(calendarId="primary"))
    assert emulator.state.calls() == [{"method": "calendar.events.list", "scopes": [EVENTS_RO],
                                       "user": EMAIL, "status": 200}]


def test_seed_calendar_is_deterministic() -> None:
    """The same count and base give the same events and ids in two fresh emulators."""
    rendered = []
    for _ in range(2):
        state = EmulatorState()
        user = state.add_user(EMAIL, [], []).user
        ids = cal.seed_calendar(state, user, 6, base=BASE)
        rendered.append((ids, [(e["summary"], e["start"], e["description"])
                               for e in cal.events(state, user)]))
    assert rendered[0] == rendered[1] and len(rendered[0][0]) == 6


async def test_admin_routes_add_update_cancel_expire_and_seed(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """The admin routes change the calendar as the Python methods do, with JSON 4xx on bad input."""
    user, _ = _user(emulator, [EVENTS_RO])
    root = f"{emulator.url}/_emulator/users/{user}/calendar"
    async with http.post(root + "/events", json=[_event("x", 1, 2), _event("y", 3, 4)]) as resp:
        assert resp.status == 201
        ids = (await resp.json())["ids"]
    async with http.patch(f"{root}/events/{ids[0]}", json={"summary": "x2"}) as resp:
        assert resp.status == 200
    async with http.delete(f"{root}/events/{ids[1]}") as resp:
        assert resp.status == 200
    async with http.delete(f"{root}/events/{ids[1]}") as resp:
        assert resp.status == 404 and (await resp.json())["error"] == "unknown_event"
    async with http.post(root + "/events", json={"summary": "no times"}) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "bad_request"
    async with http.post(root + "/seed", json={"n_events": 3}) as resp:
        assert resp.status == 201
    async with http.post(root + "/expire-sync-tokens") as resp:
        assert resp.status == 200 and (await resp.json()) == {"expired": 0}
    async with http.get(root + "/events") as resp:
        summaries = [e["summary"] for e in (await resp.json())["events"]]
    assert summaries == ["x2", "Meeting #0", "Meeting #1", "Meeting #2"]


async def test_malformed_freebusy_body_is_400(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """A freeBusy body that is not a JSON object is a 400 in Calendar's error shape."""
    _, token = _user(emulator, [FREEBUSY])
    async with http.post(f"{emulator.url}/calendar/v3/freeBusy", data="[1",
                         headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 400
        body = json.loads(await resp.text())
    assert body["error"]["code"] == 400 and body["error"]["errors"][0]["reason"] == "parseError"
