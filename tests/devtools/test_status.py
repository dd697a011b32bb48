"""`gwsync status` shows what the database and Redis hold, as JSON and as tables."""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from gwsync.core.settings import Settings
from gwsync.storage.models import AccessLog, Account, Erasure, Record, SyncState, is_source_record
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator, RunWorker
from tests.helpers import USER, run_gwsync, synced_user


async def _grouped(deps: Deps, column: Any, *where: Any) -> dict[str, int]:
    async with deps.sessions() as session:
        rows = await session.execute(select(column, func.count()).where(*where)
                                     .group_by(column))
        return {str(k): int(v) for k, v in rows.all()}


async def populated(api: TestClient, emulator: Emulator, run_worker: RunWorker) -> None:
    """Two synced users, one refused read, one erasure requested and not yet run."""
    _g, first = await synced_user(api, emulator.state, run_worker, 4)
    await api.get(f"/v1/accounts/{first}/records", params={"user_id": USER, "use": "advertising"})
    from gwsync.emulator.seed import seed_demo_user
    from tests.helpers import connect

    second = await connect(api, seed_demo_user(emulator.state, 2).refresh_token, "user-43")
    await run_worker()
    resp = await api.delete(f"/v1/accounts/{second}", params={"user_id": "user-43"})
    assert resp.status == 202


async def test_status_json_agrees_with_the_database(
    api: TestClient, deps: Deps, settings: Settings, emulator: Emulator, run_worker: RunWorker
) -> None:
    """`gwsync status --json` reports the accounts, syncs, records, erasures, refusals and
    queue the database and Redis hold."""
    await populated(api, emulator, run_worker)
    code, out, err = await run_gwsync(settings, "status", "--json")
    assert code == 0, err
    status = json.loads(out)
    assert status["accounts_by_status"] == await _grouped(deps, Account.status)
    assert status["syncs_by_status"] == await _grouped(deps, SyncState.status)
    assert status["records_by_feature"] == await _grouped(deps, Record.feature,
                                                          is_source_record())
    erasures = await _grouped(deps, Erasure.state)
    assert status["erasures_by_state"] == erasures
    assert sum(erasures.values()) == 1 and "verified" not in erasures
    assert status["refused_reads"] == await _grouped(
        deps, AccessLog.use, AccessLog.decision == "refused") == {"advertising": 1}
    assert [p["count"] for p in status["erasures_pending"]] == [1]
    assert status["queue_depth"] == await deps.queue.redis.zcard(deps.queue.queue_name) >= 1
    assert status["in_progress"] == 0
    assert status["records_by_feature"]["contacts"] == 4 + 2  # rows go at the delete step


async def test_status_tables_show_the_same_numbers(
    api: TestClient, deps: Deps, settings: Settings, emulator: Emulator, run_worker: RunWorker
) -> None:
    """The terminal view names the queue and shows the refused use and the pending erasure."""
    await populated(api, emulator, run_worker)
    code, out, err = await run_gwsync(settings, "status")
    assert code == 0, err
    assert settings.queue_name in out
    assert "advertising" in out
    assert "erasures pending" in out
    assert "shredded" in out or "requested" in out


async def test_status_without_redis_fails_with_one_line(settings: Settings) -> None:
    """With Redis unreachable the command exits 1 naming Redis, without a traceback."""
    broken = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    code, out, err = await run_gwsync(broken, "status", "--json")
    assert code == 1
    assert "Redis does not answer" in err and "Traceback" not in err
