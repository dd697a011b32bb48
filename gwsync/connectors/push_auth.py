"""Pub/Sub push, authenticated as Google does it: the OIDC token in `Authorization`.

A push subscription with an `oidcToken` makes Pub/Sub attach an ID token signed by
Google (`iss` accounts.google.com, `aud` the configured audience, `email` the service
account the subscription names, `email_verified`). Pub/Sub's guide verifies it with
google-auth; so do we (`google.oauth2.id_token.verify_token`), against Google's
`/oauth2/v1/certs` (or the same path at `GWSYNC_GOOGLE_BASE_URL`), whose keys are cached
for a few minutes so a burst of pushes does not fetch them each time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

import google_auth_httplib2
import httplib2
from google.auth import exceptions as auth_exceptions
from google.auth import transport
from google.oauth2 import id_token

from gwsync.connectors.identity import GOOGLE_ISSUERS

#: How long fetched keys are used before being fetched again.
CERTS_TTL_S = 300.0
CLOCK_SKEW_S = 10


class PushAuthError(Exception):
    """The push is not from the configured Pub/Sub subscription: HTTP status and error."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status, self.error = status, error


class _CachedCerts(transport.Request):
    """google-auth's transport, remembering the certificate answer for CERTS_TTL_S."""

    def __init__(self, timeout_s: float) -> None:
        self._inner = google_auth_httplib2.Request(httplib2.Http(timeout=timeout_s))
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._cached: tuple[float, Any] | None = None

    def __call__(self, url: str, method: str = "GET", body: Any = None,
                 headers: Any = None, timeout: Any = None, **kwargs: Any) -> Any:
        with self._lock:  # single-flight (and httplib2 is not thread-safe)
            if self._cached is not None and time.monotonic() - self._cached[0] < CERTS_TTL_S:
                return self._cached[1]
            response = self._inner(url, method=method, body=body, headers=headers,
                                   timeout=self._timeout_s, **kwargs)
            if response.status == 200:
                self._cached = (time.monotonic(), response)
            return response


@dataclass
class PushVerifier:
    """Checks that a push carries an ID token Google signed for our subscription."""

    audience: str
    service_account_email: str
    certs_url: str
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        self._request = _CachedCerts(self.timeout_s)

    async def verify(self, authorization: str) -> None:
        """Return if `authorization` is `Bearer <valid token>`; raise PushAuthError."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise PushAuthError(401, "missing_push_oidc_token")
        claims = await asyncio.to_thread(self._claims, token.strip())
        if claims.get("iss") not in GOOGLE_ISSUERS or "exp" not in claims:
            raise PushAuthError(401, "invalid_push_oidc_token")
        if claims.get("email") != self.service_account_email \
                or claims.get("email_verified") is not True:
            raise PushAuthError(403, "wrong_push_sender")

    def _claims(self, token: str) -> dict[str, Any]:
        try:
            return dict(id_token.verify_token(token, self._request, audience=self.audience,
                                              certs_url=self.certs_url,
                                              clock_skew_in_seconds=CLOCK_SKEW_S))
        except (auth_exceptions.TransportError, OSError, httplib2.HttpLib2Error):
            raise PushAuthError(503, "push_keys_unavailable") from None
        except (ValueError, auth_exceptions.GoogleAuthError):
            # A bad signature, an unknown key id, a wrong audience, an expired or
            # malformed token: google-auth raises ValueError (or a subclass) for each.
            raise PushAuthError(401, "invalid_push_oidc_token") from None
