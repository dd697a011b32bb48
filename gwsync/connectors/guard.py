"""The check a job makes before each request to Google: may this account still call?

Connectors cannot know why an account must stop (an erasure is storage's and the jobs'
business, and connectors import neither), so the job hands its connector a guard: an
awaitable that returns when the call may go, and raises — whatever the job will
recognise — when it must not. `gwsync.connectors.client.execute` awaits it as the last
thing before each request leaves, after any quota wait.
"""

from __future__ import annotations

from typing import Protocol


class CallGuard(Protocol):
    async def __call__(self) -> None:
        """Return if the next Google call may be made; raise to stop the job."""


class Always:
    """The guard of calls made outside a sync (tests, the erasure's own channel stops)."""

    async def __call__(self) -> None:
        return None


ALWAYS = Always()
