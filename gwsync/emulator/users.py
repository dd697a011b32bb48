"""The Google accounts the emulator holds: identity, contacts and each API's per-user data.

A user is created (or replaced) by key; replacing gives it a new ``incarnation``, so
cursors issued to the old one stop working instead of leaking into the new one. What
each API keeps per user lives in :meth:`UserDirectory.api_data`, so adding an API never
changes :class:`User`.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from gwsync.emulator.contacts import ContactBook
from gwsync.emulator.errors import NotFoundError

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


def _sub_for(email: str) -> str:
    """A deterministic 21-digit Google account id for an email (stable across runs)."""
    digits = int.from_bytes(hashlib.sha256(email.lower().encode()).digest()[:8], "big")
    return "1" + str(digits).zfill(20)[:20]


class UserDirectory:
    """Every user by key, and the data each API module keeps for each of them."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self._contact_ids = itertools.count(_FIRST_CONTACT_ID)
        #: Per API, per user key: the data each API module keeps (see `api_data`).
        self._api_data: dict[str, dict[str, Any]] = {}

    def create(self, user_key: str, email: str) -> User:
        """A new user under ``user_key``, replacing (and forgetting) any user there."""
        if user_key in self.users:
            self.forget(user_key)
        user = User(key=user_key, email=email, sub=_sub_for(email),
                    incarnation=secrets.token_hex(8), contacts=ContactBook(self._contact_ids))
        self.users[user_key] = user
        return user

    def user(self, user_key: str) -> User:
        """The user, or :class:`NotFoundError`."""
        try:
            return self.users[user_key]
        except KeyError:
            raise NotFoundError("user", user_key) from None

    def forget(self, user_key: str) -> None:
        """Drop the user and every API's data of it."""
        for per_user in self._api_data.values():
            per_user.pop(user_key, None)
        del self.users[user_key]

    def api_data(self, api: str, user_key: str, factory: Callable[[], T]) -> T:
        """The data one API module keeps for one user, created on first use.

        Each API module (calendar, drive, gmail, ...) owns its own data class, so adding
        an API never changes `User`.
        """
        self.user(user_key)
        per_user = self._api_data.setdefault(api, {})
        if user_key not in per_user:
            per_user[user_key] = factory()
        return per_user[user_key]  # type: ignore[no-any-return]
