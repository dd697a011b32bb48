"""The log of authorised API calls: which method, with which scopes, for whom, and how it went.

Tests assert on it to prove which scope each call carried and how many calls a sync
cost; the demo prints the calls per feature from it.
"""

from __future__ import annotations

from typing import Any

from gwsync.emulator.grants import BearerToken


class CallLog:
    """Every authorised API call, oldest first."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def record(self, method: str, token: BearerToken, status: int) -> None:
        """Append an authorised API call."""
        self.entries.append(
            {"method": method, "scopes": sorted(token.scopes), "user": token.user, "status": status}
        )

    def calls(self, clear: bool = False) -> list[dict[str, Any]]:
        """A copy of the log; ``clear`` empties it afterwards."""
        calls = list(self.entries)
        if clear:
            self.entries.clear()
        return calls
