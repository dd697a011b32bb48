"""OAuth at Google: access tokens narrowed to one feature's scope, revocation, and
telling a dead grant from an outage."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from google.auth import exceptions as auth_exceptions

from gwsync.connectors.endpoints import Endpoints
from gwsync.connectors.errors import (
    Category,
    PermissionLostError,
    RevokedError,
    TemporaryError,
    UnknownGoogleError,
)
from gwsync.connectors.oauth import (
    OAuthClient,
    access_token,
    classify_refresh_error,
    granted_scopes,
    revoke,
)
from gwsync.domain.scopes import AUTH
from tests.conftest import Emulator

CONTACTS = AUTH + "contacts.readonly"
MEETINGS = AUTH + "calendar.events.readonly"
MAIL = AUTH + "gmail.metadata"
USER = "ada@example.com"


@pytest.fixture
def client(emulator: Emulator) -> OAuthClient:
    """The OAuth client the emulator knows, with every endpoint on the emulator."""
    state = emulator.state
    return OAuthClient(state.client_id, state.client_secret, Endpoints.at(emulator.url),
                       timeout_s=5)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


# -- classifying google-auth's failures ----------------------------------------------------------


def test_invalid_grant_is_revocation() -> None:
    """`invalid_grant` from the token endpoint means the grant is dead at Google."""
    exc = auth_exceptions.RefreshError(
        "invalid_grant: Token has been expired or revoked.",
        {"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
    error = classify_refresh_error(exc)
    assert isinstance(error, RevokedError)
    assert error.category is Category.REVOKED


def test_invalid_grant_is_revocation_even_if_marked_retryable() -> None:
    """A definite `invalid_grant` is never downgraded to a retry."""
    exc = auth_exceptions.RefreshError("x", {"error": "invalid_grant"}, retryable=True)
    assert isinstance(classify_refresh_error(exc), RevokedError)


def test_invalid_scope_is_lost_permission() -> None:
    """`invalid_scope` means the grant no longer covers the feature: permission lost."""
    exc = auth_exceptions.RefreshError("x", {"error": "invalid_scope"})
    assert isinstance(classify_refresh_error(exc), PermissionLostError)


@pytest.mark.parametrize(
    "exc",
    [
        auth_exceptions.RefreshError("x", {"error": "internal_failure"}, retryable=True),
        auth_exceptions.RefreshError("x", {"error": "temporarily_unavailable"}, retryable=True),
        auth_exceptions.RefreshError("no body"),
        auth_exceptions.RefreshError("x", "<html>502</html>"),
        auth_exceptions.TransportError("connection reset"),
    ],
    ids=["internal-failure", "temporarily-unavailable", "no-body", "html-body", "transport"],
)
def test_outages_are_temporary(exc: auth_exceptions.GoogleAuthError) -> None:
    """A retryable refresh failure, a failure without an error code, or no connection: retry."""
    error = classify_refresh_error(exc)
    assert isinstance(error, TemporaryError)
    assert not isinstance(error, RevokedError)


def test_another_definite_oauth_error_is_unknown() -> None:
    """A non-retryable OAuth error other than grant or scope (e.g. invalid_client) is unknown."""
    exc = auth_exceptions.RefreshError("x", {"error": "invalid_client"})
    error = classify_refresh_error(exc)
    assert type(error) is UnknownGoogleError
    assert "invalid_client" in str(error)


def test_the_error_detail_does_not_repeat_the_description() -> None:
    """The description Google sent (free text) is not copied into the error."""
    exc = auth_exceptions.RefreshError(
        "x", {"error": "invalid_grant", "error_description": f"Account {USER} was deleted"})
    assert USER not in str(classify_refresh_error(exc))


# -- against the emulator ------------------------------------------------------------------------


async def test_access_token_is_narrowed_to_the_feature_scope(
    emulator: Emulator, client: OAuthClient
) -> None:
    """A token minted for one feature carries that feature's scope, not the whole grant."""
    grant = emulator.state.add_user(USER, scopes=[CONTACTS, MEETINGS, MAIL])
    token = await access_token(client, grant.refresh_token, CONTACTS)
    assert token.scopes == {CONTACTS}
    assert token.token.startswith("ya29.")
    assert emulator.state.authenticate(token.token) is not None
    assert emulator.state.access_tokens[token.token].scopes == {CONTACTS}


async def test_tokens_for_two_features_are_separate(
    emulator: Emulator, client: OAuthClient
) -> None:
    """Each feature's job gets its own token with only its own scope."""
    grant = emulator.state.add_user(USER, scopes=[CONTACTS, MEETINGS])
    contacts = await access_token(client, grant.refresh_token, CONTACTS)
    meetings = await access_token(client, grant.refresh_token, MEETINGS)
    assert contacts.token != meetings.token
    assert (contacts.scopes, meetings.scopes) == ({CONTACTS}, {MEETINGS})


async def test_a_scope_outside_the_grant_is_lost_permission(
    emulator: Emulator, client: OAuthClient
) -> None:
    """Asking for a scope the user did not grant raises PermissionLostError, not revocation."""
    grant = emulator.state.add_user(USER, scopes=[CONTACTS])
    with pytest.raises(PermissionLostError):
        await access_token(client, grant.refresh_token, MAIL)
    assert await access_token(client, grant.refresh_token, CONTACTS)


async def test_a_revoked_grant_raises_revoked(emulator: Emulator, client: OAuthClient) -> None:
    """After the user revokes access at Google, a refresh raises RevokedError."""
    grant = emulator.state.add_user(USER, scopes=[CONTACTS])
    emulator.state.revoke_user(USER)
    with pytest.raises(RevokedError):
        await access_token(client, grant.refresh_token, CONTACTS)


async def test_an_unknown_refresh_token_raises_revoked(
    emulator: Emulator, client: OAuthClient
) -> None:
    """A refresh token Google does not know answers `invalid_grant`: revoked."""
    with pytest.raises(RevokedError):
        await access_token(client, "1//not-a-token-google-issued", CONTACTS)


@pytest.mark.timeout(60)
async def test_a_token_endpoint_outage_is_temporary(
    emulator: Emulator, client: OAuthClient
) -> None:
    """A 503 from the token endpoint is temporary and leaves the grant alive."""
    grant = emulator.state.add_user(USER, scopes=[CONTACTS])
    emulator.state.add_fault("/token", 503, count=10)
    with pytest.raises(TemporaryError):
        await access_token(client, grant.refresh_token, CONTACTS)
    emulator.state.clear_faults()
    assert (await access_token(client, grant.refresh_token, CONTACTS)).scopes == {CONTACTS}


async def test_an_unreachable_token_endpoint_is_temporary(emulator: Emulator) -> None:
    """With nothing listening at the token endpoint, a refresh is temporary, never revoked."""
    closed = OAuthClient(emulator.state.client_id, emulator.state.client_secret,
                         Endpoints.at("http://127.0.0.1:9"), timeout_s=2)
    with pytest.raises(TemporaryError):
        await access_token(closed, "1//whatever", CONTACTS)


async def test_revoke_then_revoke_again(
    emulator: Emulator, client: OAuthClient, session: aiohttp.ClientSession
) -> None:
    """Revoking returns `revoked`; revoking the same token again returns `already_invalid`."""
    grant = emulator.state.add_user(USER, scopes=[CONTACTS])
    assert await revoke(client, grant.refresh_token, session) == "revoked"
    assert await revoke(client, grant.refresh_token, session) == "already_invalid"
    with pytest.raises(RevokedError):
        await access_token(client, grant.refresh_token, CONTACTS)


async def test_revoke_of_a_grant_revoked_by_the_user_is_already_invalid(
    emulator: Emulator, client: OAuthClient, session: aiohttp.ClientSession
) -> None:
    """A grant the user already revoked at Google reports `already_invalid`."""
    grant = emulator.state.add_user(USER, scopes=[CONTACTS])
    emulator.state.revoke_user(USER)
    assert await revoke(client, grant.refresh_token, session) == "already_invalid"


async def test_a_revoke_outage_is_temporary_and_revokes_nothing(
    emulator: Emulator, client: OAuthClient, session: aiohttp.ClientSession
) -> None:
    """A 503 on /revoke raises TemporaryError; the grant is still live and a retry revokes it."""
    grant = emulator.state.add_user(USER, scopes=[CONTACTS])
    emulator.state.add_fault("/revoke", 503, count=1)
    with pytest.raises(TemporaryError) as raised:
        await revoke(client, grant.refresh_token, session)
    assert raised.value.status == 503
    assert emulator.state.revocations() == []
    assert (await access_token(client, grant.refresh_token, CONTACTS)).scopes == {CONTACTS}
    assert await revoke(client, grant.refresh_token, session) == "revoked"


async def test_an_unreachable_revoke_endpoint_is_temporary(
    emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    """With nothing listening at the revoke endpoint, revocation is retried later."""
    closed = OAuthClient(emulator.state.client_id, emulator.state.client_secret,
                         Endpoints.at("http://127.0.0.1:9"), timeout_s=2)
    with pytest.raises(TemporaryError):
        await revoke(closed, "1//whatever", session)


async def test_granted_scopes_reports_the_whole_grant(
    emulator: Emulator, client: OAuthClient, session: aiohttp.ClientSession
) -> None:
    """`granted_scopes` returns every scope the grant covers, as full URLs."""
    grant = emulator.state.add_user(USER, scopes=[CONTACTS, MEETINGS])
    assert await granted_scopes(client, grant.refresh_token, session) == {CONTACTS, MEETINGS}


async def test_granted_scopes_of_a_revoked_grant_is_revoked(
    emulator: Emulator, client: OAuthClient, session: aiohttp.ClientSession
) -> None:
    """Asking about a revoked grant raises RevokedError."""
    grant = emulator.state.add_user(USER, scopes=[CONTACTS])
    emulator.state.revoke_user(USER)
    with pytest.raises(RevokedError):
        await granted_scopes(client, grant.refresh_token, session)


async def test_granted_scopes_during_an_outage_is_temporary(
    emulator: Emulator, client: OAuthClient, session: aiohttp.ClientSession
) -> None:
    """A 503 from the token endpoint while asking for scopes is temporary, not revocation."""
    grant = emulator.state.add_user(USER, scopes=[CONTACTS])
    emulator.state.add_fault("/token", 503, count=1)
    with pytest.raises(TemporaryError):
        await granted_scopes(client, grant.refresh_token, session)
    assert await granted_scopes(client, grant.refresh_token, session) == {CONTACTS}
