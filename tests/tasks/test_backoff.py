"""Backoff through the real worker: rate limits, 5xx and timeouts defer a sync, never fail it.

The emulator enforces a per-user quota (``gwsync.emulator.quota``) and answers as Google
does; the client's own budgets are at Google's defaults here, far above the emulator's,
so the emulator's refusals are what the worker meets.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gwsync.core.settings import Settings
from gwsync.emulator.mailbox import add_gmail_user
from gwsync.emulator.quota import QuotaPolicy
from gwsync.emulator.seed import seed_demo_user
from gwsync.storage.models import Account
from gwsync.tasks.deps import Deps
from gwsync.tasks.sync import MAX_TRIES
from tests.conftest import Emulator, RunWorker
from tests.helpers import USER, connect, eventually, stored_contacts, sync_state

LIST = "people.people.connections.list"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Calls to Google time out after half a second, so a timeout costs little."""
    return settings.model_copy(update={"http_timeout_s": 0.5})




async def _feature_status(api: Any, account_id: str, feature: str) -> dict[str, Any]:
    resp = await api.get(f"/v1/accounts/{account_id}", params={"user_id": USER})
    assert resp.status == 200
    entry: dict[str, Any] = (await resp.json())["features"][feature]
    return entry


def _statuses(emulator: Emulator, method: str) -> list[int]:
    return [c["status"] for c in emulator.state.calls() if c["method"] == method]


async def test_a_429_with_retry_after_resumes_from_the_page_it_stopped_at(
    api: Any, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """Page 3 meets 429 + Retry-After: 1; the job waits that long once, then fetches pages
    3 and 4 only — pages 1 and 2 are not fetched again — and ends with every contact."""
    emulator.state.quota = QuotaPolicy({"people": 2}, window_s=1.0)
    grant = seed_demo_user(emulator.state, 12)  # 4 pages of 3
    account_id = await connect(api, grant.refresh_token)
    await run_worker()
    # One refusal only: a retry sooner than Retry-After would have met the full window again.
    assert _statuses(emulator, LIST) == [200, 200, 429, 200, 200]
    assert len(await stored_contacts(deps, account_id)) == 12
    state = await sync_state(deps, account_id)
    assert state.status == "ok" and state.stage == "incremental"


async def test_gmail_user_rate_limit_403_inside_a_batch_is_retried_for_those_parts_alone(
    api: Any, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """403 userRateLimitExceeded on parts of a batch (without Retry-After) sends those parts
    again with backoff inside the page; the status API never says ok over an error, and
    the sync completes with every message."""
    emulator.state.quota = QuotaPolicy({"gmail": 30}, window_s=1.0, retry_after=False)
    grant = add_gmail_user(emulator.state, "rl@example.com", 9)  # pages of 5 + 3 × 5 units
    account_id = await connect(api, grant.refresh_token)
    worker = asyncio.create_task(run_worker())
    while not worker.done():
        await _deferred(api, account_id, "mail_activity")  # asserts never ok over an error
        await asyncio.sleep(0.02)
    assert (await worker).jobs_failed == 0
    assert 403 in _statuses(emulator, "gmail.users.messages.get")  # refused inside a batch
    state = await sync_state(deps, account_id, "mail_activity")
    assert state.status == "ok"
    page = await deps.store.read(account_id, use="feature:mail_activity", actor="test")
    assert len(page.items) == 9


async def _deferred(api: Any, account_id: str, feature: str) -> dict[str, Any] | None:
    entry = await _feature_status(api, account_id, feature)
    assert entry["status"] != "ok" or entry["last_error"] is None  # never ok over an error
    return entry if entry["status"] == "deferred" else None


async def test_5xx_and_timeouts_are_retried(
    api: Any, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """503s and calls that outlive the HTTP timeout are temporary: retried until they pass."""
    grant = seed_demo_user(emulator.state, 6)
    emulator.state.add_fault("/v1/people", 503, count=2)
    emulator.state.add_fault("/v1/people", 0, count=2, delay_ms=900)
    account_id = await connect(api, grant.refresh_token)
    assert (await run_worker()).jobs_failed == 0
    assert emulator.state.faults == []
    assert len(await stored_contacts(deps, account_id)) == 6
    assert (await sync_state(deps, account_id)).status == "ok"


async def test_after_max_tries_the_sync_is_deferred_not_failed(
    api: Any, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """Past MAX_TRIES a new deferred job takes over: no job fails, the status says
    deferred/temporary meanwhile, and the sync completes once Google recovers."""
    grant = seed_demo_user(emulator.state, 4)
    fault = emulator.state.add_fault("/v1/people", 503, count=1000)
    account_id = await connect(api, grant.refresh_token)
    worker = asyncio.create_task(run_worker())

    async def deferred_beyond_max_tries() -> Any:
        if 1000 - fault.remaining <= MAX_TRIES:  # the deferred job has tried too
            return None
        entry = await _feature_status(api, account_id, "contacts")
        # Read between two tries, not while one runs (its status is `running` then).
        return entry if entry["status"] != "running" else None

    entry = await eventually(deferred_beyond_max_tries, within_s=15, every_s=0.02)
    assert entry["status"] == "deferred" and entry["last_error"]["category"] == "temporary"
    assert await deps.queue.queued_jobs(account_id)  # a job is waiting to run again
    emulator.state.clear_faults()
    assert (await worker).jobs_failed == 0
    assert (await sync_state(deps, account_id)).status == "ok"
    assert len(await stored_contacts(deps, account_id)) == 4
    async with deps.sessions() as session:
        assert (await session.get(Account, account_id)).status == "active"
