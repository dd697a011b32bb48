"""Quota budgets in Redis: shared by every process, per user and per project, in Google's units."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from gwsync.connectors import client
from gwsync.connectors.endpoints import Endpoints
from gwsync.connectors.errors import TemporaryError
from gwsync.connectors.quota import (
    GMAIL_UNITS,
    Budget,
    Charge,
    Limit,
    Limiter,
    QuotaConfigError,
    QuotaWaitError,
    limits_from,
    units,
)
from gwsync.core import discovery, metrics
from gwsync.core.settings import Settings
from gwsync.emulator.mailbox import add_gmail_user
from gwsync.emulator.quota import QuotaPolicy
from gwsync.tasks.deps import Deps
from tests.conftest import REDIS_URL, Emulator, RunWorker
from tests.helpers import connect

MakeLimiter = Callable[..., Limiter]


@pytest.fixture
async def make_limiter(redis_prefix: str) -> AsyncIterator[MakeLimiter]:
    """Limiters on connections of their own, as separate worker processes would have."""
    clients: list[aioredis.Redis] = []

    def make(user: int = 10, project: int = 1000, window_s: float = 60.0,
             max_wait_s: float = 0.0) -> Limiter:
        redis = aioredis.from_url(REDIS_URL)
        clients.append(redis)
        return Limiter(redis, redis_prefix, {"gmail": Limit(user, project)}, window_s,
                       max_wait_s)

    yield make
    for redis in clients:
        await redis.aclose()


def test_units_are_googles_per_method() -> None:
    """Gmail charges its published units per method; Calendar, Drive and People one per call."""
    assert units("gmail.users.messages.get") == 5
    assert units("gmail.users.messages.list") == 5
    assert units("gmail.users.history.list") == 2
    assert units("gmail.users.labels.list") == 1
    assert units("calendar.events.list") == units("drive.files.list") == 1
    assert units("people.people.connections.list") == 1
    assert Charge("gmail.users.messages.get", 50).units == 250
    assert all(discovery.method(m) for m in GMAIL_UNITS)  # every id is a real method


def test_a_request_names_its_own_charge() -> None:
    """The charge of a google-api-python-client request is its discovery method."""
    service = client.service("gmail", "token", Endpoints.from_base("http://127.0.0.1:9"), 1)
    request = service.users().history().list(userId="me", startHistoryId="1")
    assert Charge.of(request.execute) == Charge("gmail.users.history.list")
    with pytest.raises(TypeError):
        Charge.of(lambda: None)
    service.close()


def test_per_minute_settings_scale_to_the_window() -> None:
    """Limits are per minute in settings and per window in the limiter."""
    settings = Settings(quota_window_s=6.0, quota_gmail_user_per_min=15_000)
    limits = limits_from(settings)
    assert limits["gmail"] == Limit(1_500, 120_000)
    assert limits["calendar"].user == 60


async def test_two_limiters_share_one_user_budget(make_limiter: MakeLimiter) -> None:
    """What one process spent, another cannot spend again."""
    first, second = make_limiter(), make_limiter()
    await first.acquire("gmail", "acct-a", 6)
    with pytest.raises(QuotaWaitError) as refused:
        await second.acquire("gmail", "acct-a", 5)
    assert 59 < refused.value.retry_after <= 60  # the first charge leaves the window then
    await second.acquire("gmail", "acct-a", 4)
    await first.acquire("gmail", "acct-b", 10)  # another user has a budget of their own


async def test_project_budget_caps_the_sum_over_users(make_limiter: MakeLimiter) -> None:
    """Users within their own budgets still stop at the project's."""
    limiter = make_limiter(user=10, project=15)
    await limiter.acquire("gmail", "acct-a", 10)
    await limiter.acquire("gmail", "acct-b", 5)
    with pytest.raises(QuotaWaitError):
        await limiter.acquire("gmail", "acct-c", 1)


async def test_a_full_window_is_waited_for_not_exceeded(make_limiter: MakeLimiter) -> None:
    """A charge that does not fit waits until earlier ones leave the window, and says so."""
    limiter = make_limiter(user=10, window_s=0.3, max_wait_s=5.0)
    waited_before = metrics.QUOTA_WAIT_SECONDS.labels(api="gmail")._value.get()
    started = time.monotonic()
    await limiter.acquire("gmail", "acct-a", 10)
    await limiter.acquire("gmail", "acct-a", 5)
    assert time.monotonic() - started >= 0.25
    assert metrics.QUOTA_WAIT_SECONDS.labels(api="gmail")._value.get() > waited_before


class Fenced(Exception):
    """What a job's guard raises once the account is being erased."""


async def test_an_erasure_begun_during_a_quota_wait_stops_the_call_before_it_charges(
    make_limiter: MakeLimiter
) -> None:
    """The guard is asked before each try to charge: a call waiting for a full window
    whose account is fenced meanwhile raises, and is never charged nor sent."""
    limiter, fenced, asked = make_limiter(user=10, window_s=0.6, max_wait_s=5.0), [False], [0]

    async def guard() -> None:
        asked[0] += 1
        if fenced[0]:
            raise Fenced

    budget = Budget(limiter, "acct-a", guard)
    await limiter.acquire("gmail", "acct-a", 10)  # the window is full
    sent = []

    async def fence_soon() -> None:
        await asyncio.sleep(0.1)
        fenced[0] = True

    fencing = asyncio.create_task(fence_soon())
    with pytest.raises(Fenced):
        async with budget.spend(Charge("gmail.users.messages.get")):
            sent.append(1)
    await fencing
    assert asked[0] == 2 and sent == []  # asked before the first try and after the wait
    await asyncio.sleep(0.1)  # the first charge has left the window; a late one would not
    no_wait = make_limiter(user=10, window_s=0.6, max_wait_s=0.0)
    await no_wait.acquire("gmail", "acct-a", 10)  # nothing of the refused call was charged


async def test_a_long_wait_becomes_a_temporary_error(make_limiter: MakeLimiter) -> None:
    """Beyond the longest wait allowed, the limiter raises TemporaryError with retry_after."""
    limiter = make_limiter(user=10, max_wait_s=0.2)
    await limiter.acquire("gmail", "acct-a", 10)
    started = time.monotonic()
    with pytest.raises(TemporaryError) as refused:
        await limiter.acquire("gmail", "acct-a", 1)
    assert time.monotonic() - started < 0.2  # it did not sleep first
    assert refused.value.retry_after is not None and refused.value.retry_after > 59


async def test_a_charge_counts_from_its_sending_not_its_answer(
    make_limiter: MakeLimiter
) -> None:
    """A slow answer does not hold the budget: the charge leaves the window one window
    after the request was sent, so Google's latency tail costs no throughput."""
    limiter = make_limiter(user=10, window_s=0.4)
    async with Budget(limiter, "acct-a").spend(Charge("gmail.users.messages.get", 2)):
        await asyncio.sleep(0.5)  # answered more than a window after it was sent
    await limiter.acquire("gmail", "acct-a", 10)  # no wait allowed: it fits at once


async def test_a_charge_larger_than_the_budget_is_a_configuration_error(
    make_limiter: MakeLimiter
) -> None:
    """A request that could never fit is refused at once, not waited for forever."""
    with pytest.raises(QuotaConfigError):
        await make_limiter(user=200).acquire("gmail", "acct-a", 250)


async def test_an_unreachable_quota_store_is_temporary() -> None:
    """If Redis is down the call is not sent and the job retries later."""
    redis = aioredis.from_url("redis://127.0.0.1:1")
    budget = Budget(Limiter(redis, "p", {"gmail": Limit(10, 10)}, 60, 0), "acct-a")
    with pytest.raises(TemporaryError):
        async with budget.spend(Charge("gmail.users.messages.get")):
            pytest.fail("the request must not be sent")
    await redis.aclose()


async def test_erasure_removes_the_accounts_quota_keys(deps: Deps) -> None:
    """The per-user budget lives under the account's keys; the project's holds no account id."""
    assert deps.limiter is not None
    account_id = "5f0c3f9e-4d7e-4a39-9a51-1b2c3d4e5f60"
    await deps.limiter.acquire("gmail", account_id, 5)
    user_log, user_sum, project_log, _ = deps.limiter.keys("gmail", account_id)
    assert {user_log, user_sum} <= set(await deps.queue.account_keys(account_id))
    members = await deps.queue.redis.zrange(project_log, 0, -1)
    assert members and not any(account_id.encode() in m for m in members)
    await deps.queue.drop_account(account_id)
    assert not await deps.queue.redis.exists(user_log, user_sum)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Gmail budgets of 40 units per 1-second window, so a small mailbox meets them."""
    return settings.model_copy(update={"quota_window_s": 1.0,
                                       "quota_gmail_user_per_min": 2_400})


async def test_a_budget_at_googles_ceiling_is_never_refused(
    api: Any, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """With the client's budget equal to Google's per-user rate, the sync is throttled by
    the client, and a Google that enforces that rate with a short burst (as its per-user
    limits are: a moving average) never refuses a call."""
    emulator.state.quota = QuotaPolicy({"gmail": 40}, window_s=1.0, burst_s=2.0)
    grant = add_gmail_user(emulator.state, "quota@example.com", 12)  # 4 pages × 20 units
    started = time.monotonic()
    await connect(api, grant.refresh_token)
    await run_worker()
    assert emulator.state.quota.refused == {}
    assert emulator.state.quota.charged == {"gmail": 4 * 20 + 1}  # and getProfile's unit
    assert time.monotonic() - started >= 1.0  # 80 units in 40-unit windows: throttled


async def test_the_default_window_paces_a_sync_within_googles_burst(
    api: Any, deps: Deps, emulator: Emulator, run_worker: RunWorker, settings: Settings
) -> None:
    """Google enforces a per-user rate as a moving average and answers bursts with 429:
    with the default window the client spends its per-minute budget as a smooth rate,
    so a Google that allows that rate with a burst of four seconds' worth (the realistic
    benchmark's assumption) refuses nothing, though the sync costs more than one burst."""
    defaults = Settings()
    per_min = 2_400  # 40 units/s
    settings.quota_window_s = defaults.quota_window_s
    settings.quota_gmail_user_per_min = per_min
    emulator.state.quota = QuotaPolicy({"gmail": per_min}, window_s=60.0, burst_s=4.0)
    grant = add_gmail_user(emulator.state, "paced@example.com", 40)
    await connect(api, grant.refresh_token)
    await run_worker()
    assert emulator.state.quota.charged["gmail"] > per_min // 60 * 4  # more than one burst
    assert emulator.state.quota.refused == {}
