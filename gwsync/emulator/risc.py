"""Cross-Account Protection as Google runs it: a discovery document, a JWKS, signed events.

The emulator holds an RSA key, publishes it at the `jwks_uri` of its RISC discovery
document, and signs Security Event Tokens (RS256, `kid` in the header, no `exp`) that a
test or a person can deliver to a receiver — as Google's push delivery does.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from gwsync.emulator.admin import PREFIX
from gwsync.emulator.state import STATE_KEY, EmulatorState

EVENT = "https://schemas.openid.net/secevent/"
#: Google's issuer in its RISC discovery document; the emulator answers with its own origin.
KEY_ID_BYTES = 8


class RiscSigner:
    """The emulator's signing key and the events it has signed."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(KEY_ID_BYTES)

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def sign(self, issuer: str, audience: str, events: dict[str, Any],
             jti: str | None = None) -> str:
        claims = {"iss": issuer, "aud": audience, "iat": int(time.time()),
                  "jti": jti or secrets.token_hex(16), "events": events}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})


SIGNER = web.AppKey("risc_signer", RiscSigner)


def issuer(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}/"


def event_for(kind: str, subject: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """One event of `kind` (e.g. `oauth/event-type/token-revoked`) about `subject`."""
    return {EVENT + kind: {"subject": subject, **extra}}


def subject_for_user(state: EmulatorState, user_key: str) -> dict[str, Any]:
    return {"subject_type": "iss-sub", "iss": "https://accounts.google.com/",
            "sub": state.user(user_key).sub}


def subject_for_token(refresh_token: str, alg: str = "prefix") -> dict[str, Any]:
    import base64
    import hashlib

    value = (refresh_token[:16] if alg == "prefix" else base64.b64encode(
        hashlib.sha512(hashlib.sha512(refresh_token.encode()).digest()).digest()).decode())
    return {"subject_type": "oauth_token", "token_type": "refresh_token",
            "token_identifier_alg": alg, "token": value}


async def configuration(request: web.Request) -> web.Response:
    origin = issuer(request)
    return web.json_response({
        "issuer": origin, "jwks_uri": f"{origin}risc/jwks",
        "delivery_methods_supported": [EVENT + "risc/delivery-method/push"],
    })


async def jwks(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIGNER].jwks())


async def send(request: web.Request) -> web.Response:
    """Admin: sign an event and POST it to `receiver` as Google's push delivery would."""
    body = await request.json()
    state = request.app[STATE_KEY]
    subject = (subject_for_user(state, body["user"]) if "user" in body
               else subject_for_token(body["refresh_token"], body.get("alg", "prefix")))
    token = request.app[SIGNER].sign(issuer(request), body.get("audience", state.client_id),
                                     event_for(body["event"], subject), body.get("jti"))
    async with aiohttp.ClientSession() as http, http.post(
        body["receiver"], data=token, headers={"Content-Type": "application/secevent+jwt"},
    ) as resp:
        return web.json_response({"status": resp.status, "body": await resp.text()})


def setup(app: web.Application) -> None:
    app[SIGNER] = RiscSigner()
    app.router.add_get("/.well-known/risc-configuration", configuration)
    app.router.add_get("/risc/jwks", jwks)
    app.router.add_post(PREFIX + "/risc/send", send)
