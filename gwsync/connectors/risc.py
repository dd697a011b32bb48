"""Cross-Account Protection (RISC): verify Google's security event tokens and read them.

A SET is a JWT signed by Google: its key is found by `kid` in the JWKS named by the RISC
discovery document; `iss` must be that document's issuer and `aud` our client id. SETs
describe past events and carry no `exp`, so expiry is not enforced (Google's guide); an
`iat` far in the future is refused (no event is reported before it happens), one a few
minutes ahead is clock skew.

Google's keys are cached. An unknown `kid` may mean Google rotated them, so it triggers
one refresh — but at most one per `min_refresh_s` (a flood of made-up kids must not
make us hammer Google; after a failed fetch, one per `FAILED_RETRY_S`), and concurrent
requests share it (single-flight). When the keys cannot be fetched at all,
`KeysUnavailableError`: the receiver answers 503 and Google delivers again, rather than
a 400 that would drop a genuine event.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt

from gwsync.connectors.endpoints import Endpoints

EVENT_PREFIX = "https://schemas.openid.net/secevent/"
SESSIONS_REVOKED = EVENT_PREFIX + "risc/event-type/sessions-revoked"
TOKENS_REVOKED = EVENT_PREFIX + "oauth/event-type/tokens-revoked"
TOKEN_REVOKED = EVENT_PREFIX + "oauth/event-type/token-revoked"
ACCOUNT_DISABLED = EVENT_PREFIX + "risc/event-type/account-disabled"
ACCOUNT_ENABLED = EVENT_PREFIX + "risc/event-type/account-enabled"
CREDENTIAL_CHANGE_REQUIRED = EVENT_PREFIX + "risc/event-type/account-credential-change-required"
VERIFICATION = EVENT_PREFIX + "risc/event-type/verification"
#: Events after which the user's Google data must go: the grant is dead or the account is.
ERASING_EVENTS = frozenset({TOKENS_REVOKED, TOKEN_REVOKED, ACCOUNT_DISABLED})
#: Google's other event types: recorded (with the accounts they name) and logged. gwsync
#: signs nobody in, so it has no session to end (sessions-revoked), nothing it disabled
#: to re-enable (account-enabled: account-disabled already erased), and watches for
#: suspicious activity (account-credential-change-required) by what the grant does next.
RECORDED_EVENTS = frozenset({SESSIONS_REVOKED, ACCOUNT_ENABLED, CREDENTIAL_CHANGE_REQUIRED,
                             VERIFICATION})
GOOGLE_EVENTS = ERASING_EVENTS | RECORDED_EVENTS
CACHE_S = 3600.0
#: Unknown kids refresh Google's keys at most this often.
MIN_REFRESH_S = 300.0
#: After a failed fetch, the next may come this soon (Google's retry should find the keys).
FAILED_RETRY_S = 10.0
#: How far in the future an `iat` may be (clock skew) before the token is refused.
MAX_IAT_SKEW_S = 300


class InvalidSecurityEvent(ValueError):
    """The token is malformed, unsigned by a known key, or not addressed to us.

    `err` is the RFC 8935 error code Google expects back with the 400.
    """

    def __init__(self, description: str, err: str = "invalid_request") -> None:
        super().__init__(description)
        self.err = err


class KeysUnavailableError(RuntimeError):
    """Google's discovery document or keys could not be fetched: try the event later."""


@dataclass(frozen=True)
class SecurityEvent:
    jti: str
    events: dict[str, dict[str, Any]]

    @property
    def jti_hash(self) -> str:
        return hashlib.sha256(self.jti.encode()).hexdigest()


@dataclass
class RiscVerifier:
    """Verifies SETs against Google's keys, cached and refreshed as the module says."""

    endpoints: Endpoints
    audiences: tuple[str, ...]
    http: aiohttp.ClientSession
    min_refresh_s: float = MIN_REFRESH_S
    clock: Callable[[], float] = time.monotonic
    _config: dict[str, Any] | None = None
    _keys: jwt.PyJWKSet | None = None
    _fetched_at: float = 0.0
    _attempted_at: float | None = None
    _attempts: int = 0
    _failed: bool = False
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def _get_json(self, url: str) -> dict[str, Any]:
        async with self.http.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            resp.raise_for_status()
            body = await resp.json(content_type=None)
        if not isinstance(body, dict):
            raise ValueError("Google answered something other than an object")
        return body

    async def _fetch(self) -> None:
        try:
            config = await self._get_json(self.endpoints.risc_configuration)
            keys = jwt.PyJWKSet.from_dict(await self._get_json(str(config["jwks_uri"])))
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError,
                jwt.PyJWTError) as exc:
            self._failed = True
            raise KeysUnavailableError(type(exc).__name__) from None
        self._config, self._keys, self._failed = config, keys, False
        self._fetched_at = self.clock()

    async def _refresh(self) -> None:
        """Fetch the keys unless another request just did or one did too recently."""
        seen = self._attempts
        async with self._lock:
            if self._attempts != seen:  # a concurrent request fetched (or failed) for us
                return
            now = self.clock()
            interval = FAILED_RETRY_S if self._failed else self.min_refresh_s
            if self._attempted_at is not None and now - self._attempted_at < interval:
                return
            self._attempts += 1
            self._attempted_at = now
            await self._fetch()

    def _find(self, kid: str) -> Any:
        for key in self._keys.keys if self._keys is not None else ():
            if key.key_id == kid:
                return key.key
        return None

    async def _key(self, kid: str) -> Any:
        if self._keys is None or self.clock() - self._fetched_at > CACHE_S:
            try:
                await self._refresh()
            except KeysUnavailableError:
                if self._keys is None:
                    raise  # stale keys still verify what they signed
        key = self._find(kid)
        if key is None:
            await self._refresh()  # Google may have rotated its keys
            key = self._find(kid)
        if key is not None:
            return key
        if self._keys is None or self._failed:
            raise KeysUnavailableError("Google's keys could not be fetched")
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
                issuer=self._config.get("issuer"), leeway=MAX_IAT_SKEW_S,
                options={"verify_exp": False, "verify_iat": True,
                         "require": ["iss", "aud", "iat", "jti"]},
            )
        except jwt.PyJWTError as exc:  # an `iat` past the leeway: ImmatureSignatureError
            raise InvalidSecurityEvent(type(exc).__name__) from exc
        events = claims.get("events")
        if not isinstance(events, dict) or not all(isinstance(v, dict) for v in events.values()):
            raise InvalidSecurityEvent("no events")
        return SecurityEvent(str(claims["jti"]), events)
