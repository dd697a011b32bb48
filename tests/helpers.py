"""Small helpers the specifications share: connect a seeded user, read what was stored."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from gwsync.emulator.seed import seed_demo_user
from gwsync.emulator.state import EmulatorState, IssuedGrant
from gwsync.worker.deps import Deps


async def connect(api: TestClient, refresh_token: str, user_id: str = "user-42") -> str:
    """Register a grant through the real API and return the account id."""
    resp = await api.post("/v1/accounts", json={"user_id": user_id,
                                                "refresh_token": refresh_token})
    assert resp.status == 201, await resp.text()
    return (await resp.json())["account_id"]


async def stored_contacts(deps: Deps, account_id: str) -> dict[str, dict[str, Any]]:
    """Every stored contact by resource name, read through the purpose-checked path."""
    found: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        page = await deps.store.read(account_id, use="feature:contacts", actor="test",
                                     cursor=cursor, limit=1000)
        found.update({item["id"]: item["content"] for item in page.items})
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


async def synced_user(
    api: TestClient, state: EmulatorState, run_worker: Any, contacts: int
) -> tuple[IssuedGrant, str]:
    """Seed a user with `contacts` contacts, connect them, and run the first sync."""
    grant = seed_demo_user(state, contacts)
    account_id = await connect(api, grant.refresh_token)
    await run_worker()
    return grant, account_id
