"""The OAuth `state`: a signed, expiring, single-use handle on one consent flow.

The value Google echoes back is only a random nonce, its expiry and an HMAC over both
(keyed by an HKDF subkey of the pseudonym key, never a master key itself). What
the flow needs — user, features, redirect URI, PKCE verifier — stays on the server, in
Redis under `<prefix>:oauth:<nonce>`, sealed under the keyring (no personal data in
clear) and with a TTL; it is taken with GETDEL, so a replayed state finds nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from redis.asyncio import Redis

from gwsync.core.keyring import Keyring
from gwsync.storage import crypto

#: How long a consent flow may take, start to callback.
STATE_TTL_S = 600


class InvalidStateError(Exception):
    """The state is malformed, forged, expired, or was already used."""


@dataclass(frozen=True)
class Flow:
    """What the callback needs to finish one consent flow."""

    user_id: str
    features: tuple[str, ...]
    scopes: tuple[str, ...]
    redirect_uri: str
    verifier: str
    #: The account to merge into, when the user already had one at start.
    account_id: str | None = None


def signing_key(ring: Keyring) -> bytes:
    """A key for state HMACs only, so a leaked state key reveals nothing of another key.

    An HKDF subkey of the pseudonym key, which a master key rotation leaves unchanged,
    so a consent begun before a rotation still finishes after it."""
    return ring.pseudonyms.subkey("oauth-state")


def _mac(key: bytes, nonce: str, expires: int) -> str:
    digest = hmac.new(key, f"{nonce}.{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(key: bytes, nonce: str, expires: int) -> str:
    return f"{nonce}.{expires}.{_mac(key, nonce, expires)}"


def verify(key: bytes, state: str, now: float) -> str:
    """The nonce of a genuine, unexpired state; raises InvalidStateError otherwise."""
    parts = state.split(".")
    if len(parts) != 3 or not parts[1].isdigit() or len(state) > 200:
        raise InvalidStateError("malformed state")
    nonce, expires, mac = parts[0], int(parts[1]), parts[2]
    if not hmac.compare_digest(mac.encode(), _mac(key, nonce, expires).encode()):
        raise InvalidStateError("state signature does not match")
    if expires < now:
        raise InvalidStateError("state expired")
    return nonce


class FlowStore:
    """Begin a flow (→ its state) and take it back exactly once."""

    def __init__(self, redis: Redis, prefix: str, ring: Keyring, *,
                 ttl_s: int = STATE_TTL_S, clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ring = ring
        self._ttl_s = ttl_s
        self._clock = clock

    @property
    def _key(self) -> bytes:
        """Read at use, not at start: a web process started before `gwsync migrate` gets
        its pseudonym key only once the database has it (storage/pseudonyms.py)."""
        return signing_key(self._ring)

    def redis_key(self, nonce: str) -> str:
        return f"{self._prefix}:oauth:{nonce}"

    async def begin(self, flow: Flow) -> str:
        nonce = secrets.token_urlsafe(24)
        sealed = crypto.seal(self._ring, f"oauth:{nonce}", json.dumps(asdict(flow)).encode())
        await self._redis.set(self.redis_key(nonce), sealed, ex=self._ttl_s)
        return sign(self._key, nonce, int(self._clock()) + self._ttl_s)

    async def take(self, state: str) -> Flow:
        """The flow behind `state`, removed so it can never be taken again."""
        nonce = verify(self._key, state, self._clock())
        sealed = await self._redis.getdel(self.redis_key(nonce))
        if sealed is None:
            raise InvalidStateError("state unknown or already used")
        try:
            data = json.loads(crypto.unseal(self._ring, f"oauth:{nonce}", sealed))
        except (crypto.DecryptionError, ValueError):
            raise InvalidStateError("stored flow does not open") from None
        return Flow(**{**data, "features": tuple(data["features"]),
                       "scopes": tuple(data["scopes"])})
