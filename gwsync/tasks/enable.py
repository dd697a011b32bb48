"""Which features a grant enables, and the first syncs that follow a new or wider grant.

Both the app's `POST /v1/accounts` and the consent callback report features the same way
and enqueue the same syncs, so the rule lives here, once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from gwsync.connectors import registry
from gwsync.domain import features
from gwsync.storage.models import Account
from gwsync.tasks.deps import Deps


def feature_report(granted: frozenset[str]) -> dict[str, dict[str, Any]]:
    """Per feature: enabled (its scope is granted), the scopes it misses, and whether
    gwsync has a connector for it yet."""
    return {name: {"enabled": not missing, "missing_scopes": missing,
                   "available": name in registry.CONNECTORS}
            for name, missing in features.coverage(granted).items()}


async def enqueue_enabled(deps: Deps, account: Account, names: list[str]) -> list[str]:
    """Enqueue a sync of each named feature the account's grant covers; the queued names."""
    granted = frozenset(account.granted_scopes.split())
    queued = []
    for name in names:
        if features.get(name).scope in granted and name in registry.CONNECTORS:
            await deps.queue.enqueue_sync(account.id, name, account.generation)
            queued.append(name)
    return queued


async def announce_connected(deps: Deps, session: AsyncSession, account: Account) -> None:
    """`account.connected`, in the transaction that creates the account: which features
    its grant enables and which still need the user's permission."""
    granted = frozenset(account.granted_scopes.split())
    report = features.coverage(granted)
    await deps.outbox.add(session, "account.connected", account.id, account.user_id, data={
        "enabled_features": sorted(n for n, missing in report.items() if not missing),
        "needs_permission": sorted(n for n, missing in report.items() if missing)})
