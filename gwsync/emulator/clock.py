"""Emulator time: a clock tests can move forward, and how the emulator writes times.

Tokens expire and quota windows slide on this clock, so a test expires an access token
by advancing it an hour instead of sleeping one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime


class Clock:
    """A time source plus an offset that only :meth:`advance` moves."""

    def __init__(self, source: Callable[[], float] = time.time) -> None:
        self._source = source
        self._offset = 0.0

    def now(self) -> float:
        """Current emulator time (the source plus any :meth:`advance`)."""
        return self._source() + self._offset

    def advance(self, seconds: float) -> None:
        """Move emulator time forward, e.g. to expire access or sync tokens in tests."""
        self._offset += seconds


def iso(ts: float) -> str:
    """RFC 3339 UTC, as the rest of gwsync writes times."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
