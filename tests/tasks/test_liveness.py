"""An account's jobs stop calling Google once its erasure begins: the Redis fence is asked
before each call, and the erasure cancels the account's running jobs."""

from __future__ import annotations

import pytest
from arq.constants import abort_jobs_ss, in_progress_key_prefix

from gwsync.connectors import client, quota
from gwsync.connectors.errors import TemporaryError
from gwsync.storage.accounts import FencedError
from gwsync.tasks import erase
from gwsync.tasks.deps import Deps
from gwsync.tasks.liveness import Live

ACCOUNT = "5f0c3f9e-4d7e-4a39-9a51-1b2c3d4e5f60"
OTHER = "0e1d2c3b-4a59-4687-9a8b-7c6d5e4f3a21"


class _Request:
    """A stand-in for `request.execute` that counts whether it was sent."""

    methodId = "people.people.connections.list"

    def __init__(self) -> None:
        self.sent = 0

    def execute(self) -> dict[str, str]:
        self.sent += 1
        return {}


async def test_a_fenced_account_sends_no_request(deps: Deps) -> None:
    """Once the account's erasure fence is set, `execute` raises FencedError and the
    request is never sent; another account's calls go on."""
    mine, other = _Request(), _Request()
    budget = quota.Budget(deps.limiter, ACCOUNT, Live(deps.queue, ACCOUNT))
    await client.execute(mine.execute, quota=budget)
    await deps.queue.fence_erased([ACCOUNT], 60)
    with pytest.raises(FencedError):
        await client.execute(mine.execute, quota=budget)
    await client.execute(other.execute,
                         quota=quota.Budget(deps.limiter, OTHER, Live(deps.queue, OTHER)))
    assert (mine.sent, other.sent) == (1, 1)


async def test_the_fence_expires_and_sits_outside_the_accounts_key_index(deps: Deps) -> None:
    """The fence lives about `ttl_s` and is not among the keys the erasure deletes, so it
    outlasts the erasure that set it."""
    await deps.queue.fence_erased([ACCOUNT], 30)
    ttl = await deps.queue.redis.pttl(deps.queue.erased_key(ACCOUNT))
    assert 29_000 < ttl <= 30_000
    assert deps.queue.erased_key(ACCOUNT) not in await deps.queue.account_keys(ACCOUNT)
    await deps.queue.drop_account(ACCOUNT)
    assert await deps.queue.is_erased(ACCOUNT)


async def test_an_unreachable_fence_defers_rather_than_calls(
    deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis failure while checking the fence is a temporary error, not a green light."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    async def down(_: str) -> bool:
        raise RedisConnectionError("down")
    monkeypatch.setattr(deps.queue, "is_erased", down)
    with pytest.raises(TemporaryError):
        await Live(deps.queue, ACCOUNT)()


async def test_only_running_jobs_get_an_abort_mark(deps: Deps) -> None:
    """`abort_running` marks the account's jobs a worker is running, not the queued ones,
    and the erasure's key deletion clears any mark left."""
    await deps.queue.enqueue_sync(ACCOUNT, "contacts", 1)
    await deps.queue.enqueue_sync(ACCOUNT, "meetings", 1)
    running = deps.queue.sync_job_id(ACCOUNT, "contacts")
    await deps.queue.redis.set(in_progress_key_prefix + running, b"1", px=5_000)
    try:
        assert await deps.queue.abort_running(ACCOUNT) == 1
        marked = {m.decode() for m in await deps.queue.redis.zrange(abort_jobs_ss, 0, -1)}
        assert running in marked
        assert deps.queue.sync_job_id(ACCOUNT, "meetings") not in marked
        await deps.queue.drop_account(ACCOUNT)
        assert await deps.queue.redis.zscore(abort_jobs_ss, running) is None
    finally:
        await deps.queue.redis.delete(in_progress_key_prefix + running)
        await deps.queue.redis.zrem(abort_jobs_ss, running)


async def test_an_erasure_request_sets_the_fence_before_it_begins(
    deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even an erasure whose transaction fails has fenced the account first (the safe
    side); a partial erasure sets no fence."""
    seen: list[bool] = []

    async def failing_begin(*_: object, **__: object) -> None:
        seen.append(await deps.queue.is_erased(ACCOUNT) or await deps.queue.is_erased(OTHER))
        raise RuntimeError("database down")
    monkeypatch.setattr(erase.purge, "begin", failing_begin)
    with pytest.raises(RuntimeError):
        await erase.request(deps, [OTHER], subject_hash="s", trigger="disconnect",
                            scope={"features": ["contacts"]})
    with pytest.raises(RuntimeError):
        await erase.request(deps, [ACCOUNT], subject_hash="s", trigger="disconnect")
    assert seen == [False, True]
    assert not await deps.queue.is_erased(OTHER)


async def test_a_call_refused_after_the_erasure_deleted_the_keys_leaves_no_key(
    deps: Deps,
) -> None:
    """A sync that calls Google once its account's keys are deleted (say, waking after the
    erasure stopped waiting for it) is refused before it charges quota: no key of the
    account comes back."""
    request = _Request()
    budget = quota.Budget(deps.limiter, ACCOUNT, Live(deps.queue, ACCOUNT))
    await client.execute(request.execute, quota=budget)
    assert await deps.queue.account_keys(ACCOUNT), "the first call charged nothing"
    await deps.queue.fence_erased([ACCOUNT], 60)
    await deps.queue.drop_account(ACCOUNT)
    with pytest.raises(FencedError):
        await client.execute(request.execute, quota=budget)
    left = [k async for k in deps.queue.redis.scan_iter(match=f"*{ACCOUNT}*")]
    assert [k.decode() for k in left] == [deps.queue.erased_key(ACCOUNT)]
    assert request.sent == 1
