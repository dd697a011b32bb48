"""Opaque cursors handed to clients: People sync tokens and every API's page tokens.

A cursor is a random string standing for a position the emulator remembers, so a client
can only hand back what it was given. Sync tokens are People's (Calendar, Drive and
Gmail keep theirs in their own data modules); page tokens map to whatever listing
snapshot an API module stores.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gwsync.emulator.users import User

#: "Sync tokens expire 7 days after the full sync" (people.connections.list reference).
SYNC_TOKEN_TTL = 7 * 24 * 3600
#: A files.list page token is "typically valid for several hours" (Drive v3 discovery,
#: FileList.nextPageToken; docs/google.md §9.1). The other list APIs document no lifetime;
#: the emulator gives every page token this one, configurable (`Cursors.page_token_ttl`).
PAGE_TOKEN_TTL = 3 * 3600


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


class Cursors:
    """Every sync token and page token handed out, by the token."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self.sync_token_ttl = SYNC_TOKEN_TTL
        #: Whether People's expired-sync-token answer carries the ErrorInfo naming
        #: EXPIRED_SYNC_TOKEN (real answers were reported without it).
        self.expired_sync_token_details = True
        self.sync_tokens: dict[str, SyncTokenRecord] = {}
        #: Seconds a page token of any API is honoured after it was handed out.
        self.page_token_ttl: float = PAGE_TOKEN_TTL
        #: Page tokens of any API → (issued at, whatever cursor the API module stores),
        #: in issue order (the clock only moves forward), so expired ones are pruned
        #: from the front.
        self._page_tokens: dict[str, tuple[float, Any]] = {}

    def issue_sync_token(self, user: User, seq: int, full_sync_at: float) -> str:
        """Remember ``seq`` for the user and return an opaque sync token for it."""
        token = secrets.token_urlsafe(32)
        self.sync_tokens[token] = SyncTokenRecord(
            user=user.key,
            incarnation=user.incarnation,
            seq=seq,
            issued_at=self._now(),
            full_sync_at=full_sync_at,
        )
        return token

    def sync_token(self, user: User | None, token: str) -> SyncTokenRecord | None:
        """The record behind a sync token if it is this user's and still valid, else ``None``."""
        record = self.sync_tokens.get(token)
        if record is None or user is None or record.user != user.key:
            return None
        if record.incarnation != user.incarnation or record.expired:
            return None
        if self._now() - record.full_sync_at > self.sync_token_ttl:
            return None
        return record

    def expire_sync_tokens(self, user_key: str) -> int:
        """Expire every sync token of the user; returns how many were live."""
        live = [r for r in self.sync_tokens.values() if r.user == user_key and not r.expired]
        for record in live:
            record.expired = True
        return len(live)

    def new_page_token(self, cursor: Any) -> str:
        """Store an API's paging cursor under a fresh opaque page token."""
        self._prune()
        token = secrets.token_urlsafe(24)
        self._page_tokens[token] = (self._now(), cursor)
        return token

    def page_cursor(self, token: str) -> Any | None:
        """The cursor behind a page token, or ``None`` when unknown or past its age.

        Each API answers ``None`` with its own refusal of a page token: Google does not
        tell an expired token from a bad one in any documented answer.
        """
        entry = self._page_tokens.get(token)
        if entry is None or self._now() - entry[0] > self.page_token_ttl:
            return None
        return entry[1]

    def _prune(self) -> None:
        """Forget expired page tokens, oldest first (a long benchmark issues millions)."""
        horizon = self._now() - self.page_token_ttl
        while self._page_tokens:
            token, (issued_at, _) = next(iter(self._page_tokens.items()))
            if issued_at >= horizon:
                return
            del self._page_tokens[token]
