"""Contacts that change names, and expired sync tokens said in fewer words."""

from __future__ import annotations

from typing import Any

from gwsync.tasks.deps import Deps
from tests.conftest import Emulator, RunWorker
from tests.helpers import stored_contacts, sync_again, sync_state, synced_user


async def test_a_renamed_contact_is_stored_once_under_its_new_name(
    api: Any, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """Google gives a contact a new resource name and lists the old one in
    `metadata.previousResourceNames` on the next incremental page: the old record is
    removed, so the contact is not stored twice."""
    grant, account_id = await synced_user(api, emulator.state, run_worker, 5)
    before = await stored_contacts(deps, account_id)
    old = sorted(before)[1]
    new = emulator.state.rename_contact(grant.user, old)
    await sync_again(deps, account_id, "contacts", run_worker)

    after = await stored_contacts(deps, account_id)
    assert old not in after and after[new] == before[old]
    assert sorted(after) == sorted(c["resourceName"] for c in emulator.state.contacts(grant.user))
    assert (await sync_state(deps, account_id, "contacts")).stage == "incremental"


async def test_an_expired_sync_token_without_details_still_leads_to_a_full_sync(
    api: Any, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """The expired-sync-token 400 without its ErrorInfo is still an expired cursor: a
    full sync follows and removes what Google no longer has."""
    grant, account_id = await synced_user(api, emulator.state, run_worker, 4)
    gone = sorted(await stored_contacts(deps, account_id))[0]
    emulator.state.delete_contact(grant.user, gone)
    emulator.state.cursors.expired_sync_token_details = False
    emulator.state.expire_sync_tokens(grant.user)
    epoch = (await sync_state(deps, account_id, "contacts")).epoch
    await sync_again(deps, account_id, "contacts", run_worker)

    assert gone not in await stored_contacts(deps, account_id)
    state = await sync_state(deps, account_id, "contacts")
    assert (state.status, state.stage, state.epoch) == ("ok", "incremental", epoch + 1)
