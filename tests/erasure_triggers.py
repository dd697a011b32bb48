"""Ways Google tells us a grant is gone, as the erasure specifications cause them."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from gwsync.emulator.grants import IssuedGrant
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator


async def revoked_at_google(api: TestClient, deps: Deps, emulator: Emulator,
                         grant: IssuedGrant, account_id: str) -> None:
    """The user removed the app at myaccount.google.com: the next sync meets invalid_grant."""
    emulator.state.revoke_user(grant.user)
    assert await deps.queue.enqueue_sync(account_id, "contacts", 1)


async def cross_account_protection(api: TestClient, deps: Deps, emulator: Emulator,
                grant: IssuedGrant, account_id: str) -> None:
    """Google sends a signed token-revoked security event to the RISC receiver."""
    async with api.session.post(f"{emulator.url}/_emulator/risc/send", json={
            "receiver": str(api.make_url("/webhooks/google/risc")),
            "event": "oauth/event-type/token-revoked",
            "refresh_token": grant.refresh_token}) as resp:
        assert (await resp.json())["status"] == 202
