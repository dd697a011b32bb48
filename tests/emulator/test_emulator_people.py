"""People ``connections.list`` over HTTP: auth, field masks, paging and sync tokens."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.emulator.support import CALENDAR_RO, CONTACTS, CONTACTS_RO, Emulator, person

PATH = "/v1/people/me/connections"


async def _list(
    http: aiohttp.ClientSession, emulator: Emulator, token: str | None, **params: Any
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    query = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}
    async with http.get(emulator.url + PATH, params=query, headers=headers) as resp:
        return resp.status, await resp.json()


async def _full_sync(
    http: aiohttp.ClientSession, emulator: Emulator, token: str, **params: Any
) -> tuple[list[dict[str, Any]], str]:
    """Page through a listing; return every person and the final sync token."""
    people: list[dict[str, Any]] = []
    page_token = None
    while True:
        extra = {"pageToken": page_token} if page_token else {}
        status, body = await _list(http, emulator, token, **params, **extra)
        assert status == 200, body
        people += body.get("connections", [])
        page_token = body.get("nextPageToken")
        if not page_token:
            return people, body.get("nextSyncToken", "")


async def test_missing_token_is_401(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """A call without (or with an unknown) bearer token gets Google's 401 body."""
    for token in (None, "ya29.unknown"):
        status, body = await _list(http, emulator, token, personFields="names")
        assert status == 401
        assert body == {
            "error": {
                "code": 401,
                "message": "Request had invalid authentication credentials. Expected OAuth 2 "
                "access token, login cookie or other valid authentication credential.",
                "status": "UNAUTHENTICATED",
            }
        }
    assert emulator.state.calls() == []


async def test_wrong_scope_is_403(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """A valid token without a contacts scope gets Google's 403 insufficient-scopes body."""
    _, token = emulator.user_with(1, scopes=[CALENDAR_RO])
    status, body = await _list(http, emulator, token, personFields="names")
    assert status == 403
    assert body == {
        "error": {
            "code": 403,
            "message": "Request had insufficient authentication scopes.",
            "status": "PERMISSION_DENIED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                    "domain": "googleapis.com",
                    "metadata": {
                        "service": "people.googleapis.com",
                        "method": "google.people.v1.PeopleService.ListConnections",
                    },
                }
            ],
        }
    }


async def test_broader_contacts_scope_also_authorises(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Any scope the discovery document lists for the method authorises it (here ``contacts``)."""
    _, token = emulator.user_with(1, scopes=[CONTACTS])
    status, _ = await _list(http, emulator, token, personFields="names")
    assert status == 200


async def test_person_fields_required(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """Without ``personFields`` the call is a 400 INVALID_ARGUMENT, and it is still logged."""
    _, token = emulator.user_with(1)
    status, body = await _list(http, emulator, token)
    assert status == 400
    assert body["error"]["status"] == "INVALID_ARGUMENT"
    assert body["error"]["message"].startswith(
        "personFields mask is required. Please specify one or more valid paths."
    )
    status, body = await _list(http, emulator, token, personFields="names,shoeSize")
    assert status == 400 and "shoeSize" in body["error"]["message"]
    assert [c["status"] for c in emulator.state.calls()] == [400, 400]


async def test_person_fields_minimise_the_response(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Asking for names only returns names only: no emails, phones or biographies."""
    _, token = emulator.user_with(3)
    status, body = await _list(http, emulator, token, personFields="names")
    assert status == 200
    for got in body["connections"]:
        assert set(got) == {"resourceName", "etag", "names"}
        assert got["resourceName"].startswith("people/c") and got["resourceName"][8:].isdigit()
    status, body = await _list(http, emulator, token, personFields="names,emailAddresses")
    assert set(body["connections"][0]) == {"resourceName", "etag", "names", "emailAddresses"}


async def test_paging_and_sync_token_on_last_page(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Pages of ``pageSize`` chain by ``nextPageToken``; only the last carries ``nextSyncToken``."""
    _, token = emulator.user_with(5)
    fields = {"personFields": "names", "pageSize": 2, "requestSyncToken": True}
    status, first = await _list(http, emulator, token, **fields)
    assert status == 200 and len(first["connections"]) == 2
    assert first["totalPeople"] == first["totalItems"] == 5
    assert "nextSyncToken" not in first
    people, sync_token = await _full_sync(http, emulator, token, **fields)
    assert len(people) == 5 and len({p["resourceName"] for p in people}) == 5
    assert sync_token
    _, unsynced = await _full_sync(http, emulator, token, personFields="names", pageSize=2)
    assert unsynced == ""


async def test_paging_errors(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """Bad page sizes, unknown page tokens and changed parameters are 400 INVALID_ARGUMENT."""
    _, token = emulator.user_with(3)
    for size in (-1, 1001, "abc"):
        status, body = await _list(http, emulator, token, personFields="names", pageSize=size)
        assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    status, _ = await _list(http, emulator, token, personFields="names", pageToken="bogus")
    assert status == 400
    _, first = await _list(http, emulator, token, personFields="names", pageSize=1)
    page = first["nextPageToken"]
    status, _ = await _list(http, emulator, token, personFields="phoneNumbers", pageToken=page)
    assert status == 400
    status, _ = await _list(http, emulator, token, personFields="names", pageToken=page)
    assert status == 200


async def test_incremental_sync_returns_changes_and_deletions(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """A sync token yields exactly what was added, changed or deleted since, deletions bare."""
    user, token = emulator.user_with(4)
    full, sync_token = await _full_sync(
        http, emulator, token, personFields="names,emailAddresses", requestSyncToken=True
    )
    names = [p["resourceName"] for p in full]
    state = emulator.state
    [added] = state.add_contacts(user, [person("New", "Person")])
    state.update_contact(user, names[0], {"names": [{"displayName": "Renamed"}]})
    state.delete_contact(user, names[1].removeprefix("people/"))
    params = {"personFields": "names,emailAddresses", "pageSize": 2}
    changes, next_token = await _full_sync(http, emulator, token, syncToken=sync_token, **params)
    by_name = {p["resourceName"]: p for p in changes}
    assert set(by_name) == {added, names[0], names[1]}
    assert by_name[names[1]] == {
        "resourceName": names[1],
        "etag": by_name[names[1]]["etag"],
        "metadata": {"deleted": True},
    }
    assert by_name[names[0]]["names"] == [{"displayName": "Renamed"}]
    assert by_name[names[0]]["etag"] != full[0]["etag"]
    assert "metadata" not in by_name[added]
    assert next_token and next_token != sync_token
    status, body = await _list(http, emulator, token, syncToken=next_token, **params)
    assert status == 200 and "connections" not in body and body["nextSyncToken"]


async def test_changes_during_paging_reach_the_next_sync(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """A contact changed or deleted mid-listing is reported by the following incremental sync."""
    user, token = emulator.user_with(4)
    fields = {"personFields": "names", "pageSize": 2, "requestSyncToken": True}
    _, first = await _list(http, emulator, token, **fields)
    seen = [p["resourceName"] for p in first["connections"]]
    emulator.state.delete_contact(user, seen[0])
    status, last = await _list(http, emulator, token, pageToken=first["nextPageToken"], **fields)
    assert status == 200 and len(last["connections"]) == 2
    _, changes = await _list(
        http, emulator, token, personFields="names", syncToken=last["nextSyncToken"]
    )
    assert changes["connections"] == [
        {
            "resourceName": seen[0],
            "etag": changes["connections"][0]["etag"],
            "metadata": {"deleted": True},
        }
    ]


EXPIRED = {
    "error": {
        "code": 400,
        "message": "Sync token is expired. "
        "Clear local cache and retry call without the sync token.",
        "status": "FAILED_PRECONDITION",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "EXPIRED_SYNC_TOKEN",
                "domain": "people.googleapis.com",
            }
        ],
    }
}


async def test_expired_sync_tokens(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """Admin-expired, week-old and unknown sync tokens all get the EXPIRED_SYNC_TOKEN 400."""
    user, token = emulator.user_with(2)
    _, sync_token = await _full_sync(
        http, emulator, token, personFields="names", requestSyncToken=True
    )
    assert emulator.state.expire_sync_tokens(user) == 1
    status, body = await _list(http, emulator, token, personFields="names", syncToken=sync_token)
    assert (status, body) == (400, EXPIRED)

    _, sync_token = await _full_sync(
        http, emulator, token, personFields="names", requestSyncToken=True
    )
    grant = emulator.state.issue_grant(user, [CONTACTS_RO])
    emulator.state.advance(6 * 86400)
    token = emulator.state.mint_access_token(grant.refresh_token)
    status, body = await _list(http, emulator, token, personFields="names", syncToken=sync_token)
    assert status == 200
    # Chained tokens still expire 7 days after the *full* sync.
    emulator.state.advance(1 * 86400 + 1)
    token = emulator.state.mint_access_token(grant.refresh_token)
    status, body2 = await _list(
        http, emulator, token, personFields="names", syncToken=body["nextSyncToken"]
    )
    assert (status, body2) == (400, EXPIRED)

    status, body = await _list(http, emulator, token, personFields="names", syncToken="made-up")
    assert (status, body) == (400, EXPIRED)


async def test_call_log_records_method_scopes_user_and_status(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Each authorised call is logged with the token's scopes; 401s are not."""
    user, token = emulator.user_with(1)
    await _list(http, emulator, token, personFields="names")
    await _list(http, emulator, None, personFields="names")
    assert emulator.state.calls(clear=True) == [
        {
            "method": "people.people.connections.list",
            "scopes": [CONTACTS_RO],
            "user": user,
            "status": 200,
        }
    ]
    assert emulator.state.calls() == []
