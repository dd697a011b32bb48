"""A sync run's lease on its sync state: the fencing token of the single-flight lock.

The Redis lock keeps two runs of one account and feature apart only while every holder
is alive and on time: a worker paused past the lock's lifetime (a long GC, SIGSTOP, a
partition) resumes believing it still holds it. So a run that takes the lock also bumps
the sync state's `lease` in the database, and every write of that run re-checks it in
the write's own transaction: once another run has taken over, the old one writes
nothing — no interleaved pages, no record lost or resurrected. (Kleppmann's fencing
token, kept where the writes are.)
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from gwsync.storage.accounts import FencedError
from gwsync.storage.models import SyncState


async def take(session: AsyncSession, account_id: str, feature: str) -> int:
    """Begin a run: bump the lease and return it (0 when the sync has no state)."""
    lease = await session.scalar(update(SyncState).where(
        SyncState.account_id == account_id, SyncState.feature == feature,
    ).values(lease=SyncState.lease + 1).returning(SyncState.lease)
        .execution_options(synchronize_session=False))
    return int(lease or 0)


async def check(session: AsyncSession, account_id: str, feature: str, lease: int) -> None:
    """Hold the sync state row for this transaction, or raise FencedError if a newer run
    took the lease. The UPDATE takes the row lock a newer run's `take` also needs, so
    either this write commits before the takeover or it is refused."""
    result = await session.execute(update(SyncState).where(
        SyncState.account_id == account_id, SyncState.feature == feature,
        SyncState.lease == lease,
    ).values(lease=lease).execution_options(synchronize_session=False))
    if result.rowcount != 1:  # type: ignore[attr-defined]  # DML gives a CursorResult
        raise FencedError(f"{feature} sync lease {lease} was taken over")
