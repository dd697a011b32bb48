"""Asking Google for consent: the authorisation URL, PKCE, and the code exchange.

Consent is asked per feature, in context: the URL names only the scopes the asked
features still miss, and `include_granted_scopes=true` makes the resulting grant the
union with what the user granted before (incremental authorisation). The user may
un-tick scopes, so what was granted is read from the token response, never assumed.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from gwsync.connectors import oauth
from gwsync.connectors.errors import UnknownGoogleError
from gwsync.connectors.oauth import OAuthClient
from gwsync.domain import features
from gwsync.domain.scopes import IDENTITY_SCOPES, parse


def new_verifier() -> str:
    """A PKCE code verifier: 86 URL-safe characters (RFC 7636 allows 43..128)."""
    return secrets.token_urlsafe(64)


def challenge(verifier: str) -> str:
    """The S256 code challenge: base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def missing_scopes(names: Iterable[str], granted: frozenset[str]) -> list[str]:
    """The scopes of `names` not yet granted, each once, in the order asked."""
    needed: list[str] = []
    for name in names:
        scope = features.get(name).scope
        if scope not in granted and scope not in needed:
            needed.append(scope)
    return needed


@dataclass(frozen=True)
class ConsentRequest:
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str
    code_challenge: str
    #: Force the consent screen, so Google issues a refresh token even for scopes the user
    #: granted before (needed when we hold no refresh token to fall back on).
    prompt_consent: bool
    login_hint: str | None = None


def authorization_url(client: OAuthClient, request: ConsentRequest) -> str:
    """Google's consent URL for exactly `request.scopes` and the identity scopes, offline,
    incremental, with PKCE."""
    params = {
        "client_id": client.client_id, "redirect_uri": request.redirect_uri,
        "response_type": "code", "scope": " ".join((*IDENTITY_SCOPES, *request.scopes)),
        "access_type": "offline", "include_granted_scopes": "true",
        "code_challenge": request.code_challenge, "code_challenge_method": "S256",
        "state": request.state,
    }
    if request.prompt_consent:
        params["prompt"] = "consent"
    if request.login_hint:
        params["login_hint"] = request.login_hint
    return f"{client.endpoints.authorize}?{urlencode(params, quote_via=quote)}"


@dataclass(frozen=True)
class TokenResponse:
    """What a code exchange yields; `refresh_token` is None when Google sends none."""

    access_token: str
    refresh_token: str | None
    scopes: frozenset[str]
    expires_in: int
    #: The OpenID Connect id_token, when the request asked for `openid` (unverified here).
    id_token: str | None = None


def _token_response(body: dict[str, Any]) -> TokenResponse:
    access, scope = body.get("access_token"), body.get("scope")
    if not isinstance(access, str) or not access or not isinstance(scope, str | list):
        raise UnknownGoogleError("token response lacks access_token or scope")
    refresh, identity = body.get("refresh_token"), body.get("id_token")
    expires = body.get("expires_in")
    return TokenResponse(access, refresh if isinstance(refresh, str) and refresh else None,
                         parse(scope), expires if isinstance(expires, int) else 0,
                         identity if isinstance(identity, str) and identity else None)


async def exchange_code(
    client: OAuthClient, session: aiohttp.ClientSession, *, code: str, redirect_uri: str,
    verifier: str,
) -> TokenResponse:
    """Trade an authorisation code for tokens (`grant_type=authorization_code`, PKCE).

    A refused code (expired, used, wrong verifier) raises RevokedError, as Google answers
    `invalid_grant` for all of them.
    """
    body = await oauth.token_request(client, session, {
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
        "code_verifier": verifier})
    return _token_response(body)
