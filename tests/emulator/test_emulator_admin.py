"""The ``/_emulator/`` admin routes, fault injection, seeding and the server helpers."""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from gwsync.emulator.app import create_app, serve, state_of
from gwsync.emulator.grants import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from gwsync.emulator.seed import fake_contact, seed_demo_user
from gwsync.emulator.state import STATE_KEY, EmulatorState
from tests.emulator.support import CALENDAR_RO, CONTACTS_RO, Emulator, person

ADMIN = "/_emulator"


async def _post(
    http: aiohttp.ClientSession, url: str, body: Any = None
) -> tuple[int, dict[str, Any]]:
    async with http.post(url, json=body) as resp:
        return resp.status, await resp.json()


async def _refresh(
    http: aiohttp.ClientSession, url: str, refresh_token: str
) -> tuple[int, dict[str, Any]]:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
    }
    async with http.post(url + "/token", data=form) as resp:
        return resp.status, await resp.json()


async def _names(http: aiohttp.ClientSession, url: str, token: str) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"}
    params = {"personFields": "names"}
    async with http.get(url + "/v1/people/me/connections", params=params, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_create_user_and_grant_over_http(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """``POST /users`` and ``/users/{user}/grants`` issue working refresh tokens."""
    body = {"email": "bob@example.com", "contacts": [person("A", "B")], "scopes": [CONTACTS_RO]}
    status, created = await _post(http, emulator.url + ADMIN + "/users", body)
    assert status == 201 and created["user"] == "bob@example.com"
    status, token = await _refresh(http, emulator.url, created["refresh_token"])
    assert status == 200 and token["scope"] == CONTACTS_RO
    status, grant = await _post(
        http, emulator.url + ADMIN + "/users/bob@example.com/grants", {"scopes": [CALENDAR_RO]}
    )
    assert status == 201
    _, token = await _refresh(http, emulator.url, grant["refresh_token"])
    assert token["scope"] == CALENDAR_RO


async def test_contacts_admin_routes(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """Contacts can be added, patched and deleted over HTTP and show in the state."""
    user, _ = emulator.user_with(0)
    base = f"{emulator.url}{ADMIN}/users/{user}/contacts"
    status, added = await _post(http, base, [person("A", "One"), person("B", "Two")])
    assert status == 201 and len(added["resourceNames"]) == 2
    first, second = (name.removeprefix("people/") for name in added["resourceNames"])
    async with http.patch(f"{base}/{first}", json={"biographies": None}) as resp:
        assert resp.status == 200 and (await resp.json())["etag"].startswith("%")
    async with http.delete(f"{base}/{second}") as resp:
        assert resp.status == 200
    [left] = emulator.state.contacts(user)
    assert "biographies" not in left and left["names"][0]["givenName"] == "A"
    async with http.delete(f"{base}/{second}") as resp:
        assert resp.status == 404 and (await resp.json())["error"] == "unknown_contact"


async def test_unknown_user_and_bad_body(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """Admin errors are JSON 4xx: unknown users 404, malformed bodies 400."""
    status, body = await _post(http, f"{emulator.url}{ADMIN}/users/nobody/revoke")
    assert status == 404 and body["error"] == "unknown_user"
    status, body = await _post(http, f"{emulator.url}{ADMIN}/users", {"scopes": []})
    assert status == 400 and body["error"] == "bad_request"


async def test_user_revocation_kills_refresh_and_access_tokens(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Revoking a user's grants yields ``invalid_grant`` and 401s, but no /revoke log entry."""
    issued = emulator.state.add_user("a@example.com", [], [CONTACTS_RO])
    access = emulator.state.mint_access_token(issued.refresh_token)
    status, body = await _post(http, f"{emulator.url}{ADMIN}/users/a@example.com/revoke")
    assert status == 200 and body == {"revoked_grants": 1}
    status, body = await _refresh(http, emulator.url, issued.refresh_token)
    assert status == 400 and body["error"] == "invalid_grant"
    status, _ = await _names(http, emulator.url, access)
    assert status == 401
    async with http.get(f"{emulator.url}{ADMIN}/revocations") as resp:
        assert await resp.json() == {"revocations": []}


async def test_expire_sync_tokens_route(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """``expire-sync-tokens`` reports how many live sync tokens it expired."""
    user, token = emulator.user_with(1)
    headers = {"Authorization": f"Bearer {token}"}
    params = {"personFields": "names", "requestSyncToken": "true"}
    async with http.get(
        emulator.url + "/v1/people/me/connections", params=params, headers=headers
    ) as resp:
        assert (await resp.json())["nextSyncToken"]
    status, body = await _post(http, f"{emulator.url}{ADMIN}/users/{user}/expire-sync-tokens")
    assert status == 200 and body == {"expired": 1}


async def test_calls_route_reads_and_clears(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """``GET /calls`` returns the log; ``?clear=1`` empties it."""
    user, token = emulator.user_with(1)
    await _names(http, emulator.url, token)
    async with http.get(f"{emulator.url}{ADMIN}/calls", params={"clear": "1"}) as resp:
        calls = (await resp.json())["calls"]
    assert calls == [
        {
            "method": "people.people.connections.list",
            "scopes": [CONTACTS_RO],
            "user": user,
            "status": 200,
        }
    ]
    async with http.get(f"{emulator.url}{ADMIN}/calls") as resp:
        assert await resp.json() == {"calls": []}


async def test_faults_fail_the_next_requests_in_google_shape(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """A 503 fault answers Google's UNAVAILABLE body N times, then requests pass again."""
    issued = emulator.state.add_user("a@example.com", [person("A", "B")], [CONTACTS_RO])
    token = emulator.state.mint_access_token(issued.refresh_token)
    fault = {"path_prefix": "/v1/people", "status": 503, "count": 2}
    status, _ = await _post(http, f"{emulator.url}{ADMIN}/faults", fault)
    assert status == 201
    for _ in range(2):
        status, body = await _names(http, emulator.url, token)
        assert (status, body) == (
            503,
            {
                "error": {
                    "code": 503,
                    "message": "The service is currently unavailable.",
                    "status": "UNAVAILABLE",
                }
            },
        )
    status, _ = await _names(http, emulator.url, token)
    assert status == 200
    await _post(http, f"{emulator.url}{ADMIN}/faults", {"path_prefix": "/token", "status": 503})
    status, body = await _refresh(http, emulator.url, issued.refresh_token)
    assert (status, body) == (503, {"error": "internal_failure"})


async def test_latency_only_fault_and_clearing(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """``status: 0`` only delays; ``DELETE /faults`` drops pending faults."""
    _, token = emulator.user_with(1)
    fault = {"path_prefix": "/v1/people", "status": 0, "count": 1, "delay_ms": 200}
    await _post(http, f"{emulator.url}{ADMIN}/faults", fault)
    started = time.monotonic()
    status, _ = await _names(http, emulator.url, token)
    assert status == 200 and time.monotonic() - started >= 0.2
    await _post(http, f"{emulator.url}{ADMIN}/faults", {"path_prefix": "/", "status": 500})
    async with http.get(f"{emulator.url}{ADMIN}/faults") as resp:
        assert len((await resp.json())["faults"]) == 1
    async with http.delete(f"{emulator.url}{ADMIN}/faults") as resp:
        assert resp.status == 200
    status, _ = await _names(http, emulator.url, token)
    assert status == 200


async def test_a_fault_can_start_after_some_requests_pass(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """``after: n`` lets n matching requests through before the fault strikes."""
    _, token = emulator.user_with(1)
    fault = {"path_prefix": "/v1/people", "status": 503, "count": 1, "after": 2}
    await _post(http, f"{emulator.url}{ADMIN}/faults", fault)
    statuses = [(await _names(http, emulator.url, token))[0] for _ in range(4)]
    assert statuses == [200, 200, 503, 200]


def test_seed_demo_user_is_deterministic_and_carries_the_marker() -> None:
    """Seeding yields the same rich contacts each time, with the marker in one contact."""
    state = EmulatorState()
    issued = seed_demo_user(state, 10, marker="ZQXMARKER")
    contacts = state.contacts(issued.user)
    assert len(contacts) == 10 and CONTACTS_RO in issued.scopes
    marked = [c for c in contacts if "ZQXMARKER" in str(c)]
    assert len(marked) == 1
    assert marked[0]["emailAddresses"][0]["value"] == "ZQXMARKER@example.com"
    assert "ZQXMARKER" in marked[0]["names"][0]["displayName"]
    assert "ZQXMARKER" in marked[0]["biographies"][0]["value"]
    assert fake_contact(3) == fake_contact(3) and "biographies" in fake_contact(3)
    assert all(c["emailAddresses"][0]["value"].endswith("@example.com") for c in contacts)


def test_create_app_without_state_makes_a_fresh_one() -> None:
    """``create_app()`` works standalone and exposes its state under ``STATE_KEY``."""
    app = create_app()
    assert isinstance(app[STATE_KEY], EmulatorState)


async def test_state_of_runner(emulator: Emulator) -> None:
    """``serve`` returns a runner whose state is the one passed in."""
    runner = await serve(state=emulator.state)
    try:
        assert state_of(runner) is emulator.state
    finally:
        await runner.cleanup()
