"""Page tokens that expire, driven through google-api-python-client as production drives them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import google.oauth2.credentials
import google_auth_httplib2
import httplib2
import pytest
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from gwsync.emulator.calendar_events import seed_calendar
from gwsync.emulator.cursors import PAGE_TOKEN_TTL
from gwsync.emulator.drive_data import seed_drive
from gwsync.emulator.mailbox import mailbox, seed_gmail
from gwsync.emulator.seed import DEMO_SCOPES, fake_contact
from tests.emulator.support import Emulator

ROOTS = {"people": "/", "gmail": "/", "calendar": "/calendar/v3/", "drive": "/drive/v3/"}
VERSIONS = {"people": "v1", "gmail": "v1", "calendar": "v3", "drive": "v3"}


def _service(emulator: Emulator, api: str, token: str, http: httplib2.Http) -> Any:
    creds = google.oauth2.credentials.Credentials(token=token)
    return build(api, VERSIONS[api], http=google_auth_httplib2.AuthorizedHttp(creds, http=http),
                 client_options={"api_endpoint": emulator.url + ROOTS[api]},
                 static_discovery=True, cache_discovery=False)


def _people_service(emulator: Emulator, token: str, http: httplib2.Http) -> Any:
    return _service(emulator, "people", token, http)


def _people(s: Any, **page: Any) -> Any:
    return s.people().connections().list(resourceName="people/me", personFields="names",
                                         pageSize=2, **page)


def _events(s: Any, **page: Any) -> Any:
    return s.events().list(calendarId="primary", maxResults=2, **page)


def _files(s: Any, **page: Any) -> Any:
    return s.files().list(pageSize=2, q="trashed = false", **page)


def _messages(s: Any, **page: Any) -> Any:
    return s.users().messages().list(userId="me", maxResults=2, **page)


#: api → (the list request, Google's refusal as (reason, message) in `errors[]`, or the
#: gRPC status for People, which sends no `errors[]`).
LISTS: dict[str, tuple[Callable[..., Any], str, str]] = {
    "people": (_people, "INVALID_ARGUMENT", "Page token is not valid."),
    "calendar": (_events, "invalid", "Invalid page token value."),
    "drive": (_files, "invalid", "Invalid Value"),
    "gmail": (_messages, "invalidArgument", "Invalid pageToken"),
}


def _seeded(emulator: Emulator) -> str:
    """A user with five of everything; returns a refresh token of every demo scope."""
    issued = emulator.state.add_user("pat@example.com", [fake_contact(i) for i in range(5)],
                                     DEMO_SCOPES)
    seed_calendar(emulator.state, issued.user, 5)
    seed_drive(emulator.state, issued.user, 5)
    seed_gmail(emulator.state, issued.user, 5)
    return issued.refresh_token


@pytest.mark.parametrize("api", sorted(LISTS))
async def test_a_page_token_past_its_age_is_refused_as_each_api_refuses_one(
    emulator: Emulator, sync_http: httplib2.Http, api: str
) -> None:
    """A page token is honoured within its age and refused with a 400 after it, in the
    API's own error shape (Drive's `invalid` at `pageToken`, Gmail's "Invalid pageToken")."""
    grant = _seeded(emulator)
    request, reason, message = LISTS[api]

    def call(**page: Any) -> Any:  # a fresh access token: hours pass between the calls
        token = emulator.state.mint_access_token(grant)
        return request(_service(emulator, api, token, sync_http), **page).execute()

    first = await asyncio.to_thread(call)
    emulator.state.advance(PAGE_TOKEN_TTL - 60)
    assert await asyncio.to_thread(call, pageToken=first["nextPageToken"])  # within its age
    emulator.state.advance(120)
    with pytest.raises(HttpError) as caught:
        await asyncio.to_thread(call, pageToken=first["nextPageToken"])
    assert caught.value.status_code == 400
    error = json.loads(caught.value.content)["error"]
    assert error["message"] == message
    if api == "people":
        assert error["status"] == reason and "errors" not in error
    else:
        assert [e["reason"] for e in error["errors"]] == [reason]
    if api == "drive":
        assert error["errors"][0]["location"] == "pageToken"


async def test_history_page_tokens_expire_too(
    emulator: Emulator, sync_http: httplib2.Http
) -> None:
    """history.list's page tokens age like every other list's."""
    token = emulator.state.mint_access_token(_seeded(emulator))
    history = _service(emulator, "gmail", token, sync_http).users().history()
    start = str(1_000_000)

    def page(**extra: Any) -> Any:
        return history.list(userId="me", startHistoryId=start, maxResults=2, **extra).execute()

    first = await asyncio.to_thread(page)
    emulator.state.cursors.page_token_ttl = 30
    emulator.state.advance(31)
    with pytest.raises(HttpError) as caught:
        await asyncio.to_thread(page, pageToken=first["nextPageToken"])
    assert caught.value.status_code == 400


async def test_the_page_token_age_is_configurable_over_http(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """`PUT /_emulator/page-tokens {ttl_s}` sets the age; a bad value is a 400."""
    url = emulator.url + "/_emulator/page-tokens"
    async with http.put(url, json={"ttl_s": 5}) as resp:
        assert resp.status == 200 and await resp.json() == {"ttl_s": 5}
    async with http.put(url, json={"ttl_s": -1}) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "bad_request"
    async with http.get(url) as resp:
        assert await resp.json() == {"ttl_s": 5}
    assert emulator.state.cursors.page_token_ttl == 5


def _connections(service: Any, **params: Any) -> tuple[list[dict[str, Any]], str]:
    """Every page of connections.list with `metadata`; the people and the sync token."""
    people: list[dict[str, Any]] = []
    page: dict[str, Any] = {}
    while True:
        body = service.people().connections().list(
            resourceName="people/me", personFields="names,metadata", pageSize=2,
            **params, **page).execute()
        people += body.get("connections", [])
        if not body.get("nextPageToken"):
            return people, body.get("nextSyncToken", "")
        page = {"pageToken": body["nextPageToken"]}


async def test_a_renamed_contact_names_its_previous_resource_name_on_the_next_sync(
    emulator: Emulator, sync_http: httplib2.Http
) -> None:
    """After a rename the person comes back under a new resource name whose
    `metadata.previousResourceNames` lists the old one — on sync-token pages only —
    and the old name itself is not sent at all."""
    user, token = emulator.user_with(3)
    service = _people_service(emulator, token, sync_http)
    people, sync_token = await asyncio.to_thread(_connections, service, requestSyncToken=True)
    assert all(p["metadata"]["sources"][0]["type"] == "CONTACT" for p in people)
    assert not any("previousResourceNames" in p["metadata"] for p in people)
    old = people[1]["resourceName"]
    new = emulator.state.rename_contact(user, old)

    changes, _ = await asyncio.to_thread(_connections, service, syncToken=sync_token)
    assert [(c["resourceName"], c["metadata"].get("previousResourceNames")) for c in changes] \
        == [(new, [old])]
    full, _ = await asyncio.to_thread(_connections, service)
    assert {p["resourceName"] for p in full} == {people[0]["resourceName"], new,
                                                people[2]["resourceName"]}
    assert not any("previousResourceNames" in p["metadata"] for p in full)


@pytest.mark.parametrize("details", [True, False])
async def test_the_expired_sync_token_answer_comes_with_or_without_details(
    emulator: Emulator, sync_http: httplib2.Http, details: bool
) -> None:
    """The expired-sync-token 400 carries the EXPIRED_SYNC_TOKEN ErrorInfo, or — as real
    answers were reported — only its message."""
    user, token = emulator.user_with(1)
    emulator.state.cursors.expired_sync_token_details = details
    service = _people_service(emulator, token, sync_http)
    _, sync_token = await asyncio.to_thread(_connections, service, requestSyncToken=True)
    emulator.state.expire_sync_tokens(user)
    with pytest.raises(HttpError) as caught:
        await asyncio.to_thread(_connections, service, syncToken=sync_token)
    assert caught.value.status_code == 400
    assert caught.value.reason.startswith("Sync token is expired.")
    reasons = [d.get("reason") for d in caught.value.error_details or []
               if isinstance(d, dict)]
    assert reasons == (["EXPIRED_SYNC_TOKEN"] if details else [])


async def test_history_older_than_the_retention_answers_404(
    emulator: Emulator, sync_http: httplib2.Http, http: aiohttp.ClientSession
) -> None:
    """With history kept an hour, a start id from before a change more than an hour old
    answers 404 `notFound`, as Gmail answers an out-of-date startHistoryId; the id
    getProfile gives now still replays."""
    grant = _seeded(emulator)
    user = "pat@example.com"
    async with http.put(f"{emulator.url}/_emulator/users/{user}/gmail/history-retention",
                        json={"seconds": 3600}) as resp:
        assert resp.status == 200
    box = mailbox(emulator.state, user)
    assert box.retention_s == 3600

    def gmail() -> Any:
        token = emulator.state.mint_access_token(grant)
        return _service(emulator, "gmail", token, sync_http).users()

    before = (await asyncio.to_thread(gmail().getProfile(userId="me").execute))["historyId"]
    box.change_labels(next(iter(box.messages)), add=["STARRED"])
    replay = gmail().history().list(userId="me", startHistoryId=before)
    assert len((await asyncio.to_thread(replay.execute))["history"]) == 1
    emulator.state.advance(3601)
    with pytest.raises(HttpError) as caught:
        await asyncio.to_thread(gmail().history().list(userId="me",
                                                       startHistoryId=before).execute)
    assert caught.value.status_code == 404
    assert [e["reason"] for e in json.loads(caught.value.content)["error"]["errors"]] \
        == ["notFound"]
    now = (await asyncio.to_thread(gmail().getProfile(userId="me").execute))["historyId"]
    body = await asyncio.to_thread(gmail().history().list(userId="me",
                                                          startHistoryId=now).execute)
    assert body["historyId"] == now and "history" not in body


async def test_renames_and_retention_have_admin_routes_that_refuse_bad_input(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """`POST …/contacts/{id}/rename` answers the new name (404 `unknown_contact` for a
    contact that is not there); a negative history retention is a 400 and changes nothing."""
    user, _ = emulator.user_with(1)
    old = emulator.state.contacts(user)[0]["resourceName"]
    base = f"{emulator.url}/_emulator/users/{user}"
    async with http.post(f"{base}/contacts/{old.removeprefix('people/')}/rename") as resp:
        assert resp.status == 200
        new = (await resp.json())["resourceName"]
    assert [c["resourceName"] for c in emulator.state.contacts(user)] == [new] != [old]
    async with http.post(f"{base}/contacts/{old.removeprefix('people/')}/rename") as resp:
        assert resp.status == 404 and (await resp.json())["error"] == "unknown_contact"
    async with http.put(f"{base}/gmail/history-retention", json={"seconds": -5}) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "bad_request"
    assert mailbox(emulator.state, user).retention_s == 7 * 24 * 3600
