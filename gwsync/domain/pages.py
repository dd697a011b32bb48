"""What a connector hands the store: one page of a Google listing, reduced to stored fields.

Connectors build these and the record store applies them; neither knows the other, so
the types live here, below both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Upsert:
    kind: str
    external_id: str
    content: Mapping[str, Any]
    #: For derived data: the computation it came from, and its sources' earliest expiry.
    source_method: str | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Removal:
    kind: str
    external_id: str


@dataclass(frozen=True)
class Page:
    """What one page of a Google listing changes, already reduced to stored fields."""

    upserts: Sequence[Upsert] = ()
    removals: Sequence[Removal] = ()
