"""Push set-up the push specifications share: the deployment's public origin is the real
web app's loopback address, and the emulator's Pub/Sub pushes to its Gmail webhook."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from gwsync.core.settings import Settings
from gwsync.emulator.push import Channel, push_of, subscribe
from gwsync.storage.models import Account, WatchChannel
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator
from tests.helpers import eventually

TOPIC = "projects/demo/topics/gmail-push"
SUBSCRIPTION = "projects/demo/subscriptions/gwsync-push"
PUSH_TOKEN = "push-secret-for-tests"


@pytest.fixture
def pushing(api: TestClient, settings: Settings, emulator: Emulator) -> Settings:
    """Turn push on: the settings object web app and workers share now names the web
    app's address, and the emulator's Pub/Sub pushes to its Gmail webhook."""
    settings.public_url = str(api.make_url("/")).rstrip("/")
    settings.gmail_push_topic = TOPIC
    settings.gmail_push_subscription = SUBSCRIPTION
    settings.push_token = SecretStr(PUSH_TOKEN)
    endpoint = str(api.make_url(f"/webhooks/google/gmail?token={PUSH_TOKEN}"))
    subscribe(emulator.state, TOPIC, SUBSCRIPTION, endpoint)
    push_of(emulator.state).gmail_min_interval_s = 0.05
    return settings


async def channels_of(deps: Deps, account_id: str) -> list[WatchChannel]:
    async with deps.sessions() as session:
        return list(await session.scalars(select(WatchChannel).where(
            WatchChannel.account_id == account_id)))


async def generation(deps: Deps, account_id: str) -> int:
    async with deps.sessions() as session:
        account = await session.get(Account, account_id)
        assert account is not None
        return account.generation


async def until(condition: Callable[[], Any], within_s: float = 10) -> Any:
    """Poll an async or plain condition until it holds."""
    async def check() -> Any:
        value = condition()
        return await value if hasattr(value, "__await__") else value
    return await eventually(check, within_s=within_s, every_s=0.02)


def channel_headers(channel: Channel, state: str = "exists", **changes: str) -> dict[str, str]:
    """The headers Google sends with a Calendar or Drive channel notification."""
    headers = {"X-Goog-Channel-ID": channel.id, "X-Goog-Channel-Token": channel.token or "",
               "X-Goog-Resource-ID": channel.resource_id, "X-Goog-Resource-State": state,
               "X-Goog-Message-Number": "7"}
    return {**headers, **changes}


def pubsub_body(email: str, history_id: int, subscription: str = SUBSCRIPTION) -> dict[str, Any]:
    """A Pub/Sub push body as Gmail's watch publishes it."""
    data = json.dumps({"emailAddress": email, "historyId": str(history_id)}).encode()
    return {"message": {"data": base64.urlsafe_b64encode(data).decode().rstrip("="),
                        "messageId": "1", "publishTime": "2030-01-01T00:00:00Z"},
            "subscription": subscription}
