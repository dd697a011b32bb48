"""OAuth at Google: per-job access tokens narrowed to one feature's scope, and revocation.

Refresh goes through google-auth (the library made for it); its blocking call runs in
a thread. Revocation is a plain form POST, retried by the caller until Google either
confirms or says the token is already dead.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
import google_auth_httplib2
import httplib2
from google.auth import exceptions as auth_exceptions
from google.oauth2.credentials import Credentials

from gwsync.connectors.endpoints import Endpoints
from gwsync.connectors.errors import (
    PermissionLostError,
    RevokedError,
    TemporaryError,
    UnknownGoogleError,
)
from gwsync.domain.scopes import parse


@dataclass(frozen=True)
class OAuthClient:
    client_id: str
    client_secret: str
    endpoints: Endpoints
    timeout_s: float = 30.0


@dataclass(frozen=True)
class AccessToken:
    token: str
    scopes: frozenset[str]


def _refresh_blocking(client: OAuthClient, refresh_token: str, scope: str) -> AccessToken:
    creds = Credentials(
        token=None, refresh_token=refresh_token, token_uri=client.endpoints.token,
        client_id=client.client_id, client_secret=client.client_secret, scopes=[scope],
    )
    http = httplib2.Http(timeout=client.timeout_s)
    try:
        creds.refresh(google_auth_httplib2.Request(http))
    finally:
        http.close()
    granted = parse(creds.granted_scopes) if creds.granted_scopes else frozenset({scope})
    return AccessToken(creds.token or "", granted)


def classify_refresh_error(exc: auth_exceptions.GoogleAuthError) -> Exception:
    if isinstance(exc, auth_exceptions.RefreshError):
        body = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
        error = body.get("error")
        if error == "invalid_grant":
            return RevokedError("refresh answered invalid_grant")
        if error == "invalid_scope":
            return PermissionLostError("the grant no longer covers the scope")
        if exc.retryable or not error:
            return TemporaryError(f"token endpoint failed ({error or 'no error code'})")
        return UnknownGoogleError(f"token endpoint answered {error}")
    return TemporaryError(f"token endpoint unreachable ({type(exc).__name__})")


async def access_token(client: OAuthClient, refresh_token: str, scope: str) -> AccessToken:
    """An access token for `scope` only; raises RevokedError only on `invalid_grant`."""
    try:
        token = await asyncio.to_thread(_refresh_blocking, client, refresh_token, scope)
    except auth_exceptions.GoogleAuthError as exc:
        raise classify_refresh_error(exc) from None
    except (OSError, httplib2.HttpLib2Error) as exc:
        raise TemporaryError(f"token endpoint unreachable ({type(exc).__name__})") from None
    if scope not in token.scopes:
        raise PermissionLostError("Google did not grant the feature's scope")
    return token


async def revoke(client: OAuthClient, token: str, session: aiohttp.ClientSession) -> str:
    """Revoke the grant. Returns `revoked` or `already_invalid`; raises TemporaryError."""
    try:
        async with session.post(
            client.endpoints.revoke, data={"token": token},
            timeout=aiohttp.ClientTimeout(total=client.timeout_s),
        ) as resp:
            if resp.status == 200:
                return "revoked"
            body = await resp.json(content_type=None) if resp.status == 400 else {}
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise TemporaryError(f"revoke endpoint unreachable ({type(exc).__name__})") from None
    if isinstance(body, dict) and body.get("error") in {"invalid_token", "invalid_grant"}:
        return "already_invalid"
    raise TemporaryError(f"revoke endpoint answered {resp.status}", status=resp.status)



async def granted_scopes(
    client: OAuthClient, refresh_token: str, session: aiohttp.ClientSession
) -> frozenset[str]:
    """Ask Google which scopes a grant covers: a refresh without `scope` reports them all.

    (google-auth records granted scopes only when scopes were requested, so this one
    form POST is made directly.)
    """
    body = await token_request(client, session, {
        "grant_type": "refresh_token", "refresh_token": refresh_token})
    return parse(body.get("scope"))


async def token_request(
    client: OAuthClient, session: aiohttp.ClientSession, form: dict[str, str]
) -> dict[str, Any]:
    """One form POST to the token endpoint (client credentials added), answer or category.

    Only `invalid_grant` is a definite refusal of the grant or code (RevokedError); 5xx,
    429 and network failures are temporary; anything else is unknown.
    """
    form = {**form, "client_id": client.client_id, "client_secret": client.client_secret}
    try:
        async with session.post(client.endpoints.token, data=form,
                                timeout=aiohttp.ClientTimeout(total=client.timeout_s)) as resp:
            body = await resp.json(content_type=None)
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise TemporaryError(f"token endpoint unreachable ({type(exc).__name__})") from None
    if not isinstance(body, dict):
        raise UnknownGoogleError("token endpoint answered with something other than an object")
    if status == 200:
        return body
    if body.get("error") == "invalid_grant":
        raise RevokedError("the token endpoint answered invalid_grant")
    if status >= 500 or status == 429:
        raise TemporaryError(f"token endpoint answered {status}", status=status)
    raise UnknownGoogleError(f"token endpoint answered {body.get('error') or status}")
