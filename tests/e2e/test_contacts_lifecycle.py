"""The walking skeleton end to end: connect → sync → purpose-checked read → disconnect → purge."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from sqlalchemy import text
from structlog.testing import capture_logs

from gwsync.emulator.seed import seed_demo_user
from gwsync.storage.models import Base
from gwsync.worker.settings import Settings
from tests.conftest import REDIS_URL, Emulator, RunWorker

MARKER = "Zq7MarkerXy"


async def _connect(api: TestClient, refresh_token: str) -> str:
    resp = await api.post("/v1/accounts", json={"user_id": "user-42",
                                                "refresh_token": refresh_token})
    assert resp.status == 201, await resp.text()
    return (await resp.json())["account_id"]


async def _erase_and_wait(api: TestClient, run_worker: RunWorker, account_id: str) -> dict:
    resp = await api.delete(f"/v1/accounts/{account_id}")
    assert resp.status == 202
    erasure_id = (await resp.json())["erasure_id"]
    await run_worker()
    resp = await api.get(f"/v1/erasures/{erasure_id}")
    return await resp.json()


async def _database_hits(settings: Settings, needle: str) -> list[str]:
    """Every table, every column, as text and as bytes: where does `needle` appear?"""
    from gwsync.storage.db import create_engine

    engine = create_engine(settings.database_url)
    hits = []
    async with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in (await conn.execute(text(f"SELECT * FROM {table.name}"))).all():
                for value in row:
                    raw = value if isinstance(value, bytes) else str(value).encode()
                    if needle.encode() in raw:
                        hits.append(table.name)
    await engine.dispose()
    return hits


async def _redis_hits(prefix: str, needle: str) -> list[str]:
    client = aioredis.from_url(REDIS_URL)
    hits = []
    async for key in client.scan_iter(match=f"*{prefix}*"):
        kind = await client.type(key)
        value = await client.dump(key) if kind != b"none" else b""
        if needle.encode() in key or needle.encode() in (value or b""):
            hits.append(key.decode())
    await client.aclose()
    return hits


async def test_marker_is_gone_after_disconnect_and_never_logged(
    api: TestClient, run_worker: RunWorker, emulator: Emulator, settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A contact's marker is readable after sync, absent from every store after the purge,
    and absent from every log line throughout."""
    caplog.set_level(logging.DEBUG)
    grant = seed_demo_user(emulator.state, 8, marker=MARKER)
    with capture_logs() as logs:
        account_id = await _connect(api, grant.refresh_token)
        await run_worker()
        resp = await api.get(f"/v1/accounts/{account_id}/records",
                             params={"feature": "contacts", "use": "feature:contacts"})
        body = await resp.json()
        assert any(MARKER in r["content"]["name"] for r in body["records"])
        receipt = await _erase_and_wait(api, run_worker, account_id)
    assert receipt["status"] == "verified"
    assert receipt["receipt"]["verification"]["ok"] is True
    assert await _database_hits(settings, MARKER) == []
    assert await _redis_hits(settings.redis_prefix, MARKER) == []
    assert await _redis_hits(settings.redis_prefix, account_id) == []
    assert MARKER not in json.dumps(logs, default=str)
    assert MARKER not in caplog.text
    assert "example.com" not in json.dumps(logs, default=str) + caplog.text
    assert grant.refresh_token not in json.dumps(logs, default=str) + caplog.text


async def test_contacts_round_trip_stores_only_shown_fields(
    api: TestClient, run_worker: RunWorker, emulator: Emulator
) -> None:
    """Sync stores name, emails and phones with full purpose metadata, nothing else."""
    grant = seed_demo_user(emulator.state, 10)
    account_id = await _connect(api, grant.refresh_token)
    await run_worker()
    status = await (await api.get(f"/v1/accounts/{account_id}")).json()
    assert status["features"]["contacts"]["record_count"] == 10
    assert status["features"]["contacts"]["status"] == "ok"
    records = (await (await api.get(f"/v1/accounts/{account_id}/records", params={
        "feature": "contacts", "use": "feature:contacts", "limit": "4"})).json())
    assert len(records["records"]) == 4 and records["next_cursor"]
    first = records["records"][0]
    assert set(first["content"]) == {"name", "emails", "phones"}
    assert first["purpose"]["data_use"] == "feature:contacts"
    assert first["purpose"]["scope"].endswith("/contacts.readonly")
    assert first["purpose"]["source_method"] == "people.people.connections.list"
    rest = await (await api.get(f"/v1/accounts/{account_id}/records", params={
        "feature": "contacts", "use": "feature:contacts",
        "cursor": records["next_cursor"]})).json()
    assert len(rest["records"]) == 6 and rest["next_cursor"] is None


async def test_refused_use_is_403_and_audited(
    api: TestClient, run_worker: RunWorker, emulator: Emulator, settings: Settings
) -> None:
    """A read for ai_training is refused with limited_use_violation and lands in the log."""
    grant = seed_demo_user(emulator.state, 3)
    account_id = await _connect(api, grant.refresh_token)
    await run_worker()
    resp = await api.get(f"/v1/accounts/{account_id}/records",
                         params={"use": "ai_training"})
    assert resp.status == 403
    assert (await resp.json())["error"] == "limited_use_violation"
    from gwsync.storage.db import create_engine

    engine = create_engine(settings.database_url)
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT use, decision FROM access_log ORDER BY id"))).all()
    await engine.dispose()
    assert ("ai_training", "refused") in [tuple(r) for r in rows]


async def test_no_host_but_the_base_url_is_contacted(
    api: TestClient, run_worker: RunWorker, emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With GWSYNC_GOOGLE_BASE_URL set, connect, sync and purge resolve no other host."""
    looked_up: list[Any] = []
    real = socket.getaddrinfo

    def guard(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guard)
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo",
                        lambda host, *a, **k: loop.run_in_executor(None, guard, host, *a))
    grant = seed_demo_user(emulator.state, 4)
    account_id = await _connect(api, grant.refresh_token)
    await run_worker()
    receipt = await _erase_and_wait(api, run_worker, account_id)
    assert receipt["status"] == "verified"
    assert [c["method"] for c in emulator.state.calls()].count(
        "people.people.connections.list") >= 1
    assert set(looked_up) <= {"127.0.0.1", "localhost"}
    assert emulator.state.revocations()


async def test_a_sync_in_flight_when_erasure_begins_never_writes_after(
    api: TestClient, run_worker: RunWorker, emulator: Emulator, settings: Settings,
) -> None:
    """A slow sync erased mid-way leaves zero records once both have finished."""
    grant = seed_demo_user(emulator.state, 30)
    emulator.state.add_fault("/v1/people", 0, count=100, delay_ms=150)
    account_id = await _connect(api, grant.refresh_token)
    sync = asyncio.create_task(run_worker())
    for _ in range(100):  # wait until the sync has written its first pages
        status = await (await api.get(f"/v1/accounts/{account_id}")).json()
        if status["features"]["contacts"]["record_count"] > 0:
            break
        await asyncio.sleep(0.05)
    assert 0 < status["features"]["contacts"]["record_count"] < 30
    assert (await api.delete(f"/v1/accounts/{account_id}")).status == 202
    await sync
    await run_worker()
    status = await (await api.get(f"/v1/accounts/{account_id}")).json()
    assert status["status"] == "erased"
    assert status["features"]["contacts"]["record_count"] == 0
    assert await _database_hits(settings, account_id) == ["accounts", "erasures"]


async def test_connecting_anew_after_erasure_starts_clean(
    api: TestClient, run_worker: RunWorker, emulator: Emulator,
) -> None:
    """The same user connecting again gets a new account with a new key; the old stays erased."""
    first = seed_demo_user(emulator.state, 3)
    old_id = await _connect(api, first.refresh_token)
    await run_worker()
    assert (await _erase_and_wait(api, run_worker, old_id))["status"] == "verified"
    again = seed_demo_user(emulator.state, 5)
    new_id = await _connect(api, again.refresh_token)
    await run_worker()
    assert new_id != old_id
    old = await (await api.get(f"/v1/accounts/{old_id}")).json()
    new = await (await api.get(f"/v1/accounts/{new_id}")).json()
    assert old["status"] == "erased" and old["features"]["contacts"]["record_count"] == 0
    assert new["status"] == "active" and new["features"]["contacts"]["record_count"] == 5
    resp = await api.get(f"/v1/accounts/{old_id}/records", params={"use": "feature:contacts"})
    assert resp.status == 410
