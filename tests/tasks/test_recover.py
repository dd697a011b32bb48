"""The erasure recovery cron resumes only erasures whose worker died, never one a live
worker has just picked up and not yet leased."""

from __future__ import annotations

from datetime import timedelta

from aiohttp.test_utils import TestClient
from arq.constants import in_progress_key_prefix
from sqlalchemy import update

from gwsync.core.timeutil import utcnow
from gwsync.emulator.seed import seed_demo_user
from gwsync.storage.models import Erasure
from gwsync.tasks import erase, recover
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator
from tests.helpers import connect


async def _picked_up_erasure(api: TestClient, deps: Deps, emulator: Emulator) -> str:
    """An erasure whose job a worker has just marked in progress, before its lease."""
    account_id = await connect(api, seed_demo_user(emulator.state, 1).refresh_token)
    erasure_id = await erase.request(deps, [account_id], subject_hash="s", trigger="disconnect")
    job_id = f"{deps.queue.prefix}:erase:{erasure_id}"
    await deps.queue.redis.set(in_progress_key_prefix + job_id, b"1", px=60_000)
    return job_id


async def test_a_just_picked_up_erasure_is_not_started_twice(
    api: TestClient, deps: Deps, emulator: Emulator
) -> None:
    """Between arq marking the job in progress and the job taking its lease, the cron
    must not drop the mark: that would start a second run of the same job."""
    job_id = await _picked_up_erasure(api, deps, emulator)
    assert await recover.resume_erasures({"deps": deps}) == 0
    assert await deps.queue.redis.exists(in_progress_key_prefix + job_id)


async def test_an_erasure_unleased_for_longer_than_its_lease_is_resumed(
    api: TestClient, deps: Deps, emulator: Emulator
) -> None:
    """Once the erasure is older than a lease and nobody holds one, its worker died."""
    job_id = await _picked_up_erasure(api, deps, emulator)
    async with deps.sessions.begin() as session:
        await session.execute(update(Erasure).values(
            requested_at=utcnow() - timedelta(seconds=deps.settings.erasure_lease_s + 1)))
    assert await recover.resume_erasures({"deps": deps}) == 1
    assert not await deps.queue.redis.exists(in_progress_key_prefix + job_id)
