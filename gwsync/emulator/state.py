"""The one object the emulator app holds: its clock, users, grants, cursors, logs and faults.

Each concern lives in its own module (`clock`, `users`, `grants`, `cursors`, `call_log`,
`in_flight`, `faults`); :class:`EmulatorState` composes them and offers, in one place,
the operations the routes and in-process tests need, so a test sets up and inspects the
emulator without HTTP. The state is plain Python and not thread-safe: mutate it from the
event loop that serves it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from gwsync.emulator.call_log import CallLog
from gwsync.emulator.clock import Clock
from gwsync.emulator.cursors import Cursors, SyncTokenRecord
from gwsync.emulator.faults import Fault, FaultPlan
from gwsync.emulator.grants import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    AuthorizationServer,
    BearerToken,
    IssuedGrant,
    UserGrant,
)
from gwsync.emulator.in_flight import InFlight
from gwsync.emulator.users import User, UserDirectory

if TYPE_CHECKING:
    from gwsync.emulator.quota import QuotaPolicy
    from gwsync.emulator.realism import Realism

T = TypeVar("T")


class EmulatorState:
    """All mutable emulator state, plus the operations the routes and tests need."""

    def __init__(
        self,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = Clock(clock)
        self.directory = UserDirectory()
        self.oauth = AuthorizationServer(client_id, client_secret, self.clock.now)
        self.cursors = Cursors(self.clock.now)
        self.call_log = CallLog()
        self.requests = InFlight()
        self.fault_plan = FaultPlan()
        #: Per-user quota enforced on API calls (`gwsync.emulator.quota`); None: unlimited.
        self.quota: QuotaPolicy | None = None
        #: Latency, per-user concurrency and random failures (`gwsync.emulator.realism`).
        self.realism: Realism | None = None

    # -- what tests read directly ----------------------------------------------------

    @property
    def client_id(self) -> str:
        return self.oauth.client_id

    @property
    def client_secret(self) -> str:
        return self.oauth.client_secret

    @client_secret.setter
    def client_secret(self, value: str) -> None:
        """Rotating the secret makes Google refuse the old one (``invalid_client``)."""
        self.oauth.client_secret = value

    @property
    def users(self) -> dict[str, User]:
        return self.directory.users

    @property
    def grants(self) -> dict[str, UserGrant]:
        return self.oauth.grants

    @property
    def access_tokens(self) -> dict[str, BearerToken]:
        return self.oauth.access_tokens

    @property
    def in_flight(self) -> Counter[tuple[str, str]]:
        return self.requests.now

    @property
    def faults(self) -> list[Fault]:
        return self.fault_plan.pending

    # -- clock -----------------------------------------------------------------------

    def now(self) -> float:
        """Current emulator time (see `Clock`)."""
        return self.clock.now()

    def advance(self, seconds: float) -> None:
        """Move emulator time forward, e.g. to expire access or sync tokens in tests."""
        self.clock.advance(seconds)

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
        self.oauth.forget_user(user_key)
        self.directory.create(user_key, email)
        self.add_contacts(user_key, contacts)
        return self.issue_grant(user_key, scopes)

    def user(self, user_key: str) -> User:
        """The user, or `NotFoundError`."""
        return self.directory.user(user_key)

    def api_data(self, api: str, user_key: str, factory: Callable[[], T]) -> T:
        """The data one API module keeps for one user, created on first use."""
        return self.directory.api_data(api, user_key, factory)

    def issue_grant(self, user_key: str, scopes: Iterable[str]) -> IssuedGrant:
        """Record a consent of ``scopes`` (full scope URLs) and return its refresh token."""
        self.user(user_key)
        return self.oauth.issue_grant(user_key, scopes)

    def withdraw_scopes(self, refresh_token: str, scopes: Iterable[str]) -> frozenset[str]:
        """Remove scopes from a live grant; returns what it still covers."""
        return self.oauth.withdraw_scopes(refresh_token, scopes)

    def revoke_user(self, user_key: str) -> int:
        """Revoke every live grant of the user (as at myaccount.google.com); returns how many."""
        self.user(user_key)
        return self.oauth.revoke_user(user_key)

    # -- OAuth -----------------------------------------------------------------------

    def check_client(self, client_id: str | None, client_secret: str | None) -> None:
        """Authenticate the OAuth client; Google answers 401 ``invalid_client``."""
        self.oauth.check_client(client_id, client_secret)

    def refresh(self, refresh_token: str, client_id: str | None, client_secret: str | None,
                scope: str | None = None) -> dict[str, Any]:
        """The ``grant_type=refresh_token`` exchange: returns Google's token response body."""
        return self.oauth.refresh(refresh_token, client_id, client_secret, scope)

    def mint_access_token(self, refresh_token: str, scopes: Iterable[str] | None = None) -> str:
        """Test shortcut: an access token of the grant (optionally narrowed), no client auth."""
        return self.oauth.mint_access_token(refresh_token, scopes)

    def authenticate(self, access_token: str) -> BearerToken | None:
        """The live access token, or ``None`` if unknown, expired or its grant is revoked."""
        return self.oauth.authenticate(access_token)

    def revoke_token(self, token: str) -> None:
        """``/revoke``: revoke the grant behind a refresh or access token."""
        self.oauth.revoke_token(token)

    def revocations(self) -> list[dict[str, Any]]:
        """Tokens revoked through ``/revoke`` (not admin revocations), oldest first."""
        return self.oauth.revocations()

    # -- contacts --------------------------------------------------------------------

    def add_contacts(self, user_key: str, persons: Iterable[Mapping[str, Any]]) -> list[str]:
        """Add People-API-shaped person dicts; returns their resource names."""
        book = self.user(user_key).contacts
        return [book.add(person) for person in persons]

    def update_contact(self, user_key: str, contact_id: str, changes: Mapping[str, Any]) -> str:
        """Replace fields of a contact (``None`` removes a field); returns the new etag."""
        return self.user(user_key).contacts.update(contact_id, changes).etag

    def rename_contact(self, user_key: str, contact_id: str) -> str:
        """Give a contact a new resource name (returned); the old one is listed in its
        ``metadata.previousResourceNames`` on incremental pages."""
        return self.user(user_key).contacts.rename(contact_id).resource_name

    def delete_contact(self, user_key: str, contact_id: str) -> None:
        """Delete a contact; incremental syncs will report it as deleted."""
        self.user(user_key).contacts.delete(contact_id)

    def contacts(self, user_key: str) -> list[dict[str, Any]]:
        """The user's live contacts, full dicts, oldest change first (for assertions)."""
        book = self.user(user_key).contacts
        return [p.render(p.fields) for p in book.live()]

    # -- cursors ---------------------------------------------------------------------

    def issue_sync_token(self, user_key: str, seq: int, full_sync_at: float) -> str:
        """Remember ``seq`` for the user and return an opaque People sync token for it."""
        return self.cursors.issue_sync_token(self.user(user_key), seq, full_sync_at)

    def sync_token(self, user_key: str, token: str) -> SyncTokenRecord | None:
        """The record behind a sync token if it is this user's and still valid, else ``None``."""
        return self.cursors.sync_token(self.users.get(user_key), token)

    def expire_sync_tokens(self, user_key: str) -> int:
        """Expire every People sync token of the user; returns how many were live."""
        self.user(user_key)
        return self.cursors.expire_sync_tokens(user_key)

    def new_page_token(self, cursor: Any) -> str:
        """Store an API's paging cursor under a fresh opaque page token."""
        return self.cursors.new_page_token(cursor)

    def page_cursor(self, token: str) -> Any | None:
        """The cursor behind a page token; ``None`` when unknown or expired (each API
        refuses it in its own words)."""
        return self.cursors.page_cursor(token)

    # -- calls and requests ----------------------------------------------------------

    def record_call(self, method: str, token: BearerToken, status: int) -> None:
        """Append an authorised API call to the call log."""
        self.call_log.record(method, token, status)

    def calls(self, clear: bool = False) -> list[dict[str, Any]]:
        """A copy of the call log; ``clear`` empties it afterwards."""
        return self.call_log.calls(clear)

    def request_in_flight(self, user_key: str, path: str) -> AbstractContextManager[None]:
        """Count one API request of a user, latency included, while it is answered."""
        return self.requests.request(user_key, path)

    def arrivals(self, user_key: str) -> list[tuple[str, float]]:
        """(path, wall-clock time) of every API request made with one of the user's tokens,
        live or not, oldest first."""
        return [(p, at) for u, p, at in self.requests.arrivals if u == user_key]

    def peak_concurrency(self, user_key: str, path_prefix: str) -> int:
        """The most requests of this user to one path under ``path_prefix`` ever at once."""
        return self.requests.peak_concurrency(user_key, path_prefix)

    # -- faults ----------------------------------------------------------------------

    def add_fault(self, path_prefix: str, status: int, count: int = 1, delay_ms: int = 0,
                  after: int = 0) -> Fault:
        """Make ``count`` requests under ``path_prefix`` fail with ``status``, after
        ``after`` of them pass."""
        return self.fault_plan.add(path_prefix, status, count, delay_ms, after)

    def clear_faults(self) -> None:
        """Drop every pending fault."""
        self.fault_plan.clear()

    def take_fault(self, path: str) -> Fault | None:
        """Consume one use of the first pending fault matching ``path``."""
        return self.fault_plan.take(path)


#: Where the application keeps its state (aiohttp wants typed keys).
STATE_KEY = web.AppKey("gwsync.emulator.state", EmulatorState)
