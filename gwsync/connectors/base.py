"""What a connector is: a feature's full and incremental listings, as pages of changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from gwsync.domain.features import Feature
from gwsync.domain.pages import Page


@dataclass(frozen=True)
class Fetched:
    """One page from Google, reduced to stored fields, with where to continue."""

    page: Page
    #: Continue a listing in progress from here (the checkpoint).
    next_page_token: str | None
    #: Set on the last page: the cursor for the next incremental run.
    next_cursor: str | None
    api_calls: int = 1


class Connector(Protocol):
    feature: Feature

    def full(self, page_token: str | None) -> AsyncIterator[Fetched]:
        """Every item, resuming at `page_token`; the last page carries the cursor."""
        ...

    def incremental(self, cursor: str) -> AsyncIterator[Fetched]:
        """What changed since `cursor`; raises CursorExpiredError when it is too old."""
        ...

    def close(self) -> None:
        """Release the connections the job opened."""
        ...
