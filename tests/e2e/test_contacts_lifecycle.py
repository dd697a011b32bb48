"""The walking skeleton end to end: connect → sync → purpose-checked read → disconnect → purge."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import text
from structlog.testing import capture_logs

from gwsync.client import ApiError
from gwsync.core.settings import Settings
from gwsync.domain.api import ErasureAnswer, RecordsPage
from gwsync.emulator.seed import seed_demo_user
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator, RunWorker
from tests.erasure_proof import ErasureProof
from tests.helpers import USER, Background, client

MARKER = "Zq7MarkerXy"


async def _connect(api: TestClient, refresh_token: str) -> str:
    return (await client(api).connect(USER, refresh_token)).account_id


async def _erase_and_wait(api: TestClient, run_worker: RunWorker,
                          account_id: str) -> ErasureAnswer:
    begun = await client(api).disconnect(account_id, USER)
    assert begun.status in {"requested", "revoking", "shredded"}
    await run_worker()
    return await client(api).erasure(begun.erasure_id, USER)


async def _pages(api: TestClient, account_id: str, **query: Any) -> list[RecordsPage]:
    return [page async for page in client(api).read(account_id, USER, **query)]


async def test_marker_is_gone_after_disconnect_and_never_logged(
    api: TestClient, deps: Deps, run_worker: RunWorker, emulator: Emulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A contact's marker is readable after sync, unreadable once the disconnect is answered,
    absent from every store after the purge, and absent from every log line throughout."""
    caplog.set_level(logging.DEBUG)
    grant = seed_demo_user(emulator.state, 8, marker=MARKER)
    with capture_logs() as logs:
        account_id = await _connect(api, grant.refresh_token)
        await run_worker()
        [page] = await _pages(api, account_id, feature="contacts", use="feature:contacts")
        assert any(MARKER in r.content["name"] for r in page.records)
        proof = await ErasureProof.capture(deps, account_id, marker=MARKER)
        begun = await client(api).disconnect(account_id, USER)
        await proof.assert_shredded()  # from the answer on, before the worker runs
        await run_worker()
        receipt = await client(api).erasure(begun.erasure_id, USER)
    assert receipt.status == "verified"
    assert receipt.receipt.verification["ok"] is True
    await proof.assert_erased()
    assert logs and caplog.text  # the log checks below read real output
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
    status = await client(api).status(account_id, USER)
    assert status.features["contacts"].record_count == 10
    assert status.features["contacts"].status == "ok"
    pages = await _pages(api, account_id, feature="contacts", use="feature:contacts", limit=4)
    assert [len(p.records) for p in pages] == [4, 4, 2]  # the client follows next_cursor
    assert pages[0].next_cursor and pages[-1].next_cursor is None
    first = pages[0].records[0]
    assert set(first.content) == {"name", "emails", "phones"}
    assert first.purpose.data_use == "feature:contacts"
    assert first.purpose.scope.endswith("/contacts.readonly")
    assert first.purpose.source_method == "people.people.connections.list"
    assert len({r.id for p in pages for r in p.records}) == 10


async def test_refused_use_is_403_and_audited(
    api: TestClient, run_worker: RunWorker, emulator: Emulator, settings: Settings
) -> None:
    """A read for ai_training is refused with limited_use_violation and lands in the log."""
    grant = seed_demo_user(emulator.state, 3)
    account_id = await _connect(api, grant.refresh_token)
    await run_worker()
    with pytest.raises(ApiError) as refused:
        await _pages(api, account_id, use="ai_training")
    assert (refused.value.status, refused.value.error) == (403, "limited_use_violation")
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
    assert receipt.status == "verified"
    assert [c["method"] for c in emulator.state.calls()].count(
        "people.people.connections.list") >= 1
    assert looked_up, "no lookup was seen: the guard proves nothing"
    assert set(looked_up) <= {"127.0.0.1", "localhost"}
    assert emulator.state.revocations()


async def test_a_sync_in_flight_when_erasure_begins_never_writes_after(
    api: TestClient, deps: Deps, run_worker: RunWorker, emulator: Emulator,
) -> None:
    """A slow sync erased mid-way leaves zero records, and nothing of the account, once both
    have finished."""
    grant = seed_demo_user(emulator.state, 30, marker=MARKER)
    emulator.state.add_fault("/v1/people", 0, count=100, delay_ms=150)
    account_id = await _connect(api, grant.refresh_token)
    async with Background() as background:
        background.start(run_worker())
        for _ in range(100):  # wait until the sync has written its first pages
            status = await client(api).status(account_id, USER)
            if status.features["contacts"].record_count > 0:
                break
            await asyncio.sleep(0.05)
        assert 0 < status.features["contacts"].record_count < 30
        proof = await ErasureProof.capture(deps, account_id, marker=MARKER)
        await client(api).disconnect(account_id, USER)
        await proof.assert_shredded()
    await run_worker()
    status = await client(api).status(account_id, USER)
    assert status.status == "erased"
    assert status.features["contacts"].record_count == 0
    await proof.assert_erased()


async def test_connecting_anew_after_erasure_starts_clean(
    api: TestClient, deps: Deps, run_worker: RunWorker, emulator: Emulator,
) -> None:
    """The same user connecting again gets a new account with a new key; the old stays erased."""
    first = seed_demo_user(emulator.state, 3, marker=MARKER)
    old_id = await _connect(api, first.refresh_token)
    await run_worker()
    proof = await ErasureProof.capture(deps, old_id, marker=MARKER)
    begun = await client(api).disconnect(old_id, USER)
    await proof.assert_shredded()
    await run_worker()
    erasure = await client(api).erasure(begun.erasure_id, USER)
    assert erasure.status == "verified"
    await proof.assert_erased()  # before the same user's new account shares its identifiers
    again = seed_demo_user(emulator.state, 5)
    new_id = await _connect(api, again.refresh_token)
    await run_worker()
    assert new_id != old_id
    old = await client(api).status(old_id, USER)
    new = await client(api).status(new_id, USER)
    assert old.status == "erased" and old.features["contacts"].record_count == 0
    assert new.status == "active" and new.features["contacts"].record_count == 5
    assert [e.erasure_id for e in old.erasures] == [begun.erasure_id]
    with pytest.raises(ApiError) as gone:
        await _pages(api, old_id, use="feature:contacts")
    assert (gone.value.status, gone.value.error) == (410, "account_erased")
