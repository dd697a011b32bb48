"""The emulator driven by Google's own client library, as production code will drive it."""

from __future__ import annotations

import asyncio
from typing import Any

import google.oauth2.credentials
import google_auth_httplib2
import httplib2
import pytest
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from tests.emulator.support import CALENDAR_RO, Emulator


def _people(url: str, access_token: str, sync_http: httplib2.Http) -> Any:
    """A People v1 service object aimed at the emulator, built from the bundled discovery doc."""
    creds = google.oauth2.credentials.Credentials(token=access_token)
    http = google_auth_httplib2.AuthorizedHttp(creds, http=sync_http)
    return build(
        "people",
        "v1",
        http=http,
        client_options={"api_endpoint": url},
        static_discovery=True,
        cache_discovery=False,
    )


def _sync(service: Any, **params: Any) -> tuple[list[dict[str, Any]], str, int]:
    """Page through ``connections.list`` synchronously; return people, sync token, page count."""
    people: list[dict[str, Any]] = []
    pages, page_token = 0, None
    while True:
        extra = {"pageToken": page_token} if page_token else {}
        body = (
            service.people()
            .connections()
            .list(resourceName="people/me", personFields="names,emailAddresses", **params, **extra)
            .execute()
        )
        pages += 1
        people += body.get("connections", [])
        page_token = body.get("nextPageToken")
        if not page_token:
            return people, body.get("nextSyncToken", ""), pages


async def test_real_client_full_then_incremental_sync(
    emulator: Emulator, sync_http: httplib2.Http
) -> None:
    """googleapiclient pages a full sync, then an incremental one sees a change and a deletion."""
    user, token = emulator.user_with(5)
    service = _people(emulator.url, token, sync_http)
    people, sync_token, pages = await asyncio.to_thread(
        _sync, service, pageSize=2, requestSyncToken=True
    )
    assert pages == 3 and len(people) == 5 and sync_token
    assert all(set(p) == {"resourceName", "etag", "names", "emailAddresses"} for p in people)

    emulator.state.delete_contact(user, people[0]["resourceName"])
    emulator.state.update_contact(user, people[1]["resourceName"], {"names": [{"givenName": "X"}]})
    changes, next_token, _ = await asyncio.to_thread(
        _sync, service, pageSize=2, syncToken=sync_token
    )
    assert [c.get("metadata") for c in changes] == [{"deleted": True}, None]
    assert changes[1]["names"] == [{"givenName": "X"}]
    assert next_token and next_token != sync_token
    assert {c["method"] for c in emulator.state.calls()} == {"people.people.connections.list"}


async def test_real_client_parses_expired_sync_token(
    emulator: Emulator, sync_http: httplib2.Http
) -> None:
    """The expired-sync-token body parses as an HttpError 400 whose detail names the reason."""
    user, token = emulator.user_with(1)
    service = _people(emulator.url, token, sync_http)
    _, sync_token, _ = await asyncio.to_thread(_sync, service, requestSyncToken=True)
    emulator.state.expire_sync_tokens(user)
    with pytest.raises(HttpError) as caught:
        await asyncio.to_thread(_sync, service, syncToken=sync_token)
    error = caught.value
    assert error.status_code == 400
    assert error.reason.startswith("Sync token is expired.")
    assert error.error_details[0]["reason"] == "EXPIRED_SYNC_TOKEN"


async def test_real_client_sees_insufficient_scope(
    emulator: Emulator, sync_http: httplib2.Http
) -> None:
    """A calendar-only token gets an HttpError 403 with ACCESS_TOKEN_SCOPE_INSUFFICIENT."""
    _, token = emulator.user_with(1, scopes=[CALENDAR_RO])
    with pytest.raises(HttpError) as caught:
        await asyncio.to_thread(_sync, _people(emulator.url, token, sync_http))
    assert caught.value.status_code == 403
    assert caught.value.error_details[0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"


async def test_real_client_retries_injected_503(
    emulator: Emulator, sync_http: httplib2.Http
) -> None:
    """An injected 503 is retried by ``execute(num_retries=…)`` and the listing succeeds."""
    _, token = emulator.user_with(2)
    emulator.state.add_fault("/v1/people", 503, count=1)
    request = (
        _people(emulator.url, token, sync_http)
        .people()
        .connections()
        .list(resourceName="people/me", personFields="names")
    )
    body = await asyncio.to_thread(request.execute, num_retries=1)
    assert len(body["connections"]) == 2
