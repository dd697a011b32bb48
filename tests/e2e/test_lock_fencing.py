"""A worker paused past its sync lock while another takes over writes nothing when it
wakes: the lease in the database fences every page, so no stale page lands after the
new holder's, and nothing it stored is overwritten with older data."""

from __future__ import annotations

import asyncio
import signal

from aiohttp.test_utils import TestClient

from gwsync.core.settings import Settings
from gwsync.emulator.seed import CONTACTS_READONLY, seed_demo_user
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator
from tests.helpers import connect, eventually, stored_contacts, sync_state
from tests.worker_processes import Worker, logged_worker, stop_workers

N, PAGE_DELAY_MS = 9, 1500


async def _stored_names(deps: Deps, account_id: str) -> set[str]:
    return {c["name"] for c in (await stored_contacts(deps, account_id)).values()}


async def _paused_mid_crawl(deps: Deps, emulator: Emulator, user: str,
                            account_id: str) -> None:
    """Wait until the first page is stored and the second request is at Google."""
    async def there() -> bool:
        busy = any(u == user and n for (u, _p), n in emulator.state.in_flight.items())
        return busy and len(await stored_contacts(deps, account_id)) == 3
    await eventually(there, within_s=30, every_s=0.02)


async def test_a_worker_paused_past_its_lock_writes_nothing_after_the_takeover(
    api: TestClient, deps: Deps, emulator: Emulator, settings: Settings
) -> None:
    """A is stopped (SIGSTOP) holding page 2's answer; its lock lapses; B takes over and
    syncs the renamed contacts; A, continued, is fenced: every stored name is Google's."""
    grant = seed_demo_user(emulator.state, N, scopes=(CONTACTS_READONLY,))
    emulator.state.add_fault("/v1/people", 0, count=10_000, delay_ms=PAGE_DELAY_MS)
    env = {"GWSYNC_SYNC_LOCK_S": "1", "GWSYNC_QUOTA_PEOPLE_USER_PER_MIN": "60000"}
    a = await logged_worker(settings, **env)
    b: Worker | None = None
    try:
        account_id = await connect(api, grant.refresh_token)
        await _paused_mid_crawl(deps, emulator, grant.user, account_id)
        a.proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(PAGE_DELAY_MS / 1000 + 1.0)  # page 2 answered, A's lock lapsed
        for contact in emulator.state.contacts(grant.user):
            emulator.state.user(grant.user).contacts.update(
                contact["resourceName"], {"names": [{"displayName": "renamed " +
                                                     contact["resourceName"]}]})
        google = {c["names"][0]["displayName"] for c in emulator.state.contacts(grant.user)}
        b = await logged_worker(settings, **env)
        await deps.queue.enqueue_sync(account_id, "contacts", 1)
        await eventually(lambda: _synced_to(deps, account_id, google), within_s=60)
        a.proc.send_signal(signal.SIGCONT)
        await eventually(lambda: _ended(a), within_s=30, every_s=0.05)
        assert await _stored_names(deps, account_id) == google  # no stale page landed
        assert a.count("sync_fenced") + a.count("sync_lock_lost") == 1
        assert (await sync_state(deps, account_id)).status == "ok"
    finally:
        with_b = [b] if b is not None else []
        a.proc.send_signal(signal.SIGCONT)
        await stop_workers(a, *with_b)


async def _synced_to(deps: Deps, account_id: str, google: set[str]) -> bool:
    """B's runs are done and the store holds Google's names (a second, incremental run
    catches the renames of page 1, which A had stored before the takeover)."""
    if await _stored_names(deps, account_id) == google:
        return (await sync_state(deps, account_id)).status == "ok"
    state = await sync_state(deps, account_id)
    if state.status == "ok":
        await deps.queue.enqueue_sync(account_id, "contacts", 1)
    return False


async def _ended(worker: Worker) -> bool:
    return bool(worker.count("sync_fenced") or worker.count("sync_lock_lost")
                or worker.count('"sync_done"'))

