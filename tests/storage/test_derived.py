"""Derived data carries its sources' purpose and is erased with them."""

from __future__ import annotations

from datetime import timedelta

from aiohttp.test_utils import TestClient
from sqlalchemy import func, or_, select, update

from gwsync.core.timeutil import utcnow
from gwsync.emulator.seed import seed_demo_user
from gwsync.storage.models import Record
from gwsync.tasks import recover
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator, RunWorker
from tests.erasure_proof import ErasureProof
from tests.helpers import USER, connect, sync_again

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


async def test_an_index_retention_removed_is_rebuilt_by_the_next_sync_with_no_change(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """Retention takes the index with its oldest contact; the next sync rebuilds it from the
    contacts left, though Google reports nothing new."""
    account_id = await _synced(api, emulator, run_worker)
    past = utcnow() - timedelta(seconds=1)
    async with deps.sessions.begin() as session:
        oldest = await session.scalar(select(Record).where(Record.kind == "contact")
                                      .order_by(Record.expires_at).limit(1))
        assert oldest is not None
        await session.execute(update(Record).where(
            or_(Record.id == oldest.id, Record.kind == "derived:suggestions"))
            .values(expires_at=past))
    assert await recover.sweep_retention({"deps": deps}) == 1
    await run_worker()
    assert await _derived(deps) == []
    await sync_again(deps, account_id, "contacts", run_worker)
    [index] = await _derived(deps)
    async with deps.sessions() as session:
        left = await session.scalar(select(func.min(Record.expires_at)).where(
            Record.kind == "contact"))
    assert index.expires_at == left


async def test_a_sync_that_changes_nothing_leaves_the_index_as_it_was(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """An incremental sync with nothing new from Google after one that ended ok does not
    recompute the index (it is current): the stored row is the one written before."""
    account_id = await _synced(api, emulator, run_worker)
    [before] = await _derived(deps)
    await sync_again(deps, account_id, "contacts", run_worker)
    [after] = await _derived(deps)
    assert (after.fetched_at, after.content) == (before.fetched_at, before.content)
