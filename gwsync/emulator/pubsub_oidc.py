"""The ID token Pub/Sub attaches to a push, signed with Google's (the emulator's) keys.

A push subscription with an `oidcToken` makes Pub/Sub send `Authorization: Bearer <ID
token>` with each push: RS256 under Google's signing keys (`gwsync.emulator.signing`,
published at `/oauth2/v1/certs` and `/oauth2/v3/certs`), `iss` `https://accounts.google.com`,
`aud` the configured audience (the push endpoint by default), and the service account's
`email` with `email_verified` (Pub/Sub's "Authenticate push subscriptions" guide).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from gwsync.emulator import signing

ISSUER = "https://accounts.google.com"
TOKEN_LIFETIME_S = 3600


def claims_for(audience: str, email: str, lifetime_s: int = TOKEN_LIFETIME_S) -> dict[str, Any]:
    """The claims of a push's ID token for the service account `email`."""
    now = int(time.time())
    return {"iss": ISSUER, "aud": audience, "azp": secrets.token_hex(10), "sub": _sub(email),
            "email": email, "email_verified": True, "iat": now, "exp": now + lifetime_s}


def oidc_token(audience: str, email: str, lifetime_s: int = TOKEN_LIFETIME_S) -> str:
    """A signed ID token, as Pub/Sub push sends it."""
    return signing.sign(claims_for(audience, email, lifetime_s))


def _sub(email: str) -> str:
    """A stable numeric id for a service account (Google's `sub` of one is numeric)."""
    return str(int(hashlib.sha256(email.encode()).hexdigest()[:20], 16))
