"""Which Google account a consent came from: the verified `sub` of its id_token.

A code exchange that asked for `openid` returns an id_token. Its `sub` is the Google
account's stable id; it is the only thing that tells a user who picked another account
in Google's chooser from the first one (docs/google.md §9.6). google-auth verifies it:
the RS256 signature against Google's published certificates (`Endpoints.certs`, which
follows `GWSYNC_GOOGLE_BASE_URL`), `aud` our client id, `exp` and `iat`; the issuer is
checked here as `verify_oauth2_token` does (it cannot take another certificates URL).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import google_auth_httplib2
import httplib2
from google.auth import exceptions as auth_exceptions
from google.oauth2 import id_token

from gwsync.connectors.errors import TemporaryError
from gwsync.connectors.oauth import OAuthClient

#: The `iss` values Google's id_tokens carry (google-auth's own list).
GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
#: Tolerated difference between Google's clock and ours.
CLOCK_SKEW_S = 30
MAX_SUB_LENGTH = 255


class IdentityError(ValueError):
    """The id_token is not one Google issued to us, now, about a Google account."""


def _verify_blocking(client: OAuthClient, token: str) -> Mapping[str, Any]:
    http = httplib2.Http(timeout=client.timeout_s)
    try:
        return id_token.verify_token(
            token, google_auth_httplib2.Request(http), audience=client.client_id,
            certs_url=client.endpoints.certs, clock_skew_in_seconds=CLOCK_SKEW_S)
    finally:
        http.close()


async def verified_sub(client: OAuthClient, token: str) -> str:
    """The `sub` of a genuine id_token; IdentityError if it is not one, TemporaryError
    when Google's certificates cannot be fetched."""
    try:
        claims = await asyncio.to_thread(_verify_blocking, client, token)
    except auth_exceptions.TransportError:
        raise TemporaryError("Google's signing certificates could not be fetched") from None
    except (OSError, httplib2.HttpLib2Error) as exc:
        raise TemporaryError(f"certificates unreachable ({type(exc).__name__})") from None
    except (ValueError, auth_exceptions.GoogleAuthError) as exc:
        raise IdentityError(f"the id_token did not verify ({type(exc).__name__})") from None
    if claims.get("iss") not in GOOGLE_ISSUERS:
        raise IdentityError("the id_token was not issued by Google")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not 0 < len(sub) <= MAX_SUB_LENGTH:
        raise IdentityError("the id_token names no Google account")
    return sub
