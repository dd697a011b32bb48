"""The scheduling crons: due syncs are enqueued with jitter, stuck syncs are recovered."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import update

from gwsync.emulator.seed import CONTACTS_READONLY, DEMO_SCOPES, seed_demo_user
from gwsync.storage import accounts
from gwsync.storage.models import Account, SyncState
from gwsync.tasks.schedule import enqueue_due_syncs, recover_stuck_syncs
from gwsync.timeutil import utcnow
from gwsync.worker.deps import Deps
from tests.conftest import Emulator, RunWorker
from tests.helpers import connect, stored_contacts, sync_state

ALL_FEATURES = ("availability", "contacts", "mail_activity", "meetings", "shared_files")
CONTACTS = ("contacts",)


def _ctx(deps: Deps, **settings: Any) -> dict[str, Any]:
    """A cron's ctx whose settings differ from the fixture's only by `settings`."""
    return {"deps": replace(deps, settings=deps.settings.model_copy(update=settings))}


async def _user(api: TestClient, emulator: Emulator, n: int,
                scopes: tuple[str, ...] = DEMO_SCOPES) -> str:
    grant = seed_demo_user(emulator.state, 3, email=f"user{n}@example.com", scopes=scopes)
    return await connect(api, grant.refresh_token, user_id=f"user-{n}")


async def _set_state(deps: Deps, account_id: str, features: tuple[str, ...] = ALL_FEATURES,
                     **values: Any) -> None:
    async with deps.sessions.begin() as session:
        await session.execute(update(SyncState).where(
            SyncState.account_id == account_id, SyncState.feature.in_(features)).values(**values))


async def _age(deps: Deps, account_id: str, seconds: float,
               features: tuple[str, ...] = ALL_FEATURES) -> None:
    """Pretend the features' last run started and ended `seconds` ago."""
    then = utcnow() - timedelta(seconds=seconds)
    await _set_state(deps, account_id, features, started_at=then, last_synced_at=then)


async def _queued(deps: Deps, account_id: str) -> set[str]:
    return {job.rsplit(":", 1)[-1] for job in await deps.queue.queued_jobs(account_id)}




async def test_due_enabled_features_of_active_accounts_are_enqueued_and_no_others(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """Only stale, enabled features of active accounts are enqueued; fresh, disabled, erased
    and erasing ones never are."""
    everything = await _user(api, emulator, 1)
    contacts_only = await _user(api, emulator, 2, scopes=(CONTACTS_READONLY,))
    erased = await _user(api, emulator, 3)
    erasing = await _user(api, emulator, 4)
    await run_worker()
    assert (await api.delete(f"/v1/accounts/{erased}")).status == 202
    await run_worker()
    interval = deps.settings.sync_interval_s
    await _age(deps, everything, interval + 5, ("contacts", "meetings"))
    await _age(deps, everything, interval - 30, ("availability",))  # not yet due
    await _age(deps, contacts_only, interval + 5)
    await _age(deps, erasing, interval + 5)
    async with deps.sessions.begin() as session:
        await session.execute(update(Account).where(Account.id == erasing)
                              .values(status=accounts.ERASING))

    queued = await enqueue_due_syncs(_ctx(deps, sync_jitter_s=0))

    assert queued == 3
    assert await _queued(deps, everything) == {"contacts", "meetings"}
    assert await _queued(deps, contacts_only) == {"contacts"}
    assert await _queued(deps, erased) == set()
    assert await _queued(deps, erasing) == set()
    assert await enqueue_due_syncs(_ctx(deps, sync_jitter_s=0)) == 0  # already queued
    before = (await sync_state(deps, everything)).last_synced_at
    await run_worker()
    after = await sync_state(deps, everything)
    assert after.status == "ok" and before is not None and after.last_synced_at > before


async def test_a_failing_feature_is_retried_once_per_interval_not_every_tick(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """A feature whose last attempt failed recently is not due, even if its last success is old."""
    account_id = await _user(api, emulator, 1, scopes=(CONTACTS_READONLY,))
    await run_worker()
    old = utcnow() - timedelta(seconds=deps.settings.sync_interval_s + 60)
    await _set_state(deps, account_id, status="error", error_category="temporary",
                     last_synced_at=old, started_at=utcnow() - timedelta(seconds=30))
    assert await enqueue_due_syncs(_ctx(deps, sync_jitter_s=0)) == 0
    await _set_state(deps, account_id, started_at=old)
    assert await enqueue_due_syncs(_ctx(deps, sync_jitter_s=0)) == 1


async def test_jitter_spreads_scheduled_syncs_within_its_bound(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """Every due sync is deferred by less than the jitter, and the deferrals differ."""
    ids = [await _user(api, emulator, n) for n in range(4)]
    await run_worker()
    for account_id in ids:
        await _age(deps, account_id, deps.settings.sync_interval_s + 5)
    start_ms = time.time() * 1000
    assert await enqueue_due_syncs(_ctx(deps, sync_jitter_s=60)) == 20
    end_ms = time.time() * 1000
    scores = [await deps.queue.redis.zscore(deps.queue.queue_name,
                                            deps.queue.sync_job_id(account_id, feature))
              for account_id in ids for feature in ALL_FEATURES]
    assert all(s is not None and start_ms - 1 <= s < end_ms + 60_000 for s in scores)
    assert max(scores) - min(scores) > 10_000  # 20 uniform draws over 60 s; fails ~1e-14


async def test_a_stuck_sync_is_marked_and_run_again_to_ok(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """A run still `running` past the timeout with no lock is marked stuck and re-run; a
    recent run, or one whose lock a live worker renews, is left alone."""
    stuck, recent, locked = [await _user(api, emulator, n, scopes=(CONTACTS_READONLY,))
                             for n in range(3)]
    await run_worker()
    long_ago = utcnow() - timedelta(seconds=deps.settings.stuck_after_s + 5)
    for account_id in (stuck, locked):
        await _set_state(deps, account_id, CONTACTS, status="running", started_at=long_ago)
    await _set_state(deps, recent, CONTACTS, status="running", started_at=utcnow())

    async with deps.queue.lock(locked, "contacts", ttl_s=5) as held:
        assert held
        assert await recover_stuck_syncs({"deps": deps}) == 1
        marked = await sync_state(deps, stuck)
        assert (marked.status, marked.error_category) == ("error", "stuck")
        assert await _queued(deps, stuck) == {"contacts"}
        assert (await sync_state(deps, recent)).status == "running"
        assert (await sync_state(deps, locked)).status == "running"
        assert await recover_stuck_syncs({"deps": deps}) == 0  # once, not every tick
    await _set_state(deps, recent, CONTACTS, status="ok")
    await run_worker()  # its startup cron now also recovers `locked`, whose lock is gone
    assert (await sync_state(deps, locked)).status == "ok"
    done = await sync_state(deps, stuck)
    assert (done.status, done.error_category) == ("ok", None)
    assert len(await stored_contacts(deps, stuck)) == 3


async def test_a_starting_worker_recovers_a_stuck_sync(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """The recovery cron runs when a worker starts, so a crashed sync resumes at restart."""
    account_id = await _user(api, emulator, 1, scopes=(CONTACTS_READONLY,))
    await run_worker()
    emulator.state.add_contacts("user1@example.com", [{"names": [{"displayName": "New"}]}])
    await _set_state(deps, account_id, CONTACTS, status="running",
                     started_at=utcnow() - timedelta(seconds=deps.settings.stuck_after_s + 5))
    await run_worker()
    done = await sync_state(deps, account_id)
    assert (done.status, done.error_category) == ("ok", None)
    assert len(await stored_contacts(deps, account_id)) == 4
