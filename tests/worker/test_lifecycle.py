"""A worker process an orchestrator can probe and stop: `gwsync worker --check` says whether
it lives, and SIGTERM lets the jobs it is running finish within GWSYNC_WORKER_STOP_GRACE_S."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from gwsync.core.settings import Settings
from gwsync.devtools import processes
from gwsync.emulator.seed import seed_demo_user
from gwsync.storage.models import SyncState
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator
from tests.helpers import (
    connect,
    eventually,
    settings_env,
    start_worker,
    stored_contacts,
    sync_state,
)

#: Neither probe nor shutdown depends on the database: one is enough.
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

CONTACTS = 30  # 10 pages of 3 (the test deployment's page size)
SLOW_PAGE = {"count": 100, "delay_ms": 300}  # every People page answers after 0.3 s


async def _check(settings: Settings, **extra: str) -> tuple[int, str]:
    """Run `gwsync worker --check` as a probe would: its exit code and what it printed."""
    gwsync = str(Path(sys.executable).with_name("gwsync"))
    proc = await asyncio.create_subprocess_exec(
        gwsync, "worker", "--check", env=settings_env(settings, **extra),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, (out + err).decode().strip()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_check_passes_while_a_worker_runs_and_fails_once_it_stopped(
    settings: Settings,
) -> None:
    """No worker: exit 1 with the reason; a running worker: exit 0; stopped again: exit 1."""
    code, said = await _check(settings)
    assert code == 1 and said.count("\n") == 0 and "no worker has refreshed" in said, said
    worker = await start_worker(settings)
    try:
        async def live() -> bool:
            return (await _check(settings))[0] == 0
        await eventually(live, within_s=30, every_s=0.5)
    finally:
        await processes.stop(worker)
    code, said = await _check(settings)
    assert code == 1 and f"{settings.queue_name}:health-check" in said, said


async def test_check_fails_when_redis_does_not_answer(settings: Settings) -> None:
    """A Redis nobody listens on is one line and a non-zero exit, not a traceback."""
    code, said = await _check(settings,
                              GWSYNC_REDIS_URL=f"redis://127.0.0.1:{_closed_port()}/0")
    assert code == 1, said
    assert said == "Error: worker not live: redis does not answer: ConnectionError"


async def _sigterm_mid_sync(
    api: TestClient, deps: Deps, emulator: Emulator, settings: Settings, grace_s: str
) -> tuple[str, int, float]:
    """Start a slow sync in a real worker, SIGTERM it mid-way: account, exit code, seconds."""
    emulator.state.add_fault("/v1/people", 0, **SLOW_PAGE)
    worker = await start_worker(settings, GWSYNC_WORKER_STOP_GRACE_S=grace_s)
    try:
        account_id = await connect(api, seed_demo_user(emulator.state, CONTACTS).refresh_token)

        async def running() -> bool:
            async with deps.sessions() as session:
                state = await session.get(SyncState, (account_id, "contacts"))
            return state is not None and state.status == "running"
        await eventually(running, within_s=30)
        worker.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = await asyncio.wait_for(worker.wait(), 30)
        return account_id, code, time.monotonic() - sent
    finally:
        await processes.stop(worker)


async def test_sigterm_lets_a_running_sync_finish(
    api: TestClient, deps: Deps, emulator: Emulator, settings: Settings
) -> None:
    """SIGTERM mid-sync: the sync completes within the grace and the process exits 0."""
    account_id, code, took = await _sigterm_mid_sync(api, deps, emulator, settings, "20")
    assert code == 0
    assert (await sync_state(deps, account_id)).status == "ok"
    assert len(await stored_contacts(deps, account_id)) == CONTACTS
    assert took < 20
    print(f"SIGTERM to exit, sync finished: {took:.1f} s")


async def test_a_sync_past_the_grace_is_cancelled_and_stays_queued(
    api: TestClient, deps: Deps, emulator: Emulator, settings: Settings
) -> None:
    """A sync longer than the grace is cancelled when it ends and stays queued, not lost."""
    account_id, code, took = await _sigterm_mid_sync(api, deps, emulator, settings, "0.5")
    assert code == 0
    assert took < 5
    assert (await sync_state(deps, account_id)).status == "running"  # the stuck-sync cron's
    assert await deps.queue.queued_jobs(account_id)  # or the next worker's to finish
    print(f"SIGTERM to exit, sync cancelled: {took:.1f} s")
