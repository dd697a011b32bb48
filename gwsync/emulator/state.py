"""The emulator's in-memory world: users, grants, tokens, the call log and faults.

Everything the HTTP routes do is a method here, so in-process tests can set up and
inspect the emulator without HTTP, and the routes stay thin. The state is plain
Python and not thread-safe: mutate it from the event loop that serves it.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from gwsync.emulator.contacts import ContactBook
from gwsync.emulator.errors import OAuthError, UnknownUserError

if TYPE_CHECKING:
    from gwsync.emulator.quota import QuotaPolicy

DEFAULT_CLIENT_ID = "emulator-client-id"
DEFAULT_CLIENT_SECRET = "emulator-client-secret"
#: Google's access tokens live an hour; token responses say 3599.
ACCESS_TOKEN_TTL = 3599
#: "Sync tokens expire 7 days after the full sync" (people.connections.list reference).
SYNC_TOKEN_TTL = 7 * 24 * 3600
#: Contact ids look like Google's 19-digit ``people/c…`` numbers, allocated deterministically.
_FIRST_CONTACT_ID = 7_100_000_000_000_000_001


T = TypeVar("T")

@dataclass
class User:
    """A Google account: its key (the email unless given), a stable ``sub`` and contacts.

    ``incarnation`` changes when the user is replaced, so tokens of the old incarnation
    (sync and page tokens) stop working instead of leaking into the new one.
    """

    key: str
    email: str
    sub: str
    incarnation: str
    contacts: ContactBook


@dataclass
class Grant:
    """One consent of one user to the client: a refresh token and the scopes it covers."""

    id: str
    user: str
    client_id: str
    scopes: frozenset[str]
    refresh_token: str
    created_at: float
    revoked_at: float | None = None


@dataclass(frozen=True)
class AccessToken:
    """A minted access token; its scopes may be a subset of its grant's (down-scoping)."""

    token: str
    grant_id: str
    user: str
    scopes: frozenset[str]
    expires_at: float


@dataclass(frozen=True)
class IssuedGrant:
    """What creating a user or a grant hands back to the caller."""

    user: str
    refresh_token: str
    scopes: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        """The admin route's response body."""
        return {"user": self.user, "refresh_token": self.refresh_token, "scopes": list(self.scopes)}


@dataclass
class SyncTokenRecord:
    """What a People sync token stands for: a user's change sequence at issue time.

    ``full_sync_at`` is inherited along a chain of incremental syncs, because Google
    documents expiry as "7 days after the full sync", not after the last use.
    """

    user: str
    incarnation: str
    seq: int
    issued_at: float
    full_sync_at: float
    expired: bool = False


@dataclass
class Fault:
    """An injected failure: the next ``remaining`` requests under ``path_prefix`` misbehave."""

    path_prefix: str
    status: int
    remaining: int
    delay_ms: int = 0

    def as_json(self) -> dict[str, Any]:
        """Shown by the admin route."""
        return {
            "path_prefix": self.path_prefix,
            "status": self.status,
            "count": self.remaining,
            "delay_ms": self.delay_ms,
        }


def _sub_for(email: str) -> str:
    """A deterministic 21-digit Google account id for an email (stable across runs)."""
    digits = int.from_bytes(hashlib.sha256(email.lower().encode()).digest()[:8], "big")
    return "1" + str(digits).zfill(20)[:20]


def iso(ts: float) -> str:
    """RFC 3339 UTC, as the rest of gwsync writes times."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class EmulatorState:
    """All mutable emulator state, plus the operations the routes and tests need."""

    def __init__(
        self,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self._clock = clock
        self._offset = 0.0
        self.access_token_ttl = ACCESS_TOKEN_TTL
        self.sync_token_ttl = SYNC_TOKEN_TTL
        self.users: dict[str, User] = {}
        self.grants: dict[str, Grant] = {}
        self._by_refresh: dict[str, str] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.sync_tokens: dict[str, SyncTokenRecord] = {}
        #: Page tokens of any API, mapping to whatever cursor the API module stores.
        self.page_tokens: dict[str, Any] = {}
        self.call_log: list[dict[str, Any]] = []
        #: API requests in flight per (user, path), and the most ever at once: lets tests
        #: prove that two workers never call Google for the same sync at the same time.
        self.in_flight: Counter[tuple[str, str]] = Counter()
        self.peak_in_flight: dict[tuple[str, str], int] = {}
        self.revocation_log: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self._contact_ids = itertools.count(_FIRST_CONTACT_ID)
        #: Per API, per user key: the data each API module keeps (see `api_data`).
        self._api_data: dict[str, dict[str, Any]] = {}
        #: Per-user quota enforced on API calls (`gwsync.emulator.quota`); None: unlimited.
        self.quota: QuotaPolicy | None = None

    # -- clock -----------------------------------------------------------------------

    def now(self) -> float:
        """Current emulator time (the clock plus any :meth:`advance`)."""
        return self._clock() + self._offset

    def advance(self, seconds: float) -> None:
        """Move emulator time forward, e.g. to expire access or sync tokens in tests."""
        self._offset += seconds

    # -- users and grants ------------------------------------------------------------

    def add_user(
        self,
        email: str,
        contacts: Iterable[Mapping[str, Any]] = (),
        scopes: Iterable[str] = (),
        key: str | None = None,
    ) -> IssuedGrant:
        """Create (or replace) a user with contacts and issue one grant of ``scopes``.

        Replacing drops the old user's grants and tokens entirely: they become unknown,
        which is what a deleted-and-recreated Google account would look like.
        """
        user_key = key or email
        if user_key in self.users:
            self._forget_user(user_key)
        self.users[user_key] = User(
            key=user_key,
            email=email,
            sub=_sub_for(email),
            incarnation=secrets.token_hex(8),
            contacts=ContactBook(self._contact_ids),
        )
        self.add_contacts(user_key, contacts)
        return self.issue_grant(user_key, scopes)

    def api_data(self, api: str, user_key: str, factory: Callable[[], T]) -> T:
        """The data one API module keeps for one user, created on first use.

        Each API module (calendar, drive, gmail, ...) owns its own data class, so adding
        an API never changes `User`.
        """
        self.user(user_key)
        per_user = self._api_data.setdefault(api, {})
        if user_key not in per_user:
            per_user[user_key] = factory()
        return per_user[user_key]

    def _forget_user(self, user_key: str) -> None:
        for per_user in self._api_data.values():
            per_user.pop(user_key, None)
        for grant in [g for g in self.grants.values() if g.user == user_key]:
            del self.grants[grant.id]
            self._by_refresh.pop(grant.refresh_token, None)
        for token in [t for t, a in self.access_tokens.items() if a.user == user_key]:
            del self.access_tokens[token]
        del self.users[user_key]

    def user(self, user_key: str) -> User:
        """The user, or :class:`UnknownUserError`."""
        try:
            return self.users[user_key]
        except KeyError:
            raise UnknownUserError(user_key) from None

    def issue_grant(self, user_key: str, scopes: Iterable[str]) -> IssuedGrant:
        """Record a consent of ``scopes`` (full scope URLs) and return its refresh token."""
        self.user(user_key)
        scope_set = frozenset(scopes)
        grant = Grant(
            id=secrets.token_hex(8),
            user=user_key,
            client_id=self.client_id,
            scopes=scope_set,
            refresh_token="1//" + secrets.token_urlsafe(48),
            created_at=self.now(),
        )
        self.grants[grant.id] = grant
        self._by_refresh[grant.refresh_token] = grant.id
        return IssuedGrant(user_key, grant.refresh_token, tuple(sorted(scope_set)))

    def withdraw_scopes(self, refresh_token: str, scopes: Iterable[str]) -> frozenset[str]:
        """Remove scopes from a live grant; returns what it still covers.

        How a single scope leaves a grant at Google (a re-consent with a box un-ticked, an
        admin policy) is not documented as one operation; what clients see is documented:
        the token response's `scope` no longer lists it, and asking for it is refused
        with `invalid_scope`. This reproduces exactly that.
        """
        grant = self._live_grant(self._by_refresh.get(refresh_token, ""))
        if grant is None:
            raise KeyError("no live grant has this refresh token")
        grant.scopes = grant.scopes - frozenset(scopes)
        return grant.scopes

    def revoke_user(self, user_key: str) -> int:
        """Revoke every live grant of the user (as at myaccount.google.com); returns how many."""
        self.user(user_key)
        live = [g for g in self.grants.values() if g.user == user_key and g.revoked_at is None]
        for grant in live:
            grant.revoked_at = self.now()
        return len(live)

    def _live_grant(self, grant_id: str) -> Grant | None:
        grant = self.grants.get(grant_id)
        return grant if grant is not None and grant.revoked_at is None else None

    # -- OAuth -----------------------------------------------------------------------

    def check_client(self, client_id: str | None, client_secret: str | None) -> None:
        """Authenticate the OAuth client; Google answers 401 ``invalid_client``.

        The two descriptions are as observed from Google, not documented.
        """
        if client_id != self.client_id:
            raise OAuthError(401, "invalid_client", "The OAuth client was not found.")
        if client_secret != self.client_secret:
            raise OAuthError(401, "invalid_client", "Unauthorized")

    def refresh(
        self,
        refresh_token: str,
        client_id: str | None,
        client_secret: str | None,
        scope: str | None = None,
    ) -> dict[str, Any]:
        """The ``grant_type=refresh_token`` exchange: returns Google's token response body."""
        self.check_client(client_id, client_secret)
        grant = self._live_grant(self._by_refresh.get(refresh_token, ""))
        if grant is None:
            raise OAuthError(400, "invalid_grant", "Token has been expired or revoked.")
        scopes = self._narrow(grant, scope)
        token = self._mint(grant, scopes)
        return {
            "access_token": token.token,
            "expires_in": self.access_token_ttl,
            "scope": " ".join(sorted(scopes)),
            "token_type": "Bearer",
        }

    @staticmethod
    def _narrow(grant: Grant, scope: str | None) -> frozenset[str]:
        """Down-scope to the requested subset (RFC 6749 §6); an un-granted scope is refused.

        Google does not document down-scoping for this flow (reference §2.5); we follow
        RFC 6749 and accept only exact scope strings, no aliases (e.g. ``contacts`` does
        not let you ask for ``contacts.readonly``) — Google's alias handling is unknown.
        """
        if not scope or not scope.strip():
            return grant.scopes
        asked = frozenset(scope.split())
        missing = asked - grant.scopes
        if missing:
            raise OAuthError(
                400,
                "invalid_scope",
                f"Some requested scopes were invalid. {{invalid={sorted(missing)}}}",
            )
        return asked

    def _mint(self, grant: Grant, scopes: frozenset[str]) -> AccessToken:
        token = AccessToken(
            token="ya29." + secrets.token_urlsafe(40),
            grant_id=grant.id,
            user=grant.user,
            scopes=scopes,
            expires_at=self.now() + self.access_token_ttl,
        )
        self.access_tokens[token.token] = token
        return token

    def mint_access_token(self, refresh_token: str, scopes: Iterable[str] | None = None) -> str:
        """Test shortcut: an access token of the grant (optionally narrowed), no client auth."""
        scope = " ".join(scopes) if scopes is not None else None
        return self.refresh(refresh_token, self.client_id, self.client_secret, scope)[
            "access_token"
        ]

    def authenticate(self, access_token: str) -> AccessToken | None:
        """The live access token, or ``None`` if unknown, expired or its grant is revoked."""
        token = self.access_tokens.get(access_token)
        if token is None or token.expires_at <= self.now():
            return None
        return token if self._live_grant(token.grant_id) else None

    def revoke_token(self, token: str) -> None:
        """``/revoke``: revoke the grant behind a refresh or access token.

        The whole grant dies (its refresh token and every access token). Google's docs say
        revocation removes *all* scopes the user granted to the project, i.e. every grant
        of that user; the emulator revokes only the grant the token belongs to, so tests
        can tell grants apart — use :meth:`revoke_user` for the project-wide effect.
        Unknown or already-dead tokens → 400 ``invalid_token`` (observed, not documented).
        """
        kind, grant = self._grant_of(token)
        if grant is None:
            raise OAuthError(400, "invalid_token", "Token expired or revoked")
        grant.revoked_at = self.now()
        self.revocation_log.append(
            {"token": token, "kind": kind, "user": grant.user, "at": iso(grant.revoked_at)}
        )

    def _grant_of(self, token: str) -> tuple[str, Grant | None]:
        if token in self._by_refresh:
            return "refresh_token", self._live_grant(self._by_refresh[token])
        access = self.authenticate(token)
        return "access_token", (self._live_grant(access.grant_id) if access else None)

    # -- contacts --------------------------------------------------------------------

    def add_contacts(self, user_key: str, persons: Iterable[Mapping[str, Any]]) -> list[str]:
        """Add People-API-shaped person dicts; returns their resource names."""
        book = self.user(user_key).contacts
        return [book.add(person) for person in persons]

    def update_contact(self, user_key: str, contact_id: str, changes: Mapping[str, Any]) -> str:
        """Replace fields of a contact (``None`` removes a field); returns the new etag."""
        return self.user(user_key).contacts.update(contact_id, changes).etag

    def delete_contact(self, user_key: str, contact_id: str) -> None:
        """Delete a contact; incremental syncs will report it as deleted."""
        self.user(user_key).contacts.delete(contact_id)

    def contacts(self, user_key: str) -> list[dict[str, Any]]:
        """The user's live contacts, full dicts, oldest change first (for assertions)."""
        book = self.user(user_key).contacts
        return [p.render(p.fields) for p in book.live()]

    # -- sync tokens -----------------------------------------------------------------

    def issue_sync_token(self, user_key: str, seq: int, full_sync_at: float) -> str:
        """Remember ``seq`` for the user and return an opaque sync token for it."""
        user = self.user(user_key)
        token = secrets.token_urlsafe(32)
        self.sync_tokens[token] = SyncTokenRecord(
            user=user_key,
            incarnation=user.incarnation,
            seq=seq,
            issued_at=self.now(),
            full_sync_at=full_sync_at,
        )
        return token

    def sync_token(self, user_key: str, token: str) -> SyncTokenRecord | None:
        """The record behind a sync token if it is this user's and still valid, else ``None``."""
        record = self.sync_tokens.get(token)
        user = self.users.get(user_key)
        if record is None or user is None or record.user != user_key:
            return None
        if record.incarnation != user.incarnation or record.expired:
            return None
        if self.now() - record.full_sync_at > self.sync_token_ttl:
            return None
        return record

    def expire_sync_tokens(self, user_key: str) -> int:
        """Expire every sync token of the user; returns how many were live."""
        self.user(user_key)
        live = [r for r in self.sync_tokens.values() if r.user == user_key and not r.expired]
        for record in live:
            record.expired = True
        return len(live)

    def new_page_token(self, cursor: Any) -> str:
        """Store an API's paging cursor under a fresh opaque page token."""
        token = secrets.token_urlsafe(24)
        self.page_tokens[token] = cursor
        return token

    # -- logs ------------------------------------------------------------------------

    def record_call(self, method: str, token: AccessToken, status: int) -> None:
        """Append an authorised API call to the call log."""
        self.call_log.append(
            {"method": method, "scopes": sorted(token.scopes), "user": token.user, "status": status}
        )

    @contextmanager
    def request_in_flight(self, user_key: str, path: str) -> Iterator[None]:
        """Count one API request of a user, latency included, while it is answered."""
        key = (user_key, path)
        self.in_flight[key] += 1
        self.peak_in_flight[key] = max(self.peak_in_flight.get(key, 0), self.in_flight[key])
        try:
            yield
        finally:
            self.in_flight[key] -= 1

    def peak_concurrency(self, user_key: str, path_prefix: str) -> int:
        """The most requests of this user to one path under ``path_prefix`` ever at once."""
        return max((n for (user, path), n in self.peak_in_flight.items()
                    if user == user_key and path.startswith(path_prefix)), default=0)

    def calls(self, clear: bool = False) -> list[dict[str, Any]]:
        """A copy of the call log; ``clear`` empties it afterwards."""
        calls = list(self.call_log)
        if clear:
            self.call_log.clear()
        return calls

    def revocations(self) -> list[dict[str, Any]]:
        """Tokens revoked through ``/revoke`` (not admin revocations), oldest first."""
        return list(self.revocation_log)

    # -- faults ----------------------------------------------------------------------

    def add_fault(self, path_prefix: str, status: int, count: int = 1, delay_ms: int = 0) -> Fault:
        """Make the next ``count`` requests under ``path_prefix`` fail with ``status``.

        ``status=0`` means no failure, only ``delay_ms`` of latency.
        """
        if count < 1 or delay_ms < 0 or not (status == 0 or 400 <= status <= 599):
            raise ValueError("count >= 1, delay_ms >= 0, status 0 or 400-599")
        fault = Fault(path_prefix, status, count, delay_ms)
        self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Drop every pending fault."""
        self.faults.clear()

    def take_fault(self, path: str) -> Fault | None:
        """Consume one use of the first pending fault matching ``path``."""
        for fault in self.faults:
            if path.startswith(fault.path_prefix):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.faults.remove(fault)
                return fault
        return None


#: Where the application keeps its state (aiohttp wants typed keys).
STATE_KEY = web.AppKey("gwsync.emulator.state", EmulatorState)
