"""An erasure stops the work in flight: once it is verified, no request made with the
erased account's tokens reaches Google — not even from a sync that was mid-crawl when it
began (issue 11 item 7)."""

from __future__ import annotations

import asyncio
from datetime import datetime

from aiohttp.test_utils import TestClient

from gwsync.core.settings import Settings
from gwsync.emulator.mailbox import add_gmail_user
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator
from tests.helpers import USER, client, connect, eventually
from tests.worker_processes import logged_worker, stop_workers

N, PAGE, CALL_DELAY_MS, WATCH_AFTER_S = 20, 10, 300, 3.0
GETS = "/gmail/v1/users/me/messages/"


async def _erase_when_fetching(api: TestClient, emulator: Emulator, user: str,
                               account_id: str) -> str:
    """Wait until the sync is batch-fetching messages, then disconnect the account."""
    async def fetching() -> bool:
        return any(p.startswith(GETS) for p, _ in emulator.state.arrivals(user))
    await eventually(fetching, within_s=30, every_s=0.02)
    return (await client(api).disconnect(account_id, USER)).erasure_id


async def _verified_at(api: TestClient, erasure_id: str) -> float:
    """When the erasure was verified (its receipt's time of that step), once it is."""
    async def verified() -> float | None:
        answer = await client(api).erasure(erasure_id, USER)
        if answer.status != "verified":
            return None
        stamp = answer.receipt.steps["verified"].replace("Z", "+00:00")
        return datetime.fromisoformat(stamp).timestamp()
    found: float = await eventually(verified, within_s=30, every_s=0.02)
    return found


async def test_no_google_call_with_an_erased_accounts_token_after_verification(
    api: TestClient, deps: Deps, emulator: Emulator, settings: Settings
) -> None:
    """A mail sync fetching one message at a time (each answer slowed) is erased mid-page,
    while Google's revocation endpoint is down (so the access token stays valid, as it may
    at Google for a while): after the erasure is verified, Google sees no request with
    that user's tokens."""
    grant = add_gmail_user(emulator.state, "erased@example.com", N)
    emulator.state.add_fault("/gmail/v1/users/", 0, count=10_000, delay_ms=CALL_DELAY_MS)
    emulator.state.add_fault("/revoke", 503, count=10_000)
    worker = await logged_worker(settings, GWSYNC_GMAIL_MAX_IN_FLIGHT="1",
                                 GWSYNC_SYNC_PAGE_SIZE=str(PAGE))
    try:
        account_id = await connect(api, grant.refresh_token)
        erasure_id = await _erase_when_fetching(api, emulator, grant.user, account_id)
        verified_at = await _verified_at(api, erasure_id)
        await asyncio.sleep(WATCH_AFTER_S)  # what a sync still running would call by now
    finally:
        await stop_workers(worker)
    late = [(p, round(at - verified_at, 3)) for p, at in emulator.state.arrivals(grant.user)
            if at > verified_at]
    assert late == [], f"calls after the erasure was verified: {late}"
    assert any(p.startswith(GETS) for p, _ in emulator.state.arrivals(grant.user))
