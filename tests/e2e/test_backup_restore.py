"""A backup of the records taken before an erasure is unreadable once restored."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import insert, select

from gwsync.client import ApiError
from gwsync.storage.models import DataKey, Record
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator, RunWorker
from tests.erasure_proof import ErasureProof
from tests.helpers import USER, client, synced_user

MARKER = "Bk3BackupMarkerJv"


async def test_restored_records_decrypt_under_no_key_the_system_holds(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """Restore the pre-erasure records table: the key that opened it is gone from the moment
    the erasure is answered, and no data key left in the system opens any row."""
    _, erased_id = await synced_user(api, emulator.state, run_worker, 4, marker=MARKER)
    _, other_id = await synced_user(api, emulator.state, run_worker, 2)  # keeps its key
    async with deps.sessions() as session:
        backup = [{c.name: getattr(r, c.name) for c in Record.__table__.columns}
                  for r in await session.scalars(select(Record).where(
                      Record.account_id == erased_id))]
    assert len(backup) == 5  # 4 contacts and their derived index
    proof = await ErasureProof.capture(deps, erased_id, marker=MARKER)  # the marker readable
    await client(api).disconnect(erased_id, USER)
    await proof.assert_shredded()
    await run_worker()
    await proof.assert_erased()

    async with deps.sessions.begin() as session:  # the restore
        await session.execute(insert(Record), backup)
    async with deps.sessions() as session:
        held = list(await session.scalars(select(DataKey.account_id)))
    assert held == [other_id]  # a key the system holds, which opens none of the rows:
    await proof.assert_shredded()
    with pytest.raises(ApiError) as gone:
        await anext(client(api).read(erased_id, USER, use="feature:contacts"))
    assert (gone.value.status, gone.value.error) == (410, "account_erased")
