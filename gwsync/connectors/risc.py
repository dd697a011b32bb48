"""Cross-Account Protection (RISC): verify Google's security event tokens and read them.

A SET is a JWT signed by Google: its key is found by `kid` in the JWKS named by the RISC
discovery document; `iss` must be that document's issuer and `aud` our client id. SETs
describe past events and carry no `exp`, so expiry is not enforced (Google's guide).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt

from gwsync.connectors.endpoints import Endpoints

EVENT_PREFIX = "https://schemas.openid.net/secevent/"
TOKENS_REVOKED = EVENT_PREFIX + "oauth/event-type/tokens-revoked"
TOKEN_REVOKED = EVENT_PREFIX + "oauth/event-type/token-revoked"
ACCOUNT_DISABLED = EVENT_PREFIX + "risc/event-type/account-disabled"
ACCOUNT_PURGED = EVENT_PREFIX + "risc/event-type/account-purged"
VERIFICATION = EVENT_PREFIX + "risc/event-type/verification"
#: Events after which the user's Google data must go: the grant is dead or the account is.
ERASING_EVENTS = frozenset({TOKENS_REVOKED, TOKEN_REVOKED, ACCOUNT_DISABLED, ACCOUNT_PURGED})
CACHE_S = 3600.0


class InvalidSecurityEvent(ValueError):
    """The token is malformed, unsigned by a known key, or not addressed to us.

    `err` is the RFC 8935 error code Google expects back with the 400.
    """

    def __init__(self, description: str, err: str = "invalid_request") -> None:
        super().__init__(description)
        self.err = err


@dataclass(frozen=True)
class SecurityEvent:
    jti: str
    events: dict[str, dict[str, Any]]

    @property
    def jti_hash(self) -> str:
        return hashlib.sha256(self.jti.encode()).hexdigest()


@dataclass
class RiscVerifier:
    """Verifies SETs; caches Google's discovery document and keys, refetching on a new kid."""

    endpoints: Endpoints
    audiences: tuple[str, ...]
    http: aiohttp.ClientSession
    _config: dict[str, Any] | None = None
    _keys: jwt.PyJWKSet | None = None
    _fetched_at: float = field(default=0.0)

    async def _get_json(self, url: str) -> dict[str, Any]:
        async with self.http.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            resp.raise_for_status()
            body = await resp.json(content_type=None)
        if not isinstance(body, dict):
            raise InvalidSecurityEvent("RISC discovery answered something other than an object")
        return body

    async def _refresh(self) -> None:
        self._config = await self._get_json(self.endpoints.risc_configuration)
        self._keys = jwt.PyJWKSet.from_dict(await self._get_json(self._config["jwks_uri"]))
        self._fetched_at = time.monotonic()

    async def _key(self, kid: str) -> Any:
        if self._keys is None or time.monotonic() - self._fetched_at > CACHE_S:
            await self._refresh()
        for attempt in range(2):
            assert self._keys is not None
            for key in self._keys.keys:
                if key.key_id == kid:
                    return key.key
            if attempt == 0:
                await self._refresh()  # Google may have rotated its keys
        raise InvalidSecurityEvent("unknown key id", err="invalid_key")

    async def verify(self, token: str) -> SecurityEvent:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise InvalidSecurityEvent("not a JWT") from exc
        if not isinstance(kid, str):
            raise InvalidSecurityEvent("no key id", err="invalid_key")
        key = await self._key(kid)
        assert self._config is not None
        try:
            claims = jwt.decode(
                token, key=key, algorithms=["RS256"], audience=list(self.audiences),
                issuer=self._config.get("issuer"),
                options={"verify_exp": False, "require": ["iss", "aud", "iat", "jti"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidSecurityEvent(type(exc).__name__) from exc
        events = claims.get("events")
        if not isinstance(events, dict) or not all(isinstance(v, dict) for v in events.values()):
            raise InvalidSecurityEvent("no events")
        return SecurityEvent(str(claims["jti"]), events)
