"""A partial erasure stops the withdrawn feature's sync in flight from writing.

Partial erasures set no Redis fence (the account stays live); what stops a sync of the
withdrawn feature that is mid-crawl when its scope goes is the generation bump of the
erasure's first transaction (`gwsync.storage.purge.begin`), which every write of the sync
re-checks (`gwsync.storage.accounts.fence`). This drives a real worker through it: its mail
sync has written a page and keeps fetching with a still-valid access token when the scope
is withdrawn; once the erasure is verified and the sync has stopped, no mail record exists.
"""

from __future__ import annotations

import time

from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from gwsync.core.settings import Settings
from gwsync.domain.features import FEATURES
from gwsync.emulator.mailbox import add_gmail_user
from gwsync.storage.models import Erasure, Record
from gwsync.tasks import grants
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator
from tests.helpers import connect, eventually
from tests.worker_processes import logged_worker, stop_workers

N, PAGE, CALL_DELAY_MS = 40, 10, 150
MAIL, CONTACTS = FEATURES["mail_activity"].scope, FEATURES["contacts"].scope
GETS = "/gmail/v1/users/me/messages/"


async def _mail_records(deps: Deps) -> int:
    async with deps.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Record).where(
            Record.feature == "mail_activity")) or 0)


async def _verified(deps: Deps) -> Erasure | None:
    async with deps.sessions() as session:
        erasure = await session.scalar(select(Erasure))
    return erasure if erasure is not None and erasure.state == "verified" else None


async def test_a_mail_sync_in_flight_writes_nothing_after_its_scope_is_withdrawn(
    api: TestClient, deps: Deps, emulator: Emulator, settings: Settings
) -> None:
    """The sync wrote a page, the mail scope is withdrawn while it fetches the next, and it
    goes on calling Google (its access token still valid) — yet after the erasure is
    verified and the sync has stopped, no mail record is stored."""
    grant = add_gmail_user(emulator.state, "partial@example.com", N, scopes=(MAIL, CONTACTS))
    emulator.state.add_fault("/gmail/v1/users/", 0, count=10_000, delay_ms=CALL_DELAY_MS)
    worker = await logged_worker(settings, GWSYNC_GMAIL_MAX_IN_FLIGHT="1",
                                 GWSYNC_SYNC_PAGE_SIZE=str(PAGE))
    try:
        account_id = await connect(api, grant.refresh_token)
        await eventually(lambda: _mail_records(deps), within_s=60, every_s=0.05)
        withdrawn_at = time.time()
        assert await grants.apply_granted(deps, account_id, frozenset({CONTACTS})) == [
            "mail_activity"]
        erasure = await eventually(lambda: _verified(deps), within_s=60, every_s=0.05)
        lock = deps.queue.account_key(account_id, "lock", "mail_activity")

        async def sync_stopped() -> bool:
            return not await deps.queue.redis.exists(lock)
        await eventually(sync_stopped, within_s=90, every_s=0.1)
    finally:
        await stop_workers(worker)
    assert erasure.scope == {"features": ["mail_activity"]}
    late = [p for p, at in emulator.state.arrivals(grant.user)
            if at > withdrawn_at and p.startswith(GETS)]
    assert late, "the sync had stopped before the withdrawal: nothing was in flight"
    assert await _mail_records(deps) == 0
    assert worker.count("sync_fenced") >= 1, "".join(worker.lines[-30:])
