"""Push-triggered sync, end to end: the emulator notifies the real web app, which queues
one incremental sync that the real worker runs. Bad notifications change nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from gwsync.domain.features import FEATURES
from gwsync.emulator import calendar_events as cal
from gwsync.emulator import drive
from gwsync.emulator.mailbox import add_gmail_user, mailbox
from gwsync.emulator.push import Channel, push_of
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator, RunWorker
from tests.helpers import connect
from tests.push_support import (
    PUSH_TOKEN,
    SUBSCRIPTION,
    channel_headers,
    channels_of,
    pubsub_body,
    pushing,
    until,
)

__all__ = ["pushing"]
EMAIL = "erin@example.com"
#: Tomorrow, inside the meetings window (gwsync.connectors.calendar.HORIZON).
_TOMORROW = datetime.now(UTC).replace(hour=10, minute=0, second=0,
                                      microsecond=0) + timedelta(days=1)
EVENT = {"summary": "Planning", "start": {"dateTime": f"{_TOMORROW:%Y-%m-%dT%H:%M:%SZ}"},
         "end": {"dateTime": f"{_TOMORROW + timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}"}}


async def _stored(deps: Deps, account_id: str, feature: str) -> dict[str, Any]:
    page = await deps.store.read(account_id, use=f"feature:{feature}", actor="test",
                                 feature=feature, limit=1000)
    return {item["id"]: item["content"] for item in page.items}


async def _watched_meetings(api: TestClient, emulator: Emulator,
                            run_worker: RunWorker) -> tuple[str, Channel]:
    """A meetings-only user, connected and synced: its channel at the emulator."""
    grant = emulator.state.add_user(EMAIL, [], [FEATURES["meetings"].scope])
    account_id = await connect(api, grant.refresh_token)
    await run_worker()
    [channel] = push_of(emulator.state).channels.values()
    return account_id, channel


async def test_a_calendar_change_is_pushed_and_synced(
        api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker,
        pushing: Any) -> None:
    """First sync opens a channel; a new event notifies the web app; the worker stores it."""
    account_id, channel = await _watched_meetings(api, emulator, run_worker)
    [row] = await channels_of(deps, account_id)
    assert row.channel_id == channel.id and channel.address.endswith("/webhooks/google/calendar")
    assert row.token_hash and channel.token and row.token_hash != channel.token
    await until(lambda: push_of(emulator.state).deliveries)
    assert push_of(emulator.state).deliveries[0] | {} == {
        "api": "calendar", "channel_id": channel.id, "state": "sync", "status": 200}
    assert await deps.queue.queued_jobs(account_id) == []  # the sync ping queued nothing
    [event_id] = cal.add_events(emulator.state, EMAIL, [EVENT])
    await until(lambda: deps.queue.queued_jobs(account_id))
    await run_worker()
    assert (await _stored(deps, account_id, "meetings"))[event_id]["summary"] == "Planning"


async def test_a_drive_change_is_pushed_and_synced(
        api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker,
        pushing: Any) -> None:
    """shared_files is watched through changes.watch; a new file arrives by push."""
    grant = emulator.state.add_user(EMAIL, [], [FEATURES["shared_files"].scope])
    account_id = await connect(api, grant.refresh_token)
    await run_worker()
    assert [r.feature for r in await channels_of(deps, account_id)] == ["shared_files"]
    file_id = drive.add_file(emulator.state, EMAIL, "Pushed.pdf")
    await until(lambda: deps.queue.queued_jobs(account_id))
    await run_worker()
    assert (await _stored(deps, account_id, "shared_files"))[file_id]["name"] == "Pushed.pdf"


async def test_a_new_message_is_pushed_through_pubsub_and_synced(
        api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker,
        pushing: Any) -> None:
    """mail_activity is watched via users.watch; Pub/Sub's push queues the sync."""
    grant = add_gmail_user(emulator.state, EMAIL, 2)
    account_id = await connect(api, grant.refresh_token)
    await run_worker()
    [row] = await channels_of(deps, account_id)
    assert row.address_hash and EMAIL not in row.address_hash and row.token_hash is None
    message = mailbox(emulator.state, EMAIL).add({"From": "f@example.com", "Subject": "Pushed"},
                                                 "text", 1_700_000_000_000)
    await until(lambda: deps.queue.queued_jobs(account_id))
    await run_worker()
    assert (await _stored(deps, account_id, "mail_activity"))[message.id]["subject"] == "Pushed"


async def test_sync_pings_are_acknowledged_and_queue_nothing(
        api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker,
        pushing: Any) -> None:
    """A `sync` state message is answered 200 and ignored."""
    account_id, channel = await _watched_meetings(api, emulator, run_worker)
    resp = await api.post("/webhooks/google/calendar", headers=channel_headers(channel, "sync"))
    assert resp.status == 200 and (await resp.json())["status"] == "sync_acknowledged"
    assert await deps.queue.queued_jobs(account_id) == []


async def test_bad_channel_notifications_queue_nothing(
        api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker,
        pushing: Any) -> None:
    """Wrong token, wrong resource, unknown or malformed channel, wrong route: 4xx, no job."""
    account_id, channel = await _watched_meetings(api, emulator, run_worker)
    cases = [
        ("calendar", channel_headers(channel, **{"X-Goog-Channel-Token": "guess"}), 403,
         "bad_channel_token"),
        ("calendar", channel_headers(channel, **{"X-Goog-Resource-ID": "other"}), 403,
         "bad_resource_id"),
        ("calendar", channel_headers(channel, **{"X-Goog-Channel-ID":
                                          "00000000-0000-4000-8000-000000000000"}), 404,
         "unknown_channel"),
        ("calendar", channel_headers(channel, **{"X-Goog-Channel-ID": "not-a-uuid"}), 404,
         "unknown_channel"),
        ("drive", channel_headers(channel), 404, "unknown_channel"),
        ("calendar", {"X-Goog-Channel-ID": channel.id}, 400, "missing_channel_headers"),
    ]
    for route, headers, status, error in cases:
        resp = await api.post(f"/webhooks/google/{route}", headers=headers)
        assert (resp.status, (await resp.json())["error"]) == (status, error), error
    assert await deps.queue.queued_jobs(account_id) == []


async def test_three_notifications_in_a_row_coalesce_into_one_job(
        api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker,
        pushing: Any) -> None:
    """Back-to-back pushes for one feature leave exactly one queued sync."""
    account_id, channel = await _watched_meetings(api, emulator, run_worker)
    statuses = []
    for _ in range(3):
        resp = await api.post("/webhooks/google/calendar", headers=channel_headers(channel))
        statuses.append((await resp.json())["status"])
    assert statuses == ["queued", "coalesced", "coalesced"]
    assert await deps.queue.queued_jobs(account_id) == [
        deps.queue.sync_job_id(account_id, "meetings")]


async def test_forged_or_foreign_pubsub_bodies_queue_nothing(
        api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker,
        pushing: Any) -> None:
    """Wrong secret, wrong subscription, undecodable data: refused; an unknown mailbox:
    acknowledged (so Pub/Sub stops redelivering) and ignored."""
    grant = add_gmail_user(emulator.state, EMAIL, 1)
    account_id = await connect(api, grant.refresh_token)
    await run_worker()
    later = mailbox(emulator.state, EMAIL).history_id + 100
    url = f"/webhooks/google/gmail?token={PUSH_TOKEN}"
    cases = [
        ("/webhooks/google/gmail?token=guess", pubsub_body(EMAIL, later), 403),
        ("/webhooks/google/gmail", pubsub_body(EMAIL, later), 403),
        (url, pubsub_body(EMAIL, later, "projects/x/subscriptions/y"), 403),
        (url, {"message": {"data": "%%%"}, "subscription": SUBSCRIPTION}, 400),
        (url, {"message": {}}, 400),
        (url, pubsub_body("stranger@example.com", later), 200),
    ]
    for path, body, status in cases:
        resp = await api.post(path, json=body)
        assert resp.status == status, (path, body)
    assert await deps.queue.queued_jobs(account_id) == []
    resp = await api.post(url, json=pubsub_body(EMAIL.upper(), later))
    assert (await resp.json())["status"] == "queued"  # the genuine one does queue
