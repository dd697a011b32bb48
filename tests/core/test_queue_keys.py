"""An account's Redis state is found by name — its hash tag and index sets — never by SCAN."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gwsync.core import queue
from gwsync.tasks.deps import Deps

ACCOUNT = "5f0c3f9e-4d7e-4a39-9a51-1b2c3d4e5f60"
OTHER = "0e1d2c3b-4a59-4687-9a8b-7c6d5e4f3a21"


def _spy(deps: Deps, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    sent: list[str] = []
    real: Callable[..., Awaitable[Any]] = deps.queue.redis.execute_command

    async def command(*args: Any, **kwargs: Any) -> Any:
        sent.append(str(args[0]).upper())
        return await real(*args, **kwargs)

    monkeypatch.setattr(deps.queue.redis, "execute_command", command)
    return sent


async def _fill(deps: Deps, account_id: str) -> None:
    """A quota window, a queued sync and a queued watch job of the account."""
    assert deps.limiter is not None
    await deps.limiter.acquire("gmail", account_id, 5)
    assert await deps.queue.enqueue_sync(account_id, "contacts", 1, defer_s=600)
    assert await deps.queue.enqueue_account_job(
        "watch_feature", account_id, "meetings", 1, None,
        job_id=f"{deps.queue.prefix}:watch:{account_id}:meetings")


def test_every_account_key_is_under_the_accounts_hash_tag(deps: Deps) -> None:
    """Locks, quota windows and the index sets share the tag `{acct:<id>}` (one Cluster
    slot); the project's quota window names no account."""
    assert deps.limiter is not None
    tag = f"{deps.queue.prefix}:{{acct:{ACCOUNT}}}:"
    user_log, user_sum, project_log, project_sum = deps.limiter.keys("gmail", ACCOUNT)
    for key in (deps.queue.lock_key(ACCOUNT, "contacts"), user_log, user_sum,
                deps.queue.keys_index(ACCOUNT), deps.queue.jobs_index(ACCOUNT)):
        assert key.startswith(tag)
    assert ACCOUNT not in project_log + project_sum
    assert queue.keys_index(deps.queue.prefix, ACCOUNT) == deps.queue.keys_index(ACCOUNT)


async def test_an_erasure_finds_and_drops_the_accounts_keys_without_a_scan(
    deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Among 2,000 unrelated keys and another account's, dropping an account removes its
    queued jobs, job keys, quota window and index sets, with no SCAN, KEYS or read of the
    whole queue, and leaves everything else."""
    redis = deps.queue.redis
    async with redis.pipeline(transaction=False) as pipe:
        for n in range(2000):
            pipe.set(f"{deps.queue.prefix}:unrelated:{n}", b"x")
        await pipe.execute()
    await _fill(deps, ACCOUNT)
    await _fill(deps, OTHER)
    sent = _spy(deps, monkeypatch)

    async with deps.queue.lock(ACCOUNT, "contacts", ttl_s=30) as held:
        assert held
        found = await deps.queue.account_keys(ACCOUNT)
        assert deps.queue.lock_key(ACCOUNT, "contacts") in found
        assert len(await deps.queue.queued_jobs(ACCOUNT)) == 2
        jobs, keys = await deps.queue.drop_account(ACCOUNT)

    assert (jobs, keys) == (2, len(found)) and len(found) >= 6
    assert await deps.queue.account_keys(ACCOUNT) == []
    assert await deps.queue.queued_jobs(ACCOUNT) == []
    assert not {"SCAN", "KEYS", "ZRANGE", "ZRANGEBYSCORE"} & set(sent), sent
    assert len(await deps.queue.queued_jobs(OTHER)) == 2
    assert len(await deps.queue.account_keys(OTHER)) == len(found) - 1  # no lock held
    assert await redis.exists(*[f"{deps.queue.prefix}:unrelated:{n}" for n in (0, 1999)]) == 2
