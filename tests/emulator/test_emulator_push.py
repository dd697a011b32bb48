"""The emulator's watch/stop methods, called with google-api-python-client, and the
notifications it sends when data changes."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from googleapiclient.errors import HttpError

from gwsync.connectors import client, watches
from gwsync.connectors.endpoints import Endpoints
from gwsync.domain.features import FEATURES
from gwsync.emulator import calendar_events as cal
from gwsync.emulator import drive
from gwsync.emulator.mailbox import add_gmail_user, mailbox
from gwsync.emulator.push import push_of, subscribe
from tests.emulator.support import Emulator
from tests.helpers import eventually

EMAIL = "dana@example.com"
EVENT = {"summary": "x", "start": {"dateTime": "2030-01-01T10:00:00Z"},
         "end": {"dateTime": "2030-01-01T11:00:00Z"}}
TOPIC, SUBSCRIPTION = "projects/p/topics/gmail", "projects/p/subscriptions/gwsync"


class Receiver:
    """A webhook endpoint that records what it is sent."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(status=200)

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/hook"))

    def states(self) -> list[str]:
        return [h["X-Goog-Resource-State"] for h, _ in self.received]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    found.server = TestServer(app)
    await found.server.start_server()
    yield found
    await found.server.close()


async def _until(condition: Callable[[], Any]) -> None:
    async def check() -> Any:
        return condition()
    await eventually(check, within_s=5, every_s=0.02)


def _service(emulator: Emulator, api: str, refresh_token: str, feature: str) -> Any:
    token = emulator.state.mint_access_token(refresh_token, [FEATURES[feature].scope])
    return client.service(api, token, Endpoints.from_base(emulator.url), 5)


async def test_calendar_channel_sends_sync_then_exists_on_change(
        emulator: Emulator, receiver: Receiver) -> None:
    """events.watch answers Google's channel; the address gets `sync`, then `exists` per change."""
    grant = emulator.state.add_user(EMAIL, [], [FEATURES["meetings"].scope])
    service = _service(emulator, "calendar", grant.refresh_token, "meetings")
    body = {"id": "c0ffee00-0000-4000-8000-000000000001", "type": "web_hook",
            "address": receiver.url, "token": "s3cret"}
    channel = await client.execute(service.events().watch(calendarId="primary", body=body).execute)
    assert channel["id"] == body["id"] and channel["resourceId"] and channel["expiration"].isdigit()
    await _until(lambda: receiver.states() == ["sync"])
    cal.add_events(emulator.state, EMAIL, [EVENT])
    await _until(lambda: receiver.states() == ["sync", "exists"])
    headers = receiver.received[1][0]
    assert headers["X-Goog-Channel-ID"] == body["id"]
    assert headers["X-Goog-Channel-Token"] == "s3cret"
    assert headers["X-Goog-Resource-ID"] == channel["resourceId"]
    assert headers["X-Goog-Message-Number"] == "2" and receiver.received[1][1] == b""
    service.close()


async def test_stopped_drive_channel_sends_nothing_more(
        emulator: Emulator, receiver: Receiver) -> None:
    """changes.watch needs a page token; after channels.stop a change notifies nobody."""
    grant = emulator.state.add_user(EMAIL, [], [FEATURES["shared_files"].scope])
    service = _service(emulator, "drive", grant.refresh_token, "shared_files")
    start = await client.execute(service.changes().getStartPageToken().execute)
    body = {"id": "c0ffee00-0000-4000-8000-000000000002", "type": "web_hook",
            "address": receiver.url, "token": "t"}
    channel = await client.execute(
        service.changes().watch(pageToken=start["startPageToken"], body=body).execute)
    drive.add_file(emulator.state, EMAIL, "a.pdf")
    await _until(lambda: receiver.states() == ["sync", "change"])
    await watches.stop_channel(service, "shared_files", body["id"], channel["resourceId"])
    assert push_of(emulator.state).active() == []
    drive.add_file(emulator.state, EMAIL, "b.pdf")
    with pytest.raises(Exception, match="404"):
        await watches.stop_channel(service, "shared_files", body["id"], channel["resourceId"])
    assert receiver.states() == ["sync", "change"]
    service.close()


async def test_watch_with_a_bad_page_token_or_a_duplicate_id_is_refused(
        emulator: Emulator, receiver: Receiver) -> None:
    """A Drive watch needs a valid page token; a channel id can only be used once."""
    scopes = [FEATURES["meetings"].scope, FEATURES["shared_files"].scope]
    grant = emulator.state.add_user(EMAIL, [], scopes)
    calendar = _service(emulator, "calendar", grant.refresh_token, "meetings")
    files = _service(emulator, "drive", grant.refresh_token, "shared_files")
    body = {"id": "dup", "type": "web_hook", "address": receiver.url}
    with pytest.raises(HttpError) as err:
        await asyncio.to_thread(files.changes().watch(pageToken="99999", body=body).execute)
    assert err.value.resp.status == 400
    await client.execute(calendar.events().watch(calendarId="primary", body=body).execute)
    with pytest.raises(HttpError) as err:
        await asyncio.to_thread(
            calendar.events().watch(calendarId="primary", body=body).execute)
    assert err.value.resp.status == 400
    calendar.close()
    files.close()


async def test_gmail_watch_publishes_pubsub_push_bodies_at_most_once_a_second(
        emulator: Emulator, receiver: Receiver) -> None:
    """users.watch → {historyId, expiration}; changes reach the subscription's endpoint
    as Pub/Sub push bodies, folded to one per interval."""
    grant = add_gmail_user(emulator.state, EMAIL, 2)
    subscribe(emulator.state, TOPIC, SUBSCRIPTION, receiver.url)
    push_of(emulator.state).gmail_min_interval_s = 0.5
    service = _service(emulator, "gmail", grant.refresh_token, "mail_activity")
    answer = await client.execute(service.users().watch(userId="me",
                                                        body={"topicName": TOPIC}).execute)
    assert answer["historyId"].isdigit() and answer["expiration"].isdigit()
    box = mailbox(emulator.state, EMAIL)
    for i in range(3):
        box.add({"From": f"x{i}@example.com", "Subject": "hi"}, "body", 1_700_000_000_000)
    await _until(lambda: receiver.received)
    body = json.loads(receiver.received[0][1])
    data = json.loads(base64.b64decode(body["message"]["data"]))
    assert body["subscription"] == SUBSCRIPTION
    assert data == {"emailAddress": EMAIL, "historyId": box.history_id}
    assert len(receiver.received) == 1  # three changes, one notification
    await watches.stop_mailbox(service)
    assert push_of(emulator.state).active() == []
    service.close()


async def test_gmail_watch_to_a_topic_gmail_cannot_publish_to_is_refused(
        emulator: Emulator) -> None:
    """A topic without the Pub/Sub set-up answers 403, as Google does."""
    grant = add_gmail_user(emulator.state, EMAIL, 0)
    service = _service(emulator, "gmail", grant.refresh_token, "mail_activity")
    with pytest.raises(Exception, match="403"):
        await client.execute(service.users().watch(userId="me",
                                                   body={"topicName": TOPIC}).execute)
    service.close()


async def test_a_revoked_grant_stops_its_channels(emulator: Emulator, receiver: Receiver) -> None:
    """Once the grant that opened a channel is revoked, changes notify nobody."""
    grant = emulator.state.add_user(EMAIL, [], [FEATURES["meetings"].scope])
    service = _service(emulator, "calendar", grant.refresh_token, "meetings")
    body = {"id": "c0ffee00-0000-4000-8000-000000000003", "type": "web_hook",
            "address": receiver.url}
    await client.execute(service.events().watch(calendarId="primary", body=body).execute)
    await _until(lambda: receiver.states() == ["sync"])
    emulator.state.revoke_user(EMAIL)
    cal.add_events(emulator.state, EMAIL, [EVENT])
    await _until(lambda: push_of(emulator.state).active() == [])
    assert receiver.states() == ["sync"]
    service.close()
