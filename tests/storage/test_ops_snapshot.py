"""The ops snapshot costs the fleet's size, never the data's: no `records` scan, no SCAN."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, func, select

from gwsync.domain.features import FEATURES
from gwsync.domain.pages import Page, Removal, Upsert
from gwsync.storage import ops_snapshot, purge
from gwsync.storage.models import Account, Record, RecordCount, is_source_record
from gwsync.tasks.deps import Deps

CONTACTS = FEATURES["contacts"]


def _page(*names: str) -> Page:
    return Page(upserts=[Upsert("contact", f"people/{n}", {"name": n}) for n in names])


@contextmanager
def _statements(deps: Deps) -> Iterator[list[str]]:
    """Every SQL statement the engine sends while the block runs."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(deps.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(deps.engine.sync_engine, "before_cursor_execute", record)


async def _counted(deps: Deps) -> dict[str, int]:
    async with deps.sessions() as session:
        rows = await session.execute(select(RecordCount.feature, RecordCount.records))
        return {f: n for f, n in rows.all() if n}


async def _real(deps: Deps) -> dict[str, int]:
    async with deps.sessions() as session:
        rows = await session.execute(select(Record.feature, func.count())
                                     .where(is_source_record()).group_by(Record.feature))
        return {f: int(n) for f, n in rows.all()}


async def test_record_counts_follow_every_write_and_delete(deps: Deps, account_id: str) -> None:
    """Inserts, updates, removals, derived rows, stale deletes and a partial erasure all
    keep `record_counts` equal to a count of `records`."""
    await deps.store.write_page(account_id, 1, CONTACTS, _page("a", "b", "c"), epoch=1)
    await deps.store.write_page(account_id, 1, CONTACTS, _page("b", "c", "d"), epoch=1)
    assert await _counted(deps) == await _real(deps) == {"contacts": 4}
    await deps.store.write_page(account_id, 1, CONTACTS, Page(
        upserts=[Upsert("derived:suggestions", "suggestions", {"index": {}})],
        removals=[Removal("contact", "people/a"), Removal("contact", "people/zz")]), epoch=1)
    assert await _counted(deps) == await _real(deps) == {"contacts": 3}
    await deps.store.write_page(account_id, 1, CONTACTS, _page("c"), epoch=2)
    await deps.store.delete_stale(account_id, 1, CONTACTS, epoch=2, state={"cursor": "c"})
    assert await _counted(deps) == await _real(deps) == {"contacts": 1}
    async with deps.sessions.begin() as session:
        account = await session.get(Account, account_id)
        assert account is not None
        erasure = await purge.begin(session, deps.keyring, [account],
                                    subject_hash=account.subject_hash, trigger="scope",
                                    scope={"features": ["contacts"]})
    await purge.delete_rows(deps.sessions, erasure)
    assert await _counted(deps) == await _real(deps) == {}


async def test_a_snapshot_never_reads_the_records_table(deps: Deps, account_id: str) -> None:
    """Records are counted from `record_counts`; no statement of a snapshot names `records`."""
    await deps.store.write_page(account_id, 1, CONTACTS, _page("a", "b"), epoch=1)
    with _statements(deps) as seen:
        snap = await ops_snapshot.take_fresh(deps.ops_sources)
    assert snap.records_by_feature == {"contacts": 2}
    assert seen and not [s for s in seen if " records" in s.replace("record_counts", "")]


async def test_a_snapshot_never_scans_the_redis_keyspace(
    deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs in progress are found among the queue's due members, not by SCAN."""
    await deps.queue.redis.set(f"arq:in-progress:{deps.queue.prefix}:sync:x:contacts", b"1")
    await deps.queue.redis.zadd(deps.queue.queue_name, {f"{deps.queue.prefix}:sync:x:contacts": 1})
    sent: list[str] = []
    real: Callable[..., Awaitable[Any]] = deps.queue.redis.execute_command

    async def spy(*args: Any, **kwargs: Any) -> Any:
        sent.append(str(args[0]).upper())
        return await real(*args, **kwargs)

    monkeypatch.setattr(deps.queue.redis, "execute_command", spy)
    snap = await ops_snapshot.take_fresh(deps.ops_sources)
    assert snap.in_progress == 1 and snap.queue_due == 1
    assert sent and "SCAN" not in sent and "KEYS" not in sent


def _count_snapshots(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that gains an item each time a snapshot is really taken (not served cached)."""
    taken: list[int] = []
    real = ops_snapshot.take_fresh

    async def counting(src: ops_snapshot.Sources) -> ops_snapshot.OpsSnapshot:
        taken.append(1)
        return await real(src)

    monkeypatch.setattr(ops_snapshot, "take_fresh", counting)
    return taken


async def test_scrapes_within_the_cache_age_share_one_snapshot(
    deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent and repeated scrapes within `MAX_AGE_S` cost one snapshot; an older one
    is taken again."""
    monkeypatch.setattr(ops_snapshot, "MAX_AGE_S", 60.0)
    taken = _count_snapshots(monkeypatch)
    first = await asyncio.gather(*[deps.snapshot() for _ in range(5)])
    assert len(taken) == 1 and all(s is first[0] for s in first)
    assert await ops_snapshot.take(deps.ops_sources, max_age_s=0.0) is not first[0]
    assert len(taken) == 2


async def test_a_scrape_within_a_scrape_interval_is_served_the_cache_and_refreshes_it(
    deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past `MAX_AGE_S` but within `SERVE_STALE_S`, a scrape gets the cached snapshot
    without waiting and the next one is taken in the background; past `SERVE_STALE_S` a
    scrape waits for a fresh one."""
    monkeypatch.setattr(ops_snapshot, "MAX_AGE_S", 0.0)
    monkeypatch.setattr(ops_snapshot, "SERVE_STALE_S", 15.0)
    taken = _count_snapshots(monkeypatch)
    first = await ops_snapshot.take(deps.ops_sources, max_age_s=0.0)
    served = await deps.snapshot()
    assert served is first and len(taken) == 1
    await ops_snapshot.settle()
    assert len(taken) == 2 and await deps.snapshot() is not first
    await ops_snapshot.settle()
    monkeypatch.setattr(ops_snapshot, "SERVE_STALE_S", 0.0)
    before = len(taken)
    await deps.snapshot()
    assert len(taken) == before + 1
