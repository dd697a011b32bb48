"""Derived data inherits its sources' purpose, and goes when they go.

Anything computed from a feature's records (an index, a summary, a cache) is stored as a
record of that same feature, kind `derived:<name>`: same data use, same scope, encrypted
under the same key, expiring no later than its earliest source. So every rule that
protects records — purpose-checked reads, per-feature and whole-account erasure,
retention sweeps, crypto-shredding — covers derived data without a rule of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gwsync.domain.features import FEATURES
from gwsync.domain.pages import Page, Removal, Upsert
from gwsync.storage.records import RecordStore

Contents = Sequence[tuple[str, dict[str, Any], datetime]]


@dataclass(frozen=True)
class Derivation:
    name: str
    compute: Callable[[Contents], dict[str, Any]]

    @property
    def kind(self) -> str:
        return f"derived:{self.name}"


def contact_suggestions(contents: Contents) -> dict[str, Any]:
    """A type-ahead index for contact suggestions: 3-letter name prefixes → contact ids."""
    index: dict[str, set[str]] = {}
    for contact_id, content, _ in contents:
        for word in str(content.get("name", "")).lower().split():
            index.setdefault(word[:3], set()).add(contact_id)
    return {"index": {prefix: sorted(ids) for prefix, ids in sorted(index.items())}}


DERIVATIONS: dict[str, tuple[Derivation, ...]] = {
    "contacts": (Derivation("suggestions", contact_suggestions),),
}


async def missing(store: RecordStore, account_id: str, feature: str) -> bool:
    """Whether a feature's derived data is absent while its sources are there: retention
    takes an index with its oldest source, and a later sync that changed nothing must
    still put it back."""
    derivations = DERIVATIONS.get(feature, ())
    return bool(derivations) and await store.derived_missing(
        account_id, FEATURES[feature], [d.kind for d in derivations])


async def refresh(
    store: RecordStore, account_id: str, generation: int, feature: str, epoch: int,
    lease: int | None = None,
) -> int:
    """Recompute a feature's derived data after a sync; returns how many were written."""
    derivations = DERIVATIONS.get(feature, ())
    if not derivations:
        return 0
    declared = FEATURES[feature]
    contents = await store.contents_for_derivation(account_id, declared)
    removals, upserts = [], []
    for derivation in derivations:
        if not contents:
            removals.append(Removal(derivation.kind, derivation.name))
            continue
        upserts.append(Upsert(
            derivation.kind, derivation.name, derivation.compute(contents),
            source_method=f"gwsync.derived.{derivation.name}",
            expires_at=min(expiry for _, _, expiry in contents)))
    await store.write_page(account_id, generation, declared,
                           Page(upserts=upserts, removals=removals), epoch=epoch, lease=lease)
    return len(upserts)
