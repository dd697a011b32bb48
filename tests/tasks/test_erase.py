"""The erase job records an erasure verified only when its re-count finds nothing left:
what a late writer brings back after the deletion is deleted again, and an erasure that still
finds something keeps its state, its failed check and its unsent receipt."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from gwsync.storage import purge
from gwsync.storage.models import Erasure
from gwsync.tasks import erase
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator, RunWorker
from tests.helpers import USER, synced_user


async def _late_key(deps: Deps, account_id: str) -> str:
    """A quota key of the account written as the limiter writes one (named in its index),
    as a call that lands after the erasure's deletion would."""
    key = deps.queue.account_key(account_id, "quota", "people")
    async with deps.queue.redis.pipeline(transaction=False) as pipe:
        pipe.set(key, "1")
        pipe.sadd(deps.queue.keys_index(account_id), key)
        await pipe.execute()
    return key


def _recount_with_late_writes(monkeypatch: pytest.MonkeyPatch, deps: Deps, account_id: str,
                              times: int) -> list[int]:
    """Before each of the first `times` re-counts, a late writer re-creates a key."""
    real, calls = purge.recount, [0]

    async def recount(sessions: Any, erasure: Erasure) -> dict[str, int]:
        calls[0] += 1
        if calls[0] <= times:
            await _late_key(deps, account_id)
        return await real(sessions, erasure)

    monkeypatch.setattr(purge, "recount", recount)
    return calls


async def _erasure(deps: Deps) -> Erasure:
    async with deps.sessions() as session:
        found = await session.scalar(select(Erasure))
    assert found is not None
    return found


async def test_a_key_brought_back_after_the_deletion_is_deleted_before_the_receipt(
        api: Any, deps: Deps, emulator: Emulator, run_worker: RunWorker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One late key: the job deletes once more, and the erasure is verified with nothing left."""
    _, account_id = await synced_user(api, emulator.state, run_worker, 3)
    calls = _recount_with_late_writes(monkeypatch, deps, account_id, times=1)
    resp = await api.delete(f"/v1/accounts/{account_id}", params={"user_id": USER})
    assert resp.status == 202
    await run_worker()
    erasure = await _erasure(deps)
    assert calls[0] == 2  # the first re-count found the key, the second found nothing
    assert erasure.state == "verified" and erasure.verification["ok"], erasure.verification
    assert await deps.queue.account_keys(account_id) == []


async def test_an_erasure_that_still_finds_something_is_not_reported_verified(
        api: Any, deps: Deps, emulator: Emulator, run_worker: RunWorker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A key that keeps coming back: the erasure stays deleted-not-verified with its failed
    check and no receipt for the app, and the next run, with the writer gone, verifies it."""
    _, account_id = await synced_user(api, emulator.state, run_worker, 3)
    _recount_with_late_writes(monkeypatch, deps, account_id, times=erase.DELETION_PASSES)
    resp = await api.delete(f"/v1/accounts/{account_id}", params={"user_id": USER})
    assert resp.status == 202
    await run_worker()
    erasure = await _erasure(deps)
    assert erasure.state == "deleted" and erasure.completed_at is None
    assert erasure.verification["ok"] is False
    assert erasure.verification["remaining"]["redis_keys"] > 0
    answer = await (await api.get(f"/v1/erasures/{erasure.id}",
                                  params={"user_id": USER})).json()
    assert answer["status"] != "verified", answer
    assert answer["receipt"]["verification"]["ok"] is False

    monkeypatch.undo()
    assert (await erase.erase({"deps": deps}, erasure.id))["outcome"] == "verified"
    erasure = await _erasure(deps)
    assert erasure.state == "verified" and erasure.verification["ok"]
    assert await deps.queue.account_keys(account_id) == []
