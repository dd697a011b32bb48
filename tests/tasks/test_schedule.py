"""The scheduling crons: due syncs are enqueued with jitter, stuck syncs are recovered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from arq.constants import job_key_prefix
from arq.jobs import deserialize_job
from sqlalchemy import event, text, update

from gwsync.core import queue as jobs
from gwsync.core.timeutil import as_utc, utcnow
from gwsync.emulator.seed import CONTACTS_READONLY, DEMO_SCOPES, seed_demo_user
from gwsync.storage import accounts
from gwsync.storage.models import DUE_NOW, Account, SyncState
from gwsync.tasks import schedule
from gwsync.tasks.deps import Deps
from gwsync.tasks.schedule import due_rows, enqueue_due_syncs, recover_stuck_syncs
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
    """Set sync-state columns; moving a run's times also lets the scheduler's look-again
    time pass (`next_due_at`), as the time travelled would have."""
    if {"started_at", "last_synced_at"} & set(values):
        values.setdefault("next_due_at", DUE_NOW)
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
    resp = await api.delete(f"/v1/accounts/{erased}", params={"user_id": "user-3"})
    assert resp.status == 202
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


class _RedisCalls:
    """Counts what a client sends: direct commands and pipelines (a round trip each)."""

    def __init__(self, deps: Deps, monkeypatch: Any) -> None:
        self.commands: list[str] = []
        self.pipelines = 0
        redis = deps.queue.redis
        real_command: Callable[..., Awaitable[Any]] = redis.execute_command
        real_pipeline = redis.pipeline

        async def command(*args: Any, **kwargs: Any) -> Any:
            # The command's first word: redis-py sends a script's first load as "SCRIPT LOAD".
            self.commands.append(str(args[0]).split()[0].upper())
            return await real_command(*args, **kwargs)

        def pipeline(*args: Any, **kwargs: Any) -> Any:
            self.pipelines += 1
            return real_pipeline(*args, **kwargs)

        monkeypatch.setattr(redis, "execute_command", command)
        monkeypatch.setattr(redis, "pipeline", pipeline)

    @property
    def round_trips(self) -> int:
        return len(self.commands) + self.pipelines


async def test_a_tick_enqueues_its_due_syncs_in_one_pipelined_round_trip(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker, monkeypatch: Any
) -> None:
    """Thirty due syncs cost a few Redis round trips, not one or more per sync; a second
    tick right after reads no row as due and sends Redis nothing."""
    ids = [await _user(api, emulator, n) for n in range(6)]
    await run_worker()
    for account_id in ids:
        await _age(deps, account_id, deps.settings.sync_interval_s + 5)
    calls = _RedisCalls(deps, monkeypatch)
    assert await enqueue_due_syncs(_ctx(deps, sync_jitter_s=0)) == 30
    assert calls.round_trips <= 4, calls.commands
    before = calls.round_trips
    assert await enqueue_due_syncs(_ctx(deps, sync_jitter_s=0)) == 0
    assert calls.round_trips == before


async def test_a_row_synced_meanwhile_is_looked_at_again_when_it_falls_due(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """A row whose look-again time came but which a push-triggered sync refreshed is not
    enqueued; it is moved to an interval after that sync (rounded up to the minute)."""
    account_id = await _user(api, emulator, 1, scopes=(CONTACTS_READONLY,))
    await run_worker()
    synced = utcnow() - timedelta(seconds=60)
    await _set_state(deps, account_id, CONTACTS, started_at=synced, last_synced_at=synced)
    assert await enqueue_due_syncs(_ctx(deps, sync_jitter_s=0)) == 0
    state = await sync_state(deps, account_id)
    expected = synced + timedelta(seconds=deps.settings.sync_interval_s)
    assert 0 <= (as_utc(state.next_due_at) - expected).total_seconds() < 60


async def test_the_due_selection_is_an_index_range_on_postgresql(deps: Deps) -> None:
    """PostgreSQL plans the scheduler's query on `ix_sync_states_next_due_at` (with
    sequential scans priced out, as on a table too big to scan)."""
    if deps.engine.dialect.name != "postgresql":
        pytest.skip("query plans are PostgreSQL's")
    query = due_rows(utcnow(), timedelta(seconds=900)).compile(dialect=deps.engine.dialect)
    params = tuple(query.params[name] for name in query.positiontup or ())
    async with deps.engine.connect() as conn:
        await conn.execute(text("SET enable_seqscan = off"))
        found = await conn.exec_driver_sql(f"EXPLAIN {query}", params)
        plan = "\n".join(r[0] for r in found.all())
    assert "ix_sync_states_next_due_at" in plan, plan


async def test_a_tick_pages_through_every_due_row_once(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker, monkeypatch: Any
) -> None:
    """With pages of 3, twenty due rows (all due at the same instant) are each enqueued
    once, none skipped or read twice."""
    ids = [await _user(api, emulator, n) for n in range(4)]
    await run_worker()
    for account_id in ids:
        await _age(deps, account_id, deps.settings.sync_interval_s + 5)
    monkeypatch.setattr(schedule, "BATCH", 3)
    assert await enqueue_due_syncs(_ctx(deps, sync_jitter_s=0)) == 20
    for account_id in ids:
        assert await _queued(deps, account_id) == set(ALL_FEATURES)


async def test_a_tick_whose_enqueue_fails_leaves_its_rows_due(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker, monkeypatch: Any
) -> None:
    """The claim commits only after the enqueue: when Redis fails mid-tick, every row it
    read is still due, and the next tick enqueues it."""
    account_id = await _user(api, emulator, 0)
    await run_worker()
    await _age(deps, account_id, deps.settings.sync_interval_s + 5)

    async def broken(syncs: Any) -> int:
        raise ConnectionError("redis went away")

    monkeypatch.setattr(deps.queue, "enqueue_syncs", broken)
    with pytest.raises(ConnectionError):
        await enqueue_due_syncs(_ctx(deps, sync_jitter_s=0))
    monkeypatch.undo()
    assert await enqueue_due_syncs(_ctx(deps, sync_jitter_s=0)) == len(ALL_FEATURES)
    assert await _queued(deps, account_id) == set(ALL_FEATURES)


async def _dispatch(deps: Deps) -> int:
    """Run (and take off the queue) the dispatch jobs queued, as a worker would → syncs
    queued."""
    queue, queued = deps.queue, 0
    for job_id in await queue.redis.zrange(queue.queue_name, 0, -1):
        data = await queue.redis.get(job_key_prefix + job_id.decode())
        job = deserialize_job(data, deserializer=jobs.deserialize) if data else None
        if job is not None and job.function == schedule.DISPATCH:
            await queue.redis.zrem(queue.queue_name, job_id)
            queued += (await schedule.dispatch_due_syncs({"deps": deps}, *job.args))["queued"]
    return queued


def _statements(deps: Deps) -> list[str]:
    """Every SQL statement the engine sends from now on."""
    sent: list[str] = []
    event.listen(deps.engine.sync_engine, "before_cursor_execute",
                 lambda _c, _cur, sql, *_: sent.append(sql))
    return sent


async def _due_fleet(api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker,
                     n: int) -> list[str]:
    """`n` accounts with all five features due."""
    ids = [await _user(api, emulator, k) for k in range(n)]
    await run_worker()
    for account_id in ids:
        await _age(deps, account_id, deps.settings.sync_interval_s + 5)
    return ids


async def test_past_one_slice_a_tick_reads_the_slice_bounds_and_queues_a_job_per_slice(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker, monkeypatch: Any
) -> None:
    """With slices of 4, a tick over 20 due rows sends one SQL statement and one Redis call,
    queues no sync itself but 6 dispatch jobs, and those queue every due row once."""
    ids = await _due_fleet(api, deps, emulator, run_worker, 4)
    monkeypatch.setattr(schedule, "SLICE", 4)
    sent, calls = _statements(deps), _RedisCalls(deps, monkeypatch)
    assert await enqueue_due_syncs(_ctx(deps, sync_jitter_s=0)) == 0
    assert len(sent) == 1, sent
    assert calls.commands in (["EVALSHA"], ["EVALSHA", "SCRIPT", "EVALSHA"]), calls.commands
    assert [await _queued(deps, a) for a in ids] == [set()] * len(ids)
    assert await deps.queue.redis.zcard(deps.queue.queue_name) == 6  # 20 ÷ 4, and the tail
    assert await _dispatch(deps) == 20
    for account_id in ids:
        assert await _queued(deps, account_id) == set(ALL_FEATURES)


async def test_a_second_tick_before_the_dispatch_jobs_ran_claims_each_row_once(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker, monkeypatch: Any
) -> None:
    """Two ticks dispatch the same still-due rows twice; their dispatch jobs hand Redis
    each row once, not twice (the first claim moves the row on)."""
    await _due_fleet(api, deps, emulator, run_worker, 4)
    monkeypatch.setattr(schedule, "SLICE", 4)
    asked: list[Any] = []
    real = deps.queue.enqueue_syncs

    async def counted(syncs: Any) -> int:
        asked.extend(syncs)
        return await real(syncs)

    monkeypatch.setattr(deps.queue, "enqueue_syncs", counted)
    for _ in range(2):
        assert await enqueue_due_syncs(_ctx(deps, sync_jitter_s=0)) == 0
        await asyncio.sleep(0.002)  # the next tick's job ids carry a later millisecond
    assert await deps.queue.redis.zcard(deps.queue.queue_name) == 12
    assert await _dispatch(deps) == 20
    assert len(asked) == 20 and len({(a, f) for a, f, *_ in asked}) == 20


async def test_an_account_erased_after_the_tick_is_not_queued_by_its_dispatch_job(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker, monkeypatch: Any
) -> None:
    """The rule is checked when a slice is claimed, not when the tick cut it: an account
    that stopped being active in between gets nothing queued."""
    kept, erased = await _due_fleet(api, deps, emulator, run_worker, 2)
    monkeypatch.setattr(schedule, "SLICE", 3)
    assert await enqueue_due_syncs(_ctx(deps, sync_jitter_s=0)) == 0
    async with deps.sessions.begin() as session:
        await session.execute(update(Account).where(Account.id == erased)
                              .values(status=accounts.ERASING))
    assert await _dispatch(deps) == len(ALL_FEATURES)
    assert await _queued(deps, kept) == set(ALL_FEATURES)
    assert await _queued(deps, erased) == set()


async def test_a_dispatch_job_that_fails_leaves_its_slice_due_for_the_next_tick(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker, monkeypatch: Any
) -> None:
    """The tick writes nothing: when Redis fails under the dispatch jobs, every row stays
    due, and the next tick's jobs queue them all."""
    ids = await _due_fleet(api, deps, emulator, run_worker, 4)
    monkeypatch.setattr(schedule, "SLICE", 4)
    assert await enqueue_due_syncs(_ctx(deps, sync_jitter_s=0)) == 0

    async def broken(syncs: Any) -> int:
        raise ConnectionError("redis went away")

    with monkeypatch.context() as patched:
        patched.setattr(deps.queue, "enqueue_syncs", broken)
        with pytest.raises(ConnectionError):
            await _dispatch(deps)
    await deps.queue.redis.delete(deps.queue.queue_name)  # the rest of those jobs lost too
    assert await enqueue_due_syncs(_ctx(deps, sync_jitter_s=0)) == 0
    assert await _dispatch(deps) == 20
    for account_id in ids:
        assert await _queued(deps, account_id) == set(ALL_FEATURES)


async def test_the_slice_bounds_are_an_index_only_scan_on_postgresql(deps: Deps) -> None:
    """PostgreSQL numbers the due keys from `ix_sync_states_next_due_at` alone, never the
    table (with the whole-table plans priced out), so cutting the slices costs index
    entries, not rows."""
    if deps.engine.dialect.name != "postgresql":
        pytest.skip("query plans are PostgreSQL's")
    query = schedule.slice_bounds(utcnow(), 500).compile(dialect=deps.engine.dialect)
    params = tuple(query.params[name] for name in query.positiontup or ())
    async with deps.engine.connect() as conn:
        for scan in ("seqscan", "bitmapscan"):  # as on a table too big to read
            await conn.execute(text(f"SET enable_{scan} = off"))
        found = await conn.exec_driver_sql(f"EXPLAIN {query}", params)
        plan = "\n".join(r[0] for r in found.all())
    assert "Index Only Scan using ix_sync_states_next_due_at" in plan, plan


async def test_a_dispatch_job_with_bad_arguments_does_nothing(deps: Deps) -> None:
    """A dispatch job whose arguments are not a tick's (written by someone else) is refused."""
    for args in ((["x"], None, utcnow().isoformat()), (None, None, 7), ([1, 2, 3], None, "")):
        assert await schedule.dispatch_due_syncs({"deps": deps}, *args) == {"outcome": "bad_args"}
