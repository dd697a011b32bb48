"""API requests in flight per (user, path), and the most there ever were at once.

This lets tests prove that two workers never call Google for the same sync at the same
time: injected latency keeps a request open long enough for an overlap to show.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


class InFlight:
    """Open requests per (user, path) now, and the peak per (user, path) so far."""

    def __init__(self) -> None:
        self.now: Counter[tuple[str, str]] = Counter()
        self.peak: dict[tuple[str, str], int] = {}
        #: (user, path, wall-clock time) of every request that carried a token the
        #: emulator ever issued — revoked or expired ones too, since those are calls made
        #: with a user's token all the same (an erasure must stop them).
        self.arrivals: list[tuple[str, str, float]] = []

    @contextmanager
    def request(self, user_key: str, path: str) -> Iterator[None]:
        """Count one API request of a user, latency included, while it is answered."""
        key = (user_key, path)
        self.arrivals.append((user_key, path, time.time()))
        self.now[key] += 1
        self.peak[key] = max(self.peak.get(key, 0), self.now[key])
        try:
            yield
        finally:
            self.now[key] -= 1

    def peak_concurrency(self, user_key: str, path_prefix: str) -> int:
        """The most requests of this user to one path under ``path_prefix`` ever at once."""
        return max((n for (user, path), n in self.peak.items()
                    if user == user_key and path.startswith(path_prefix)), default=0)
