"""Google's OAuth token and revocation endpoints (``oauth2.googleapis.com``).

Paths are Google's own (``/token``, ``/revoke``) so production code only swaps the
origin. Bodies are form-encoded like Google's; JSON bodies are accepted too, as
Google's token endpoint does.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from gwsync.emulator.consent import code_grant
from gwsync.emulator.errors import OAuthError
from gwsync.emulator.state import STATE_KEY, EmulatorState

#: Google never caches token responses; neither do we.
_NO_STORE = {
    "Cache-Control": "no-cache, no-store, max-age=0, must-revalidate",
    "Pragma": "no-cache",
}

GrantHandler = Callable[[EmulatorState, Mapping[str, str]], dict[str, Any]]


async def _params(request: web.Request) -> dict[str, str]:
    """Query string, then form or JSON body (body wins), as plain strings."""
    params = dict(request.query)
    if request.content_type == "application/json":
        body = await request.json()
        params.update({k: str(v) for k, v in body.items()} if isinstance(body, dict) else {})
    else:
        params.update({k: str(v) for k, v in (await request.post()).items()})
    return params


def _basic_client(request: web.Request) -> tuple[str | None, str | None]:
    """Client credentials from HTTP Basic auth (``client_secret_basic``), if present."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        client_id, _, secret = base64.b64decode(value).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    return client_id, secret


def _refresh_grant(state: EmulatorState, params: Mapping[str, str]) -> dict[str, Any]:
    """``grant_type=refresh_token``: mint an access token, narrowed by ``scope`` if given."""
    refresh_token = params.get("refresh_token")
    if not refresh_token:
        raise OAuthError(400, "invalid_request", "Missing required parameter: refresh_token")
    return state.refresh(
        refresh_token, params.get("client_id"), params.get("client_secret"), params.get("scope")
    )


#: Supported grant types; ``authorization_code`` follows the consent screen (consent.py).
GRANT_TYPES: dict[str, GrantHandler] = {"refresh_token": _refresh_grant,
                                        "authorization_code": code_grant}


async def token(request: web.Request) -> web.Response:
    """``POST /token``: dispatch on ``grant_type``."""
    params = await _params(request)
    basic_id, basic_secret = _basic_client(request)
    params.setdefault("client_id", basic_id or "")
    params.setdefault("client_secret", basic_secret or "")
    grant_type = params.get("grant_type", "")
    handler = GRANT_TYPES.get(grant_type)
    if handler is None:
        raise OAuthError(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")
    return web.json_response(handler(request.app[STATE_KEY], params), headers=_NO_STORE)


async def revoke(request: web.Request) -> web.Response:
    """``POST /revoke``: ``token`` in the query string or form body; ``{}`` on success."""
    params = await _params(request)
    token_value = params.get("token")
    if not token_value:
        # Google's exact reply to a missing token is not documented.
        raise OAuthError(400, "invalid_request", "Bad Request")
    request.app[STATE_KEY].revoke_token(token_value)
    return web.json_response({})


def setup(app: web.Application) -> None:
    """Register the OAuth routes."""
    app.router.add_post("/token", token)
    app.router.add_post("/revoke", revoke)
