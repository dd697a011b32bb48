"""A backup of the records taken before an erasure is unreadable once restored."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import insert, select

from gwsync.storage import crypto, keys
from gwsync.storage.models import DataKey, Record
from gwsync.worker.deps import Deps
from tests.conftest import Emulator, RunWorker
from tests.helpers import synced_user


async def test_restored_records_decrypt_under_no_key_the_system_holds(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """Restore the pre-erasure records table: no data key left in the system opens any row."""
    _, erased_id = await synced_user(api, emulator.state, run_worker, 4)
    _, other_id = await synced_user(api, emulator.state, run_worker, 2)  # keeps its key
    async with deps.sessions() as session:
        backup = [{c.name: getattr(r, c.name) for c in Record.__table__.columns}
                  for r in await session.scalars(select(Record).where(
                      Record.account_id == erased_id))]
    assert len(backup) == 5  # 4 contacts and their derived index
    assert (await api.delete(f"/v1/accounts/{erased_id}")).status == 202
    await run_worker()

    async with deps.sessions.begin() as session:  # the restore
        await session.execute(insert(Record), backup)
    async with deps.sessions() as session:
        wrapped = list(await session.scalars(select(DataKey)))
        with pytest.raises(keys.KeyShreddedError):
            await keys.cipher(session, deps.settings.master_key, erased_id)
    assert [k.account_id for k in wrapped] == [other_id]
    master = deps.settings.master_key
    held = [crypto.RowCipher(erased_id, crypto.unwrap_key(master, k.account_id, k.wrapped_key))
            for k in wrapped]
    for row in backup:
        for cipher in held:
            with pytest.raises(crypto.DecryptionError):
                cipher.decrypt(crypto.record_row(row["kind"], row["external_id"]),
                               row["content"])
    resp = await api.get(f"/v1/accounts/{erased_id}/records", params={"use": "feature:contacts"})
    assert resp.status == 410 and (await resp.json())["error"] == "account_erased"
