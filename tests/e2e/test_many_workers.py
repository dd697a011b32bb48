"""Many worker processes on one Redis: never two runs of one account and feature at once, a
fleet finishes faster with more processes, and a run killed with kill -9 is recovered."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable

from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from gwsync.connectors.quota import limits_from
from gwsync.core import queue
from gwsync.core.settings import Settings
from gwsync.emulator.mailbox import add_gmail_user
from gwsync.emulator.quota import QuotaPolicy
from gwsync.emulator.seed import CONTACTS_READONLY, seed_demo_user
from gwsync.storage import accounts
from gwsync.storage.models import Record
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator
from tests.helpers import connect, eventually, sync_state
from tests.worker_processes import logged_worker, logged_workers, stop_workers

FEATURE = "contacts"


async def _records(deps: Deps, account_id: str, kind: str = "contact") -> int:
    async with deps.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Record).where(
            Record.account_id == account_id, Record.kind == kind)) or 0)


def _synced(deps: Deps, *account_ids: str,
            feature: str = FEATURE) -> Callable[[], Awaitable[bool]]:
    """True once every account's `feature` is synced and nothing of theirs is queued."""
    async def check() -> bool:
        for account_id in account_ids:
            if (await sync_state(deps, account_id, feature)).status != "ok":
                return False
            if await deps.queue.queued_jobs(account_id) or await deps.queue.locked(
                    account_id, feature):
                return False
        return True
    return check


async def test_two_workers_never_run_one_account_and_feature_at_once(
    api: TestClient, deps: Deps, emulator: Emulator, settings: Settings
) -> None:
    """Dozens of overlapping sync jobs of one account, spread over two worker processes,
    never have two requests of that sync in flight at Google at once."""
    grant = seed_demo_user(emulator.state, 30, scopes=(CONTACTS_READONLY,))
    emulator.state.add_fault("/v1/people", 0, count=10_000, delay_ms=100)
    # Quota is not what this is about: a People budget that never paces these calls.
    workers = await logged_workers(settings, 2, GWSYNC_WORKER_MAX_JOBS="2",
                             GWSYNC_QUOTA_PEOPLE_USER_PER_MIN="60000")
    try:
        account_id = await connect(api, grant.refresh_token)
        job_id = deps.queue.sync_job_id(account_id, FEATURE)
        for i in range(20):  # the coalesced path, and distinct job ids that only the lock stops
            await deps.queue.enqueue_sync(account_id, FEATURE, 1)
            await deps.queue.redis.enqueue_job(queue.SYNC, account_id, FEATURE, 1,
                                               _job_id=f"{job_id}:extra{i}")
            await asyncio.sleep(0.05)
        await eventually(_synced(deps, account_id), within_s=40)
    finally:
        await stop_workers(*workers)
    starts = [w.count(":sync_feature(") for w in workers]
    runs = sum(w.count('"sync_done"') for w in workers)
    print(f"\njob starts per worker {starts}, completed runs {runs}, peak concurrent "
          f"requests {emulator.state.peak_concurrency(grant.user, '/v1/people')}")
    assert all(starts), "both processes must have competed for the account"
    assert runs >= 2
    assert emulator.state.peak_concurrency(grant.user, "/v1/people") == 1
    assert await _records(deps, account_id) == 30


FLEET, CONTACTS, MAX_JOBS, LATENCY_MS = 12, 9, "3", 150


async def _fleet(deps: Deps, emulator: Emulator, first: int) -> list[str]:
    """FLEET accounts with their grants stored and nothing queued yet."""
    ids = []
    for n in range(first, first + FLEET):
        grant = seed_demo_user(emulator.state, CONTACTS, email=f"fleet{n}@example.com",
                               scopes=(CONTACTS_READONLY,))
        async with deps.sessions.begin() as session:
            account = await accounts.create(
                session, deps.keyring, user_id=f"fleet-{n}",
                refresh_token=grant.refresh_token, granted_scopes=frozenset(grant.scopes))
        ids.append(account.id)
    return ids


async def _run_fleet(deps: Deps, emulator: Emulator, settings: Settings,
                     processes: int, first: int) -> int:
    """Sync a fleet with `processes` workers → the most People calls ever open at once."""
    ids = await _fleet(deps, emulator, first)
    workers = await logged_workers(settings, processes, GWSYNC_WORKER_MAX_JOBS=MAX_JOBS)
    since = time.time()
    try:
        for account_id in ids:
            await deps.queue.enqueue_sync(account_id, FEATURE, 1)
        await eventually(_synced(deps, *ids), within_s=60, every_s=0.02)
    finally:
        await stop_workers(*workers)
    assert [await _records(deps, a) for a in ids] == [CONTACTS] * FLEET
    return _peak_open(emulator, "/v1/people", since, LATENCY_MS / 1000)


def _peak_open(emulator: Emulator, prefix: str, since: float, lasts_s: float) -> int:
    """A lower bound on the calls under `prefix` open at once: every call is held open at
    least `lasts_s` (an injected delay), so calls that arrived within less than that of
    each other were all open when the last of them arrived."""
    times = sorted(t for _, path, t in emulator.state.requests.arrivals
                   if path.startswith(prefix) and t >= since)
    peak, first = 0, 0
    for last, arrived in enumerate(times):
        while arrived - times[first] >= lasts_s:
            first += 1
        peak = max(peak, last - first + 1)
    return peak


async def test_a_second_worker_process_runs_more_of_a_fleet_at_once_than_one_can(
    deps: Deps, emulator: Emulator, settings: Settings
) -> None:
    """With each process limited to 3 jobs at once, one worker never has more than 3 of a
    fleet's Google calls open together, and two workers have more: the second process
    takes syncs the first cannot (counted at the emulator, not timed)."""
    emulator.state.add_fault("/v1/people", 0, count=100_000, delay_ms=LATENCY_MS)
    one = await _run_fleet(deps, emulator, settings, 1, first=0)
    two = await _run_fleet(deps, emulator, settings, 2, first=100)
    assert 0 < one <= int(MAX_JOBS) < two, (one, two)


async def test_a_sync_killed_with_kill_9_is_recovered_by_the_next_worker(
    api: TestClient, deps: Deps, emulator: Emulator, settings: Settings
) -> None:
    """kill -9 mid-sync leaves it `running`; the next worker marks it stuck, frees arq's job
    at once (not after the job timeout) and finishes it from its last checkpoint."""
    grant = seed_demo_user(emulator.state, 30, scopes=(CONTACTS_READONLY,))
    emulator.state.add_fault("/v1/people", 0, count=10_000, delay_ms=200)
    fast_recovery = {"GWSYNC_SYNC_LOCK_S": "1", "GWSYNC_SYNC_STUCK_AFTER_S": "1"}
    first = await logged_worker(settings, **fast_recovery)
    try:
        account_id = await connect(api, grant.refresh_token)

        async def some_pages_written() -> bool:
            return await _records(deps, account_id) >= 6
        await eventually(some_pages_written, within_s=30)
    finally:
        first.proc.send_signal(signal.SIGKILL)
        await stop_workers(first)
    killed = await sync_state(deps, account_id)
    assert killed.status == "running" and await _records(deps, account_id) < 30

    async def lock_lapsed() -> bool:
        return not await deps.queue.locked(account_id, FEATURE)
    await eventually(lock_lapsed, within_s=5)
    second = await logged_worker(settings, **fast_recovery)
    try:
        await eventually(_synced(deps, account_id), within_s=30)
    finally:
        await stop_workers(second)
    assert second.count('"stuck_syncs_recovered"', '"count": 1')
    assert await _records(deps, account_id) == 30


MAIL, MAILBOXES, MESSAGES = "mail_activity", 4, 250
QUOTA_WINDOW_S, PROJECT_UNITS = 2.0, 1_000
#: The longest a charge may take from its stamp in Redis to Google's count of it (the
#: guard, the thread, the HTTP round trip) for the peak check below to be exact.
SEND_SLACK_S = 0.5


def _peak_units(charges: list[tuple[float, str, str, int]], window_s: float) -> int:
    """The most units charged, over all users, in any window (t - window_s, t]."""
    times = sorted((at, units) for at, _, _, units in charges)
    peak = inside = first = 0
    for at, units in times:
        inside += units
        while times[first][0] <= at - window_s:
            inside -= times[first][1]
            first += 1
        peak = max(peak, inside)
    return peak


async def _mailboxes(deps: Deps, emulator: Emulator) -> list[str]:
    """MAILBOXES Gmail users of MESSAGES messages each, stored as accounts, nothing queued."""
    ids = []
    for n in range(MAILBOXES):
        grant = add_gmail_user(emulator.state, f"mail{n}@example.com", MESSAGES)
        async with deps.sessions.begin() as session:
            account = await accounts.create(
                session, deps.keyring, user_id=f"mail-{n}",
                refresh_token=grant.refresh_token, granted_scopes=frozenset(grant.scopes))
        ids.append(account.id)
    return ids


async def test_two_workers_share_one_project_quota(
    deps: Deps, emulator: Emulator, settings: Settings
) -> None:
    """Two worker processes syncing several mailboxes at once charge Google, over all users,
    no more than the project's budget in any quota window, and every sync ends ok."""
    per_min = int(PROJECT_UNITS * 60 / QUOTA_WINDOW_S)
    budget = limits_from(settings.model_copy(update={
        "quota_window_s": QUOTA_WINDOW_S, "quota_gmail_project_per_min": per_min}))["gmail"]
    assert budget.project == PROJECT_UNITS
    # Google's per-user rate as strict as the project's (a rate with a burst, as Google's
    # per-user limits are): one user over it would be refused.
    emulator.state.quota = policy = QuotaPolicy({"gmail": PROJECT_UNITS}, QUOTA_WINDOW_S,
                                                burst_s=2 * QUOTA_WINDOW_S)
    ids = await _mailboxes(deps, emulator)
    workers = await logged_workers(
        settings, 2, GWSYNC_WORKER_MAX_JOBS="2", GWSYNC_SYNC_PAGE_SIZE="100",
        GWSYNC_QUOTA_ENABLED="true", GWSYNC_QUOTA_WINDOW_S=str(QUOTA_WINDOW_S),
        GWSYNC_QUOTA_GMAIL_PROJECT_PER_MIN=str(per_min),
        GWSYNC_QUOTA_GMAIL_USER_PER_MIN=str(100 * per_min))  # only the project's binds
    try:
        for account_id in ids:  # four jobs, two per process at most: both must take some
            await deps.queue.enqueue_sync(account_id, MAIL, 1)
        await eventually(_synced(deps, *ids, feature=MAIL), within_s=40)
    finally:
        await stop_workers(*workers)
    starts = [w.count(":sync_feature(") for w in workers]
    charged = sum(units for _, _, _, units in policy.admitted)
    # Exact, with no tolerance: the limiter stamps a charge just before the request is
    # sent, so the requests sent in any window cost at most the budget; the emulator
    # counts each up to SEND_SLACK_S later, so any window SEND_SLACK_S shorter holds only
    # requests sent within one window.
    peak = _peak_units(policy.admitted, QUOTA_WINDOW_S - SEND_SLACK_S)
    span = policy.admitted[-1][0] - policy.admitted[0][0]
    print(f"\n{MAILBOXES} mailboxes x {MESSAGES} messages, 2 workers (job starts {starts}): "
          f"{charged} Gmail units over {span:.1f} s; peak units in any "
          f"{QUOTA_WINDOW_S - SEND_SLACK_S} s "
          f"window {peak} of a project budget of {PROJECT_UNITS}")
    assert all(starts), "both processes must have synced some of the mailboxes"
    assert charged > 3 * PROJECT_UNITS, "the fleet must need several windows"
    assert peak <= PROJECT_UNITS
    assert policy.refused == {}
    assert {c["status"] for c in emulator.state.calls()} == {200}
    assert [await _records(deps, a, "message") for a in ids] == [MESSAGES] * MAILBOXES
