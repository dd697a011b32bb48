"""Every erasure trigger ends in a verified receipt, and the contact marker is gone everywhere.

The walking skeleton's marker search, repeated for each way an erasure can begin:
disconnect, a user's request, invalid_grant, Cross-Account Protection, a withdrawn scope
and retention expiry.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select, update
from structlog.testing import capture_logs

from gwsync.core.timeutil import utcnow
from gwsync.emulator.grants import IssuedGrant
from gwsync.emulator.seed import seed_demo_user
from gwsync.storage.models import Erasure, Record
from gwsync.tasks import recover
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator, RunWorker
from tests.erasure_proof import ErasureProof
from tests.erasure_triggers import cross_account_protection, revoked_at_google
from tests.helpers import USER, Background, client, connect, eventually, stored_contacts

MARKER = "Qv9TriggerMarkerZk"
Trigger = Callable[[TestClient, Deps, Emulator, IssuedGrant, str], Awaitable[Any]]


async def _disconnect(api: TestClient, *_: Any) -> None:
    begun = await client(api).disconnect(_[-1], USER)
    assert begun.erasure_id


async def _user_request(api: TestClient, *_: Any) -> None:
    assert (await client(api).erase_user(USER)).erasure_id


async def _scope_withdrawn(api: TestClient, deps: Deps, emulator: Emulator,
                           grant: IssuedGrant, account_id: str) -> None:
    emulator.state.withdraw_scopes(grant.refresh_token,
                                   ["https://www.googleapis.com/auth/contacts.readonly"])
    assert await deps.queue.enqueue_sync(account_id, "contacts", 1)


async def _retention(api: TestClient, deps: Deps, *_: Any) -> None:
    async with deps.sessions.begin() as session:
        await session.execute(update(Record).values(expires_at=utcnow()))
    assert await recover.sweep_retention({"deps": deps}) == 1


#: name → (trigger, the erasure's trigger, the features it erases: None for whole accounts)
TRIGGERS: dict[str, tuple[Trigger, str, tuple[str, ...] | None]] = {
    "disconnect": (_disconnect, "disconnect", None),
    "user_request": (_user_request, "user_request", None),
    "invalid_grant": (revoked_at_google, "invalid_grant", None),
    "risc": (cross_account_protection, "risc_token_revoked", None),
    "scope_withdrawn": (_scope_withdrawn, "scope_withdrawn", ("contacts",)),
    "retention": (_retention, "retention", ("contacts",)),
}


async def _erasure_state(deps: Deps) -> str | None:
    async with deps.sessions() as session:
        return await session.scalar(select(Erasure.state))


async def _records(deps: Deps) -> int:
    async with deps.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Record)) or 0)


async def _erase(deps: Deps, emulator: Emulator, run_worker: RunWorker,
                 proof: ErasureProof) -> None:
    """Run the worker; for whole accounts, show the key is gone while the rows still exist.

    Google's revocation is slowed down, so the erasure is caught between shredding (when
    it is recorded) and deleting the rows (after revocation).
    """
    if proof.whole:
        emulator.state.add_fault("/revoke", 0, delay_ms=1500)
    async with Background() as background:
        background.start(run_worker())
        if proof.whole:
            async def shredded() -> bool:
                return await _erasure_state(deps) == "shredded"
            await eventually(shredded, within_s=20, every_s=0.05)
            assert await _records(deps) > 0  # unreadable while still stored: the key is gone
            await proof.assert_shredded()


@pytest.mark.parametrize("name", list(TRIGGERS))
async def test_every_trigger_ends_verified_and_leaves_no_marker(
    name: str, api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker,
) -> None:
    """The trigger's erasure is verified; what it covers, readable before, is in no table,
    key or log line after; a whole account's key is gone before its rows are."""
    trigger, expected, features = TRIGGERS[name]
    grant = seed_demo_user(emulator.state, 6, marker=MARKER,
                           scopes=("https://www.googleapis.com/auth/contacts.readonly",))
    with capture_logs() as logs:
        account_id = await connect(api, grant.refresh_token)
        await run_worker()
        contacts = await stored_contacts(deps, account_id)
        assert any(MARKER in c["name"] for c in contacts.values())
        # the retention trigger moves expires_at, not the month a record's key is named for
        proof = await ErasureProof.capture(deps, account_id, marker=MARKER, features=features,
                                           shreds_keys=name != "retention")
        await trigger(api, deps, emulator, grant, account_id)
        await _erase(deps, emulator, run_worker, proof)
    async with deps.sessions() as session:
        [erasure] = list(await session.scalars(select(Erasure)))
    assert (erasure.trigger, erasure.state) == (expected, "verified")
    assert erasure.verification["ok"] is True
    assert erasure.verification["remaining"] and not any(erasure.verification["remaining"].values())
    await proof.assert_erased()
    assert logs and MARKER not in json.dumps(logs, default=str)
    answer = await client(api).erasure(erasure.id, USER)
    assert answer.status == "verified"
    receipt = answer.model_dump_json()
    for personal in ("user-42", grant.refresh_token, "example.com", MARKER):
        assert personal not in receipt
