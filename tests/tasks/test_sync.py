"""The sync job, through a real arq worker against the emulator, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from gwsync.emulator.seed import fake_contact, seed_demo_user
from gwsync.storage.models import Account, Erasure, Record, SyncState
from gwsync.tasks.deps import Deps
from gwsync.tasks.sync import MAX_TRIES
from tests.conftest import Emulator, RunWorker
from tests.helpers import (
    USER,
    Background,
    connect,
    eventually,
    stored_contacts,
    sync_again,
    sync_state,
    synced_user,
)

LIST = "people.people.connections.list"






async def test_full_then_incremental_applies_adds_changes_and_deletes(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """After a full sync, an incremental run stores adds and changes and drops deletes."""
    grant, account_id = await synced_user(api, emulator.state, run_worker, 7)
    before = await stored_contacts(deps, account_id)
    assert len(before) == 7
    assert (await sync_state(deps, account_id, "contacts")).stage == "incremental"

    user = grant.user
    ids = sorted(before)
    [added] = emulator.state.add_contacts(user, [fake_contact(100)])
    emulator.state.update_contact(user, ids[0].split("/")[-1],
                                  {"names": [{"displayName": "Renamed Person"}]})
    emulator.state.delete_contact(user, ids[1].split("/")[-1])
    emulator.state.calls(clear=True)
    await sync_again(deps, account_id, "contacts", run_worker)

    after = await stored_contacts(deps, account_id)
    assert added in after
    assert after[ids[0]]["name"] == "Renamed Person"
    assert ids[1] not in after
    assert len(after) == 7
    calls = emulator.state.calls()
    assert calls and all(c["method"] == LIST for c in calls)
    assert len(calls) == 1  # three changes fit one incremental page


async def test_expired_sync_token_falls_back_to_full_sync_that_deletes_missing(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """An expired People sync token leads to a full sync that removes what is no longer there."""
    grant, account_id = await synced_user(api, emulator.state, run_worker, 5)
    ids = sorted(await stored_contacts(deps, account_id))
    emulator.state.delete_contact(grant.user, ids[2].split("/")[-1])
    emulator.state.expire_sync_tokens(grant.user)
    epoch_before = (await sync_state(deps, account_id, "contacts")).epoch
    await sync_again(deps, account_id, "contacts", run_worker)

    after = await stored_contacts(deps, account_id)
    assert sorted(after) == [i for i in ids if i != ids[2]]
    state = await sync_state(deps, account_id, "contacts")
    assert state.epoch == epoch_before + 1 and state.stage == "incremental"
    assert state.status == "ok"
    assert 400 in [c["status"] for c in emulator.state.calls()]


async def test_rerunning_a_page_changes_nothing(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """Upserts are idempotent: a second full sync of unchanged data leaves the same records."""
    grant, account_id = await synced_user(api, emulator.state, run_worker, 6)
    first = await stored_contacts(deps, account_id)
    async with deps.sessions.begin() as session:
        state = await session.get(SyncState, (account_id, "contacts"))
        state.stage, state.cursor = "full", None
    await sync_again(deps, account_id, "contacts", run_worker)
    assert await stored_contacts(deps, account_id) == first
    async with deps.sessions() as session:
        count = await session.scalar(select(func.count()).select_from(Record)
                                     .where(Record.kind == "contact"))
    assert count == 6


async def test_revoked_grant_purges_the_account(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """invalid_grant on refresh marks the account erased through a verified erasure."""
    grant, account_id = await synced_user(api, emulator.state, run_worker, 4)
    emulator.state.revoke_user(grant.user)
    await sync_again(deps, account_id, "contacts", run_worker)
    async with deps.sessions() as session:
        account = await session.get(Account, account_id)
        erasure = await session.scalar(select(Erasure))
        records = await session.scalar(select(func.count()).select_from(Record))
    assert account.status == "erased" and account.user_id is None
    assert erasure.trigger == "invalid_grant" and erasure.state == "verified"
    assert erasure.verification["ok"], erasure.verification  # keys, rows, grants all gone
    assert records == 0


async def test_transient_api_errors_never_purge(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """503s from the People API are retried, then deferred, never failed; nothing is deleted."""
    grant, account_id = await synced_user(api, emulator.state, run_worker, 4)
    fault = emulator.state.add_fault("/v1/people", 503, count=MAX_TRIES + 1)
    await sync_again(deps, account_id, "contacts", run_worker)
    assert fault.remaining == 0  # tried MAX_TRIES times, then once more by the deferred job
    assert (await sync_state(deps, account_id, "contacts")).status == "ok"
    assert len(await stored_contacts(deps, account_id)) == 4
    async with deps.sessions() as session:
        assert (await session.get(Account, account_id)).status == "active"
        assert await session.scalar(select(func.count()).select_from(Erasure)) == 0


async def test_token_endpoint_outage_never_purges(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """A 5xx from the token endpoint is temporary: the account stays active and its data stays."""
    grant, account_id = await synced_user(api, emulator.state, run_worker, 3)
    emulator.state.add_fault("/token", 503, count=3)
    await sync_again(deps, account_id, "contacts", run_worker)
    async with deps.sessions() as session:
        assert (await session.get(Account, account_id)).status == "active"
        assert await session.scalar(select(func.count()).select_from(Erasure)) == 0
    assert len(await stored_contacts(deps, account_id)) == 3


async def test_erased_account_is_never_synced_again(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """A sync job queued for an erased account does nothing and calls Google not once."""
    grant, account_id = await synced_user(api, emulator.state, run_worker, 3)
    mine = {"user_id": USER}
    assert (await api.delete(f"/v1/accounts/{account_id}", params=mine)).status == 202
    await run_worker()
    emulator.state.calls(clear=True)
    for generation in (1, 2):
        await deps.queue.enqueue_sync(account_id, "contacts", generation)
    await run_worker()
    assert emulator.state.calls() == []
    resp = await api.post(f"/v1/accounts/{account_id}/sync", json={}, params=mine)
    assert resp.status == 409


async def test_one_sync_per_account_and_feature_is_queued(
    api, deps: Deps, emulator: Emulator
) -> None:
    """Enqueueing the same account and feature twice leaves a single queued job."""
    grant = seed_demo_user(emulator.state, 1)
    account_id = await connect(api, grant.refresh_token)  # queues the first sync
    assert await deps.queue.enqueue_sync(account_id, "contacts", 1) is False
    queued = [j for j in await deps.queue.queued_jobs(account_id) if j.endswith(":contacts")]
    assert queued == [deps.queue.sync_job_id(account_id, "contacts")]


async def test_bad_job_arguments_change_nothing(
    deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """A sync job with malformed arguments is refused by the job and touches nothing."""
    await deps.queue.redis.enqueue_job("sync_feature", "not-an-id", "contacts", "x",
                                       _job_id=f"{deps.queue.prefix}:bad")
    await deps.queue.redis.enqueue_job("sync_feature", "0" * 36, "no_such_feature", 1,
                                       _job_id=f"{deps.queue.prefix}:bad2")
    await run_worker()
    assert emulator.state.calls() == []
    async with deps.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(SyncState)) == 0


async def test_a_revocation_while_a_sync_runs_ends_it_classified_and_erased(
    api: Any, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """The user revokes at Google mid-crawl: the next call's 401 (google-auth's
    RefreshError, since a job's credentials cannot refresh) is a lost permission, the
    grant check meets invalid_grant, and the account is erased — no crashed job, no sync
    left `running`."""
    grant = seed_demo_user(emulator.state, 9)
    emulator.state.add_fault("/v1/people", 0, count=10_000, delay_ms=300)
    account_id = await connect(api, grant.refresh_token)
    async with Background() as background:
        worker = background.start(run_worker())

        async def first_page() -> bool:
            return len(await stored_contacts(deps, account_id)) >= 3
        await eventually(first_page, within_s=20, every_s=0.02)
        emulator.state.revoke_user(grant.user)
        assert (await worker).jobs_failed == 0
    async with deps.sessions() as session:
        [erasure] = list(await session.scalars(select(Erasure)))
        account = await session.get(Account, account_id)
        running = await session.scalar(select(func.count()).select_from(SyncState).where(
            SyncState.status == "running"))
    assert erasure.trigger == "invalid_grant" and erasure.state == "verified"
    assert account is not None and account.status == "erased" and running == 0
    assert len([c for c in emulator.state.calls()  # the crawl stopped after page 1
                if c["method"] == "people.people.connections.list"]) < 3
