"""Helpers shared by the emulator tests: scope constants, a contact factory, the handle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gwsync.emulator.state import EmulatorState

CONTACTS_RO = "https://www.googleapis.com/auth/contacts.readonly"
CONTACTS = "https://www.googleapis.com/auth/contacts"
CALENDAR_RO = "https://www.googleapis.com/auth/calendar.readonly"


def person(given: str, family: str, **extra: Any) -> dict[str, Any]:
    """A People-API-shaped contact with a name, an email, a phone and a biography."""
    return {
        "names": [{"displayName": f"{given} {family}", "givenName": given, "familyName": family}],
        "emailAddresses": [{"value": f"{given.lower()}@example.com"}],
        "phoneNumbers": [{"value": "+1 555-0100"}],
        "biographies": [{"value": f"secret about {given}", "contentType": "TEXT_PLAIN"}],
        **extra,
    }


@dataclass
class Emulator:
    """A running emulator: its state and its origin."""

    state: EmulatorState
    url: str

    def user_with(self, n: int, scopes: list[str] | None = None) -> tuple[str, str]:
        """Create ``alice@example.com`` with ``n`` contacts; return (user, access token)."""
        contacts = [person(f"P{i:03d}", "Test") for i in range(n)]
        issued = self.state.add_user("alice@example.com", contacts, scopes or [CONTACTS_RO])
        return issued.user, self.state.mint_access_token(issued.refresh_token)
