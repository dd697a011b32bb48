"""Erasure: for an account holding many records, the time from an erasure request to
its data key being destroyed (the request's own transaction: fence, seal, shred) and to
a verified receipt (a real worker revokes, deletes every row and Redis key, re-counts)."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import func, select

from bench.harness import BenchError, Deployment, mail_scope
from bench.report import Row
from gwsync.domain import features
from gwsync.domain.pages import Page, Upsert
from gwsync.storage.models import DataKey, Erasure, Record
from gwsync.tasks import erase

NAME = "erasure"
KEY_GOAL_MS = 100
PAGE = 5000


async def _fill(dep: Deployment, account_id: str, n: int) -> None:
    """`n` valid encrypted records, written through the record store's bulk path."""
    feature = features.FEATURES["mail_activity"]
    for start in range(0, n, PAGE):
        page = Page(upserts=[Upsert("message", f"m{i:08d}", {
            "from": f"Sender {i} <s{i}@example.com>", "to": "bench@example.com",
            "subject": f"Subject {i}", "date": "2026-06-01T00:00:00Z"})
            for i in range(start, min(n, start + PAGE))])
        await dep.deps.store.write_page(account_id, 1, feature, page, epoch=1)


async def _count(dep: Deployment, model: type, account_id: str) -> int:
    async with dep.deps.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(
            model.account_id == account_id)) or 0)


async def _verified(dep: Deployment, erasure_id: str, within_s: float = 600) -> Erasure:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        async with dep.deps.sessions() as session:
            erasure = await session.get(Erasure, erasure_id)
        if erasure is not None and erasure.state == "verified":
            return erasure
        await asyncio.sleep(0.01)
    raise BenchError("the erasure was not verified in time")


async def run(dep: Deployment, n: int) -> list[Row]:
    _, token = await dep.emulator.gmail_user(0)
    account_id = await dep.connect(token, mail_scope())
    await _fill(dep, account_id, n)
    if await _count(dep, Record, account_id) != n:
        raise BenchError("the account does not hold the records it should")
    await dep.start_worker()
    await asyncio.sleep(2)  # the worker is up and idle before the request
    try:
        started = time.perf_counter()
        erasure_id = await erase.request(dep.deps, [account_id], subject_hash="bench",
                                         trigger="user_request")
        key_ms = (time.perf_counter() - started) * 1000
        if await _count(dep, DataKey, account_id):
            raise BenchError("the data key outlived the request")
        erasure = await _verified(dep, erasure_id)
        verified_s = time.perf_counter() - started
    finally:
        await dep.stop_workers()
    ok = bool(erasure.verification.get("ok"))
    return [
        Row(NAME, f"request → data key destroyed (committed), {n:,} records",
            f"{key_ms:.1f} ms", f"≤ {KEY_GOAL_MS} ms", key_ms <= KEY_GOAL_MS),
        Row(NAME, f"request → verified receipt, {n:,} records (re-count all zero: "
            f"{'yes' if ok else 'NO'})", f"{verified_s:.2f} s", "reported", None if ok else False),
    ]
