"""Erasure holds with real worker processes: a killed worker's erasure is finished by the next
one, and a sync in flight when an erasure begins never writes after it."""

from __future__ import annotations

import signal

from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from gwsync.core.settings import Settings
from gwsync.devtools import processes
from gwsync.emulator.seed import seed_demo_user
from gwsync.storage.models import Erasure, Record
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator, RunWorker
from tests.erasure_proof import ErasureProof
from tests.helpers import USER, client, connect, eventually, start_worker, synced_user

LEASE = {"GWSYNC_ERASURE_LEASE_S": "1"}
MARKER = "Rp4ProcessMarkerWq"


async def _erasure(deps: Deps, erasure_id: str) -> Erasure:
    async with deps.sessions() as session:
        found = await session.get(Erasure, erasure_id)
        assert found is not None
        return found


async def _records(deps: Deps) -> int:
    async with deps.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Record)) or 0)


async def test_a_worker_killed_mid_erasure_is_finished_by_the_next(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker, settings: Settings
) -> None:
    """kill -9 during revocation; a restarted worker revokes, deletes and verifies, and
    nothing of the account is left."""
    _, account_id = await synced_user(api, emulator.state, run_worker, 5, marker=MARKER)
    proof = await ErasureProof.capture(deps, account_id, marker=MARKER)
    emulator.state.add_fault("/revoke", 0, count=1, delay_ms=8000)
    erasure_id = (await client(api).disconnect(account_id, USER)).erasure_id
    first = await start_worker(settings, **LEASE)
    lease = f"{settings.redis_prefix}:lease:erasure:{erasure_id}"
    await eventually(lambda: deps.queue.redis.exists(lease), within_s=30)

    async def revoke_in_flight() -> bool:  # the slow answer was taken by this request
        return not emulator.state.faults
    await eventually(revoke_in_flight, within_s=30)
    first.send_signal(signal.SIGKILL)
    await first.wait()
    half_done = await _erasure(deps, erasure_id)
    assert half_done.state == "shredded" and half_done.revocation == "pending"
    assert await _records(deps) == 5 + 1  # rows (5 contacts, 1 derived index) still there,
    await proof.assert_shredded()  # but their key is already gone

    second = await start_worker(settings, **LEASE)
    try:
        async def verified() -> bool:
            return (await _erasure(deps, erasure_id)).state == "verified"
        await eventually(verified, within_s=40)
    finally:
        await processes.stop(second)
    done = await _erasure(deps, erasure_id)
    assert done.verification["ok"]
    assert done.revocation == "revoked", done.last_error
    assert await _records(deps) == 0
    await proof.assert_erased()


async def test_a_sync_in_flight_in_a_real_worker_never_writes_after_erasure(
    api: TestClient, deps: Deps, emulator: Emulator, settings: Settings
) -> None:
    """A slow sync in a worker process, erased mid-way, leaves zero records, and nothing of
    the account, when both end."""
    grant = seed_demo_user(emulator.state, 40, marker=MARKER)
    emulator.state.add_fault("/v1/people", 0, count=100, delay_ms=200)
    worker = await start_worker(settings)
    try:
        account_id = await connect(api, grant.refresh_token)
        await eventually(_records_positive(deps), within_s=30)
        assert await _records(deps) < 40
        proof = await ErasureProof.capture(deps, account_id, marker=MARKER)
        erasure_id = (await client(api).disconnect(account_id, USER)).erasure_id
        await proof.assert_shredded()

        async def verified() -> bool:
            return (await _erasure(deps, erasure_id)).state == "verified"
        await eventually(verified, within_s=40)
        await eventually(_sync_finished(deps, account_id), within_s=30)
    finally:
        await processes.stop(worker)
    assert await _records(deps) == 0
    await proof.assert_erased()


def _records_positive(deps: Deps):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return await _records(deps) > 0
    return check


def _sync_finished(deps: Deps, account_id: str):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        lock = deps.queue.account_key(account_id, "lock", "contacts")
        return not await deps.queue.redis.exists(lock)
    return check
