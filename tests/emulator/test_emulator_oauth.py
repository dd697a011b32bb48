"""The emulated OAuth endpoints: refresh, down-scoping, client checks and revocation."""

from __future__ import annotations

import asyncio
import base64

import aiohttp
import google.auth.exceptions
import google.oauth2.credentials
import google_auth_httplib2
import httplib2
import pytest

from gwsync.emulator.grants import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from tests.emulator.support import CALENDAR_RO, CONTACTS_RO, Emulator


def _form(refresh_token: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        **extra,
    }


async def test_refresh_returns_google_token_response(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """A refresh answers Google's token response with every granted scope."""
    issued = emulator.state.add_user("a@example.com", [], [CONTACTS_RO, CALENDAR_RO])
    async with http.post(emulator.url + "/token", data=_form(issued.refresh_token)) as resp:
        body = await resp.json()
    assert resp.status == 200
    assert set(body) == {"access_token", "expires_in", "scope", "token_type"}
    assert body["access_token"].startswith("ya29.")
    assert body["expires_in"] == 3599 and body["token_type"] == "Bearer"
    assert body["scope"].split() == sorted([CONTACTS_RO, CALENDAR_RO])
    assert issued.refresh_token.startswith("1//")


async def test_refresh_with_scope_narrows_the_access_token(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """A ``scope`` parameter mints a token carrying only that subset."""
    issued = emulator.state.add_user("a@example.com", [], [CONTACTS_RO, CALENDAR_RO])
    form = _form(issued.refresh_token, scope=CONTACTS_RO)
    async with http.post(emulator.url + "/token", data=form) as resp:
        body = await resp.json()
    assert body["scope"] == CONTACTS_RO
    assert emulator.state.authenticate(body["access_token"]).scopes == {CONTACTS_RO}


async def test_refresh_with_ungranted_scope_is_invalid_scope(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Asking for a scope outside the grant is refused with ``invalid_scope``."""
    issued = emulator.state.add_user("a@example.com", [], [CONTACTS_RO])
    form = _form(issued.refresh_token, scope=f"{CONTACTS_RO} {CALENDAR_RO}")
    async with http.post(emulator.url + "/token", data=form) as resp:
        body = await resp.json()
    assert resp.status == 400 and body["error"] == "invalid_scope"
    assert CALENDAR_RO in body["error_description"]


@pytest.mark.parametrize(
    ("field", "value"), [("client_id", "someone-else"), ("client_secret", "wrong")]
)
async def test_wrong_client_is_invalid_client(
    emulator: Emulator, http: aiohttp.ClientSession, field: str, value: str
) -> None:
    """A wrong client id or secret gets 401 ``invalid_client``."""
    issued = emulator.state.add_user("a@example.com", [], [CONTACTS_RO])
    async with http.post(
        emulator.url + "/token", data=_form(issued.refresh_token, **{field: value})
    ) as resp:
        body = await resp.json()
    assert resp.status == 401 and body["error"] == "invalid_client"


async def test_basic_auth_client_credentials_are_accepted(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Client credentials may come as HTTP Basic auth instead of form fields."""
    issued = emulator.state.add_user("a@example.com", [], [CONTACTS_RO])
    form = {"grant_type": "refresh_token", "refresh_token": issued.refresh_token}
    basic = base64.b64encode(f"{DEFAULT_CLIENT_ID}:{DEFAULT_CLIENT_SECRET}".encode()).decode()
    headers = {"Authorization": f"Basic {basic}"}
    async with http.post(emulator.url + "/token", data=form, headers=headers) as resp:
        assert resp.status == 200


async def test_unknown_refresh_token_and_grant_type(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """An unknown refresh token is ``invalid_grant``; an unknown grant type is refused."""
    async with http.post(emulator.url + "/token", data=_form("1//nope")) as resp:
        assert resp.status == 400
        assert await resp.json() == {
            "error": "invalid_grant",
            "error_description": "Token has been expired or revoked.",
        }
    form = _form("1//nope", grant_type="password")
    async with http.post(emulator.url + "/token", data=form) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "unsupported_grant_type"


async def test_revoke_then_revoke_again(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """``/revoke`` answers 200 ``{}`` once, then 400 ``invalid_token``, and logs the revocation."""
    issued = emulator.state.add_user("a@example.com", [], [CONTACTS_RO])
    access = emulator.state.mint_access_token(issued.refresh_token)
    async with http.post(emulator.url + "/revoke", data={"token": issued.refresh_token}) as resp:
        assert resp.status == 200 and await resp.json() == {}
    async with http.post(emulator.url + "/revoke", params={"token": issued.refresh_token}) as resp:
        assert resp.status == 400
        assert await resp.json() == {
            "error": "invalid_token",
            "error_description": "Token expired or revoked",
        }
    assert emulator.state.authenticate(access) is None
    [entry] = emulator.state.revocations()
    assert entry["token"] == issued.refresh_token and entry["kind"] == "refresh_token"
    assert entry["user"] == "a@example.com"


async def test_revoking_an_access_token_revokes_its_grant(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Revoking an access token also kills the refresh token of the same grant."""
    issued = emulator.state.add_user("a@example.com", [], [CONTACTS_RO])
    other = emulator.state.issue_grant("a@example.com", [CALENDAR_RO])
    access = emulator.state.mint_access_token(issued.refresh_token)
    async with http.post(emulator.url + "/revoke", params={"token": access}) as resp:
        assert resp.status == 200
    async with http.post(emulator.url + "/token", data=_form(issued.refresh_token)) as resp:
        assert (await resp.json())["error"] == "invalid_grant"
    assert emulator.state.mint_access_token(other.refresh_token)


async def test_access_token_expires(emulator: Emulator) -> None:
    """Access tokens stop authenticating once ``expires_in`` has passed on the state clock."""
    _, token = emulator.user_with(0)
    emulator.state.advance(3598)
    assert emulator.state.authenticate(token) is not None
    emulator.state.advance(2)
    assert emulator.state.authenticate(token) is None


def _credentials(url: str, refresh_token: str, scopes: list[str]) -> object:
    return google.oauth2.credentials.Credentials(
        token=None,
        refresh_token=refresh_token,
        token_uri=url + "/token",
        client_id=DEFAULT_CLIENT_ID,
        client_secret=DEFAULT_CLIENT_SECRET,
        scopes=scopes,
    )


async def test_google_auth_refresh_gets_a_narrowed_token(
    emulator: Emulator, sync_http: httplib2.Http
) -> None:
    """The real google-auth refresh asks for its scopes and gets a token of exactly those."""
    issued = emulator.state.add_user("a@example.com", [], [CONTACTS_RO, CALENDAR_RO])
    creds = _credentials(emulator.url, issued.refresh_token, [CONTACTS_RO])
    await asyncio.to_thread(creds.refresh, google_auth_httplib2.Request(sync_http))
    assert creds.token.startswith("ya29.")
    assert creds.granted_scopes == [CONTACTS_RO]
    assert emulator.state.authenticate(creds.token).scopes == {CONTACTS_RO}
    assert creds.expiry is not None


async def test_google_auth_refresh_after_revoke_raises_refresh_error(
    emulator: Emulator, sync_http: httplib2.Http
) -> None:
    """After the user revokes, google-auth's refresh raises a non-retryable ``invalid_grant``."""
    issued = emulator.state.add_user("a@example.com", [], [CONTACTS_RO])
    emulator.state.revoke_user("a@example.com")
    creds = _credentials(emulator.url, issued.refresh_token, [CONTACTS_RO])
    request = google_auth_httplib2.Request(sync_http)
    with pytest.raises(google.auth.exceptions.RefreshError) as caught:
        await asyncio.to_thread(creds.refresh, request)
    assert "invalid_grant" in str(caught.value)
    assert caught.value.retryable is False


async def test_google_auth_retries_through_an_injected_token_outage(
    emulator: Emulator, sync_http: httplib2.Http
) -> None:
    """A single 503 on ``/token`` is retried by google-auth (it is a retryable failure)."""
    issued = emulator.state.add_user("a@example.com", [], [CONTACTS_RO])
    emulator.state.add_fault("/token", 503, count=1)
    creds = _credentials(emulator.url, issued.refresh_token, [CONTACTS_RO])
    await asyncio.to_thread(creds.refresh, google_auth_httplib2.Request(sync_http))
    assert creds.token and emulator.state.faults == []
