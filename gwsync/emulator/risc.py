"""Cross-Account Protection as Google runs it: a discovery document and signed events.

Google signs Security Event Tokens (RS256, `kid` in the header, no `exp`) with the key
set it publishes at `https://www.googleapis.com/oauth2/v3/certs`, the `jwks_uri` of its
RISC discovery document; the emulator does the same with `gwsync.emulator.signing`, and
a test or a person can have it deliver an event to a receiver, as Google's push does.

Google's event types (docs/google.md §3): sessions-revoked, tokens-revoked,
token-revoked, account-disabled, account-enabled, account-credential-change-required and
verification. Google sends events only about users who granted the client `profile` or
`email`; the emulator signs whatever it is asked to, so tests can try every type.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any

import aiohttp
from aiohttp import web

from gwsync.emulator import signing
from gwsync.emulator.admin import PREFIX
from gwsync.emulator.state import STATE_KEY, EmulatorState

EVENT = "https://schemas.openid.net/secevent/"


def security_event(issuer: str, audience: str, events: dict[str, Any], jti: str | None = None,
                   iat: int | None = None) -> str:
    """A SET as Google signs it: `iss`, `aud`, `iat`, `jti`, `events`, and no `exp`."""
    return signing.sign({"iss": issuer, "aud": audience,
                         "iat": int(time.time()) if iat is None else iat,
                         "jti": jti or secrets.token_hex(16), "events": events})


def issuer(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}/"


def event_for(kind: str, subject: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """One event of `kind` (e.g. `oauth/event-type/token-revoked`) about `subject`."""
    return {EVENT + kind: {"subject": subject, **extra}}


def subject_for_user(state: EmulatorState, user_key: str) -> dict[str, Any]:
    return {"subject_type": "iss-sub", "iss": "https://accounts.google.com/",
            "sub": state.user(user_key).sub}


def subject_for_token(refresh_token: str, alg: str = "prefix") -> dict[str, Any]:
    value = (refresh_token[:16] if alg == "prefix" else base64.b64encode(
        hashlib.sha512(hashlib.sha512(refresh_token.encode()).digest()).digest()).decode())
    return {"subject_type": "oauth_token", "token_type": "refresh_token",
            "token_identifier_alg": alg, "token": value}


async def configuration(request: web.Request) -> web.Response:
    origin = issuer(request)
    return web.json_response({
        "issuer": origin, "jwks_uri": f"{origin}{signing.JWKS_PATH.lstrip('/')}",
        "delivery_methods_supported": [EVENT + "risc/delivery-method/push"],
    })


async def send(request: web.Request) -> web.Response:
    """Admin: sign an event and POST it to `receiver` as Google's push delivery would."""
    body = await request.json()
    state = request.app[STATE_KEY]
    subject = (subject_for_user(state, body["user"]) if "user" in body
               else subject_for_token(body["refresh_token"], body.get("alg", "prefix")))
    extra = {k: body[k] for k in ("reason", "state") if k in body}
    token = security_event(issuer(request), body.get("audience", state.client_id),
                           event_for(body["event"], subject, **extra), body.get("jti"),
                           body.get("iat"))
    async with aiohttp.ClientSession() as http, http.post(
        body["receiver"], data=token, headers={"Content-Type": "application/secevent+jwt"},
    ) as resp:
        return web.json_response({"status": resp.status, "body": await resp.text()})


def setup(app: web.Application) -> None:
    app.router.add_get("/.well-known/risc-configuration", configuration)
    app.router.add_post(PREFIX + "/risc/send", send)
