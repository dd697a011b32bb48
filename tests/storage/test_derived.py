"""Derived data carries its sources' purpose and is erased with them."""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from gwsync.emulator.seed import seed_demo_user
from gwsync.storage.models import Record
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator, RunWorker
from tests.erasure_proof import ErasureProof
from tests.helpers import USER, connect

MARKER = "Dv2DerivedMarkerNp"
CONTACTS = "https://www.googleapis.com/auth/contacts.readonly"
DRIVE = "https://www.googleapis.com/auth/drive.file"


async def _derived(deps: Deps) -> list[Record]:
    async with deps.sessions() as session:
        return list(await session.scalars(select(Record).where(
            Record.kind == "derived:suggestions")))


async def _synced(api: TestClient, emulator: Emulator, run_worker: RunWorker,
                  marker: str | None = None) -> str:
    grant = seed_demo_user(emulator.state, 6, marker=marker, scopes=(CONTACTS, DRIVE))
    account_id = await connect(api, grant.refresh_token)
    await run_worker()
    return account_id


async def test_the_suggestion_index_inherits_the_contacts_purpose(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """The index is a contacts record: same use and scope, expiring with its oldest source."""
    account_id = await _synced(api, emulator, run_worker)
    [index] = await _derived(deps)
    async with deps.sessions() as session:
        oldest = await session.scalar(select(func.min(Record.expires_at)).where(
            Record.kind == "contact"))
    assert (index.feature, index.data_use, index.scope) == ("contacts", "feature:contacts",
                                                            CONTACTS)
    assert index.source_method == "gwsync.derived.suggestions"
    assert index.expires_at == oldest
    page = await deps.store.read(account_id, use="feature:contacts", actor="test",
                                 kind="derived:suggestions")
    assert "ada" in page.items[0]["content"]["index"]


async def test_other_uses_cannot_read_derived_data(
    api: TestClient, emulator: Emulator, run_worker: RunWorker
) -> None:
    """Another feature's use is refused the contacts index, like the contacts themselves."""
    account_id = await _synced(api, emulator, run_worker)
    resp = await api.get(f"/v1/accounts/{account_id}/records", params={
        "user_id": USER, "use": "feature:shared_files", "feature": "contacts",
        "kind": "derived:suggestions"})
    assert resp.status == 403


async def test_derived_data_goes_with_a_withdrawn_feature(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """A feature erasure removes its derived data along with its records."""
    account_id = await _synced(api, emulator, run_worker, MARKER)
    from gwsync.tasks import grants

    assert await _derived(deps)
    proof = await ErasureProof.capture(deps, account_id, marker=MARKER, features=("contacts",))
    assert "suggestions" in proof.identifiers  # the derived record is looked for too
    await grants.apply_granted(deps, account_id, frozenset({DRIVE}))
    await run_worker()
    assert await _derived(deps) == []
    await proof.assert_erased()
