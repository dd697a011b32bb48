"""Watch lifecycle: opened after the first sync only when push is configured, renewed by
the cron before expiry, stopped and deleted on disconnect — after which a late
notification finds nothing and changes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import func, select, update

from gwsync.core.timeutil import as_utc, utcnow
from gwsync.domain.features import FEATURES
from gwsync.emulator.mailbox import add_gmail_user
from gwsync.emulator.push import push_of
from gwsync.storage.models import Record, WatchChannel
from gwsync.tasks.deps import Deps
from gwsync.tasks.watches import renew_watches
from tests.conftest import Emulator, RunWorker
from tests.helpers import USER, connect
from tests.push_support import PUSH_TOKEN, channel_headers, channels_of, pubsub_body, pushing

__all__ = ["pushing"]
EMAIL = "fay@example.com"
SCOPES = [FEATURES["meetings"].scope, FEATURES["mail_activity"].scope]


async def _connected(api: TestClient, emulator: Emulator, run_worker: RunWorker) -> str:
    """A user with meetings and mail_activity, connected and synced once."""
    add_gmail_user(emulator.state, EMAIL, 2)
    grant = emulator.state.issue_grant(EMAIL, SCOPES)
    account_id = await connect(api, grant.refresh_token)
    await run_worker()
    return account_id


async def test_without_push_settings_features_are_polled_only(
        api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker) -> None:
    """No public URL or Pub/Sub settings: the first sync opens no watch at Google."""
    account_id = await _connected(api, emulator, run_worker)
    assert await channels_of(deps, account_id) == []
    assert push_of(emulator.state).active() == []
    assert not [c for c in emulator.state.calls() if c["method"].endswith(".watch")]


async def test_first_sync_watches_each_watched_feature_once(
        api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker,
        pushing: Any) -> None:
    """meetings and mail_activity get one watch each, under their own scope; a second
    sync opens none."""
    account_id = await _connected(api, emulator, run_worker)
    assert sorted(r.feature for r in await channels_of(deps, account_id)) == [
        "mail_activity", "meetings"]
    watches = [c for c in emulator.state.calls()
               if c["method"] in ("calendar.events.watch", "gmail.users.watch")]
    assert len(watches) == 2
    for call in watches:
        feature = "meetings" if call["method"].startswith("calendar") else "mail_activity"
        assert call["scopes"] == [FEATURES[feature].scope]
    assert await deps.queue.enqueue_sync(account_id, "meetings", 1)
    await run_worker()
    assert len(await channels_of(deps, account_id)) == 2


async def test_renewal_cron_replaces_a_channel_near_expiry(
        api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker,
        pushing: Any) -> None:
    """A channel within the margin gets a new id at Google and here; the old one is stopped.
    The Gmail watch is renewed by watching again, never stopped."""
    account_id = await _connected(api, emulator, run_worker)
    before = {r.feature: r.channel_id for r in await channels_of(deps, account_id)}
    async with deps.sessions.begin() as session:
        await session.execute(update(WatchChannel).values(
            expires_at=utcnow() + timedelta(minutes=5)))
    assert await renew_watches({"deps": deps}) == {"due": 2, "queued": 2}
    await run_worker()
    after = {r.feature: r for r in await channels_of(deps, account_id)}
    assert set(after) == {"meetings", "mail_activity"}
    assert all(after[f].channel_id != before[f] for f in after)
    assert all(as_utc(r.expires_at) > utcnow() + timedelta(days=6) for r in after.values())
    active = push_of(emulator.state)
    assert list(active.channels) == [after["meetings"].channel_id]
    assert EMAIL in active.gmail
    assert await renew_watches({"deps": deps}) == {"due": 0, "queued": 0}


async def test_disconnect_stops_and_deletes_channels_and_late_pushes_change_nothing(
        api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker,
        pushing: Any) -> None:
    """Erasure stops the watches at Google before revoking, deletes the rows, and a
    notification arriving afterwards queues nothing and writes nothing."""
    account_id = await _connected(api, emulator, run_worker)
    [channel] = push_of(emulator.state).channels.values()
    mine = {"user_id": USER}
    resp = await api.delete(f"/v1/accounts/{account_id}", params=mine)
    assert resp.status == 202
    erasure_id = (await resp.json())["erasure_id"]
    await run_worker()
    assert await channels_of(deps, account_id) == []
    assert push_of(emulator.state).active() == []
    stops = [c["method"] for c in emulator.state.calls() if c["method"].endswith(".stop")]
    assert sorted(stops) == ["calendar.channels.stop", "gmail.users.stop"]
    receipt = await (await api.get(f"/v1/erasures/{erasure_id}", params=mine)).json()
    assert receipt["receipt"]["counts"]["watch_channels"] == 2
    assert receipt["receipt"]["verification"]["remaining"]["watch_channels"] == 0
    late = await api.post("/webhooks/google/calendar", headers=channel_headers(channel))
    assert late.status == 404
    late = await api.post(f"/webhooks/google/gmail?token={PUSH_TOKEN}",
                          json=pubsub_body(EMAIL, 10**9))
    assert (await late.json())["status"] == "ignored"
    assert await deps.queue.queued_jobs(account_id) == []
    async with deps.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Record).where(
            Record.account_id == account_id)) == 0
