"""Bearer-token authorisation of API calls, against the discovery documents' scopes.

The scope that authorises a method is read from the same bundled discovery documents
that gwsync uses to compute each feature's scope (``gwsync.core.discovery``), so
the emulator cannot drift from the production scope table. Each route declares its
discovery method id; :func:`google_api` checks the token, logs the call and lets the
handler run.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from gwsync.core import discovery
from gwsync.emulator import quota
from gwsync.emulator.errors import GoogleApiError
from gwsync.emulator.grants import BearerToken
from gwsync.emulator.state import STATE_KEY

#: Google's real message goes on with " See https://developers.google.com/identity/sign-in/
#: web/devconsole-project."; clients match on the first sentences, which are kept verbatim.
UNAUTHENTICATED_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential."
)
INSUFFICIENT_SCOPE_MESSAGE = "Request had insufficient authentication scopes."
#: Google's front end sends these challenges (observed, not documented).
_REALM = 'Bearer realm="https://accounts.google.com/"'


@dataclass(frozen=True)
class ApiMethod:
    """A Google API method as the emulator serves it.

    ``rpc`` and ``service`` appear in the 403 ``ErrorInfo`` metadata; they are not in
    the discovery document, so each route names them.
    """

    id: str
    rpc: str
    service: str

    @property
    def scopes(self) -> frozenset[str]:
        """Every scope that authorises this method, per the discovery document."""
        return discovery.method_scopes(self.id)


def unauthenticated() -> GoogleApiError:
    """401 for a missing, unknown, expired or revoked bearer token."""
    return GoogleApiError(
        401,
        UNAUTHENTICATED_MESSAGE,
        "UNAUTHENTICATED",
        headers={"WWW-Authenticate": _REALM},
    )


def insufficient_scope(method: ApiMethod) -> GoogleApiError:
    """403 for a valid token none of whose scopes authorises ``method``."""
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
        "domain": "googleapis.com",
        "metadata": {"service": method.service, "method": method.rpc},
    }
    scope_list = " ".join(sorted(method.scopes))
    return GoogleApiError(
        403,
        INSUFFICIENT_SCOPE_MESSAGE,
        "PERMISSION_DENIED",
        details=[info],
        headers={"WWW-Authenticate": f'{_REALM}, error="insufficient_scope", scope="{scope_list}"'},
    )


def bearer_token(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, if any."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def authorize(request: web.Request, method: ApiMethod) -> BearerToken:
    """The caller's access token if it authorises ``method``; otherwise raise 401/403."""
    raw = bearer_token(request)
    token = request.app[STATE_KEY].authenticate(raw) if raw else None
    if token is None:
        raise unauthenticated()
    if not token.scopes & method.scopes:
        raise insufficient_scope(method)
    return token


ApiHandler = Callable[[web.Request, BearerToken], Awaitable[web.StreamResponse]]
Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


def google_api(method: ApiMethod) -> Callable[[ApiHandler], Route]:
    """Decorate a handler as the implementation of ``method``.

    The handler runs only for an authorised caller and receives its token; the call is
    logged with the status it produced — including API errors the handler raised — so
    tests can assert which scope each call carried.
    """

    def decorate(handler: ApiHandler) -> Route:
        @functools.wraps(handler)
        async def route(request: web.Request) -> web.StreamResponse:
            token = authorize(request, method)
            state = request.app[STATE_KEY]
            try:
                quota.charge(state, method.id, token.user)
                response = await handler(request, token)
            except GoogleApiError as exc:
                state.record_call(method.id, token, exc.code)
                raise
            state.record_call(method.id, token, response.status)
            return response

        return route

    return decorate
