"""Google's token-signing keys: one RSA key set signs id_tokens, security event tokens and
Pub/Sub push tokens, published where Google publishes it.

Google signs every JWT it issues (OpenID Connect id_tokens, Cross-Account Protection
events, Pub/Sub push OIDC tokens) with the keys of one rotating set, served in two forms:
`https://www.googleapis.com/oauth2/v3/certs` (a JWKS, also the `jwks_uri` of Google's
OpenID and RISC discovery documents) and `https://www.googleapis.com/oauth2/v1/certs`
(`{kid: PEM X.509 certificate}`, what google-auth's `verify_oauth2_token` reads). The
emulator holds one such key for the whole process — as Google holds one set for every
client — and serves both forms at the same paths under its origin.

Public API: `sign(claims) -> str` (RS256, `kid` in the header), `jwks()`, `pem_certs()`,
`setup(app)` for the two routes, and `KeySet` for a test that needs a key Google never
published (a forger).
"""

from __future__ import annotations

import datetime
import json
import secrets
from functools import cache
from typing import Any

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

JWKS_PATH = "/oauth2/v3/certs"
PEM_CERTS_PATH = "/oauth2/v1/certs"
KEY_ID_BYTES = 20
#: Google's certificates are valid for about two weeks; the emulator's for a year.
CERT_DAYS = 365


class KeySet:
    """One RSA signing key, its `kid`, and a self-signed certificate for its public half."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(KEY_ID_BYTES)
        self._cert: str | None = None

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        """`claims` as an RS256 JWT naming this key's `kid`, as Google signs its tokens."""
        return jwt.encode(claims, self.key, algorithm="RS256",
                          headers={**(headers or {}), "kid": self.kid})

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def pem_certs(self) -> dict[str, str]:
        if self._cert is None:
            self._cert = _certificate(self.key).public_bytes(
                serialization.Encoding.PEM).decode()
        return {self.kid: self._cert}


def _certificate(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "accounts.google.com")])
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .sign(key, hashes.SHA256()))


@cache
def keys() -> KeySet:
    """The process's key set, made on first use (a 2048-bit key takes a moment)."""
    return KeySet()


def sign(claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
    """`claims` signed with Google's (the emulator's) current key."""
    return keys().sign(claims, headers)


def jwks() -> dict[str, Any]:
    return keys().jwks()


def pem_certs() -> dict[str, str]:
    return keys().pem_certs()


async def _jwks(request: web.Request) -> web.Response:
    return web.json_response(jwks(), headers={"Cache-Control": "public, max-age=3600"})


async def _pem_certs(request: web.Request) -> web.Response:
    return web.json_response(pem_certs(), headers={"Cache-Control": "public, max-age=3600"})


def setup(app: web.Application) -> None:
    app.router.add_get(JWKS_PATH, _jwks)
    app.router.add_get(PEM_CERTS_PATH, _pem_certs)
