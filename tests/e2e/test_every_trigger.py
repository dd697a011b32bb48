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
from sqlalchemy import select, update
from structlog.testing import capture_logs

from gwsync.emulator.seed import seed_demo_user
from gwsync.emulator.state import IssuedGrant
from gwsync.storage.models import Erasure, Record
from gwsync.tasks import recover
from gwsync.timeutil import utcnow
from gwsync.worker.deps import Deps
from gwsync.worker.settings import Settings
from tests.conftest import Emulator, RunWorker
from tests.e2e.test_contacts_lifecycle import _database_hits, _redis_hits
from tests.helpers import connect, stored_contacts

MARKER = "Qv9TriggerMarkerZk"
Trigger = Callable[[TestClient, Deps, Emulator, IssuedGrant, str], Awaitable[Any]]


async def _disconnect(api: TestClient, *_: Any) -> None:
    assert (await api.delete(f"/v1/accounts/{_[-1]}")).status == 202


async def _user_request(api: TestClient, *_: Any) -> None:
    assert (await api.post("/v1/users/user-42/erasure")).status == 202


async def _invalid_grant(api: TestClient, deps: Deps, emulator: Emulator,
                         grant: IssuedGrant, account_id: str) -> None:
    emulator.state.revoke_user(grant.user)
    assert await deps.queue.enqueue_sync(account_id, "contacts", 1)


async def _risc(api: TestClient, deps: Deps, emulator: Emulator,
                grant: IssuedGrant, account_id: str) -> None:
    async with api.session.post(f"{emulator.url}/_emulator/risc/send", json={
            "receiver": str(api.make_url("/webhooks/google/risc")),
            "event": "oauth/event-type/token-revoked",
            "refresh_token": grant.refresh_token}) as resp:
        assert (await resp.json())["status"] == 202


async def _scope_withdrawn(api: TestClient, deps: Deps, emulator: Emulator,
                           grant: IssuedGrant, account_id: str) -> None:
    emulator.state.withdraw_scopes(grant.refresh_token,
                                   ["https://www.googleapis.com/auth/contacts.readonly"])
    assert await deps.queue.enqueue_sync(account_id, "contacts", 1)


async def _retention(api: TestClient, deps: Deps, *_: Any) -> None:
    async with deps.sessions.begin() as session:
        await session.execute(update(Record).values(expires_at=utcnow()))
    assert await recover.sweep_retention({"deps": deps}) == 1


TRIGGERS: dict[str, tuple[Trigger, str]] = {
    "disconnect": (_disconnect, "disconnect"),
    "user_request": (_user_request, "user_request"),
    "invalid_grant": (_invalid_grant, "invalid_grant"),
    "risc": (_risc, "risc_token_revoked"),
    "scope_withdrawn": (_scope_withdrawn, "scope_withdrawn"),
    "retention": (_retention, "retention"),
}


@pytest.mark.parametrize("name", list(TRIGGERS))
async def test_every_trigger_ends_verified_and_leaves_no_marker(
    name: str, api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker,
    settings: Settings,
) -> None:
    """The trigger's erasure is verified, and the marker is in no table, key or log line."""
    trigger, expected = TRIGGERS[name]
    grant = seed_demo_user(emulator.state, 6, marker=MARKER,
                           scopes=("https://www.googleapis.com/auth/contacts.readonly",))
    with capture_logs() as logs:
        account_id = await connect(api, grant.refresh_token)
        await run_worker()
        contacts = await stored_contacts(deps, account_id)
        assert any(MARKER in c["name"] for c in contacts.values())
        await trigger(api, deps, emulator, grant, account_id)
        await run_worker()
    async with deps.sessions() as session:
        [erasure] = list(await session.scalars(select(Erasure)))
    assert (erasure.trigger, erasure.state) == (expected, "verified")
    assert erasure.verification["ok"] is True
    assert erasure.verification["remaining"] and not any(erasure.verification["remaining"].values())
    assert await _database_hits(settings, MARKER) == []
    assert await _redis_hits(settings.redis_prefix, MARKER) == []
    assert MARKER not in json.dumps(logs, default=str)
    receipt = json.dumps(await (await api.get(f"/v1/erasures/{erasure.id}")).json())
    for personal in ("user-42", grant.refresh_token, "example.com", MARKER):
        assert personal not in receipt
