"""A scope withdrawn at Google switches off its features and erases their records only."""

from __future__ import annotations

from sqlalchemy import select

from gwsync.domain.features import FEATURES
from gwsync.storage.models import Account, Erasure, SyncState
from gwsync.tasks import grants
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator, RunWorker
from tests.helpers import USER, connect, stored_contacts

CONTACTS = FEATURES["contacts"].scope
DRIVE = FEATURES["shared_files"].scope


async def _erasures(deps: Deps) -> list[Erasure]:
    async with deps.sessions() as session:
        return list(await session.scalars(select(Erasure)))


async def test_a_withdrawn_scope_erases_that_features_records_only(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """When refresh for contacts is refused, Google is asked again, and contacts alone go."""
    grant = emulator.state.add_user("w@example.com", [{"names": [{"displayName": "A"}]}],
                                    [CONTACTS, DRIVE])
    account_id = await connect(api, grant.refresh_token)
    await run_worker()
    assert len(await stored_contacts(deps, account_id)) == 1
    emulator.state.withdraw_scopes(grant.refresh_token, [CONTACTS])
    assert await deps.queue.enqueue_sync(account_id, "contacts", 1)
    await run_worker()

    [erasure] = await _erasures(deps)
    assert (erasure.trigger, erasure.state, erasure.scope) == (
        "scope_withdrawn", "verified", {"features": ["contacts"]})
    assert erasure.revocation == "not_applicable" and erasure.verification["ok"]
    async with deps.sessions() as session:
        account = await session.get(Account, account_id)
        state = await session.get(SyncState, (account_id, "contacts"))
    assert account.status == "active" and account.granted_scopes == DRIVE
    assert state.status == "needs_permission" and state.cursor is None
    assert await stored_contacts(deps, account_id) == {}
    resp = await api.get(f"/v1/accounts/{account_id}", params={"user_id": USER})
    status = await resp.json()
    assert status["features"]["contacts"]["missing_scopes"] == [CONTACTS]
    assert status["features"]["shared_files"]["enabled"] is True


async def test_an_outage_while_rechecking_changes_nothing(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """If Google cannot be asked which scopes remain, no feature is switched off."""
    grant = emulator.state.add_user("o@example.com", [{"names": [{"displayName": "A"}]}],
                                    [CONTACTS])
    account_id = await connect(api, grant.refresh_token)
    await run_worker()
    emulator.state.add_fault("/token", 503, count=10)
    assert await grants.recheck(deps, account_id, grant.refresh_token) == []
    assert await _erasures(deps) == []
    assert len(await stored_contacts(deps, account_id)) == 1


async def test_applying_the_same_scopes_erases_nothing(
    api, deps: Deps, emulator: Emulator
) -> None:
    """A token response that still lists every scope leaves all features on."""
    grant = emulator.state.add_user("s@example.com", [], [CONTACTS, DRIVE])
    account_id = await connect(api, grant.refresh_token)
    assert await grants.apply_granted(deps, account_id, frozenset({CONTACTS, DRIVE})) == []
    assert await _erasures(deps) == []
