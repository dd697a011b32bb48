"""Freshness through Gmail push: a new message at Google → readable through the API.

Set up as an operator would: a Pub/Sub topic Gmail may publish to, with a push
subscription to the web process's ``/webhooks/google/gmail`` that authenticates each
push with an OIDC token (``pushConfig.oidcToken``: a service account, the endpoint as
audience); gwsync is told the topic, the subscription and the OIDC audience and service
account (``GWSYNC_GMAIL_PUSH_TOPIC``, ``GWSYNC_GMAIL_PUSH_SUBSCRIPTION``,
``GWSYNC_PUSH_OIDC_AUDIENCE``, ``GWSYNC_PUSH_OIDC_EMAIL``; no URL token). The first sync
of a connected mailbox opens its watch (``users.watch``); each new message is then
published by the emulator's Gmail (at most once a second per user, Gmail's documented
rate) and pushed to the web process, which verifies the token and queues one
incremental sync (``history.list`` from the stored cursor); the figure ends when
``GET /v1/accounts/{id}/records`` first returns the message.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from bench.harness import GMAIL_METADATA, BenchError, Deployment, time_to_visible
from gwsync.client.api import Client

FEATURE = "mail_activity"
TOPIC = "projects/gwsync-bench/topics/gmail-push"
SUBSCRIPTION = "projects/gwsync-bench/subscriptions/gwsync-gmail-push"
SERVICE_ACCOUNT = "pubsub-push@gwsync-bench.iam.gserviceaccount.com"
PATH = "/webhooks/google/gmail"
#: New messages this far apart: Gmail notifies a watched user at most once a second.
SPACING_S = 1.0
WITHIN_S = 180.0

#: (emulator user, user id, account id) → the ids of records readable now.
Visible = Callable[[Client, str, str], Awaitable[set[str]]]


def configure(dep: Deployment, web_url: str) -> None:
    """gwsync's side of the set-up, before its processes start: the topic and the
    subscription it accepts, and the OIDC audience and service account of its pushes."""
    dep.settings.gmail_push_topic = TOPIC
    dep.settings.gmail_push_subscription = SUBSCRIPTION
    dep.settings.push_oidc_audience = web_url + PATH
    dep.settings.push_oidc_email = SERVICE_ACCOUNT


async def subscribe(dep: Deployment, web_url: str) -> None:
    """Google's side: the topic with its push subscription to the web process."""
    await dep.emulator.admin("POST", "/_emulator/pubsub/subscriptions", {
        "topic": TOPIC, "subscription": SUBSCRIPTION, "push_endpoint": web_url + PATH,
        "oidc_service_account_email": SERVICE_ACCOUNT, "oidc_audience": web_url + PATH})


async def _account(dep: Deployment, gw: Client) -> tuple[str, str, str]:
    """A mailbox of one message connected through the API, synced once and watched."""
    issued = await dep.emulator.admin("POST", "/_emulator/users", {
        "email": f"fresh-mail-{uuid.uuid4().hex[:8]}@example.com", "scopes": [GMAIL_METADATA]})
    user = str(issued["user"])
    await dep.emulator.admin("POST", f"/_emulator/users/{user}/gmail/seed", {"n": 1})
    user_id = f"bench-{uuid.uuid4().hex[:8]}"
    account_id = (await gw.connect(user_id, str(issued["refresh_token"]))).account_id
    deadline = time.monotonic() + WITHIN_S
    while time.monotonic() < deadline:
        watches = (await dep.emulator.admin("GET", "/_emulator/push/channels"))["channels"]
        state = await dep.sync_state(account_id, FEATURE)
        if state and state.status == "ok" and any(
                w.get("api") == "gmail" and w.get("user") == user for w in watches):
            return user, user_id, account_id
        await asyncio.sleep(0.1)
    raise BenchError("the first mail sync did not finish with a Gmail watch")


async def measure(dep: Deployment, gw: Client, n: int, visible: Visible,
                  read_every_s: float) -> list[float]:
    """`n` new messages SPACING_S apart; seconds from each until the API returns it."""
    user, user_id, account_id = await _account(dep, gw)
    await asyncio.sleep(SPACING_S)  # past the once-a-second limit of the watch's start

    async def make(i: int) -> str:
        ids = await dep.emulator.admin("POST", f"/_emulator/users/{user}/gmail/messages", {
            "from": "fresh@example.com", "to": "me@example.com", "subject": f"fresh {i}"})
        return str(ids["ids"][0])

    return await time_to_visible(make, lambda: visible(gw, user_id, account_id), n,
                                 SPACING_S, read_every_s, WITHIN_S)
