"""Push notifications: the emulator's channels and Pub/Sub, and the notifier that delivers.

Calendar and Drive channels (``events.watch``, ``changes.watch``) get Google's header-only
POSTs: ``sync`` right after creation (message number 1), then ``exists`` (Calendar) or
``change`` (Drive) whenever the watched data changes. Gmail's ``users.watch`` publishes
``{emailAddress, historyId}`` to a Pub/Sub topic; a push subscription registered here
(admin route or :func:`subscribe`) forwards it as Pub/Sub's push body, at most once a
second per user (Gmail's documented limit; changes in between are folded into the next).

The notifier does not hook into the API modules: a ticker on the emulator's loop compares
each watched user's change counter (Calendar sequence, Drive change number, Gmail history
id) with the one it last notified, so every way of changing data (API, admin routes,
in-process helpers) notifies. Deliveries are asyncio tasks; a failed one is logged and
not retried — Google retries 5xx with backoff, which the emulator does not reproduce.
A channel stops delivering when it expires or when the grant that created it is revoked
(that Google stops delivering to revoked grants is our reading, not documented).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import logging
import weakref
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import aiohttp
from aiohttp import web

from gwsync.emulator import drive_data, pubsub_oidc
from gwsync.emulator.admin import PREFIX
from gwsync.emulator.calendar_events import calendar_of
from gwsync.emulator.clock import iso
from gwsync.emulator.mailbox import mailbox
from gwsync.emulator.state import STATE_KEY, EmulatorState

log = logging.getLogger("gwsync.emulator.push")
#: Gmail: "a maximum notification rate of 1 event per second per user being watched".
GMAIL_MIN_INTERVAL_S = 1.0
TICK_S = 0.02
DELIVERY_TIMEOUT_S = 5.0
#: What a change is called, per API (Drive's changes.watch sends ``change``).
CHANGE_STATE = {"calendar": "exists", "drive": "change"}


@dataclass
class Channel:
    """A Calendar or Drive notification channel, as ``watch`` created it."""

    id: str
    api: str
    user: str
    grant_id: str
    client_id: str
    resource_id: str
    resource_uri: str
    address: str
    token: str | None
    expires_at: float
    notified: int
    message_number: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "api": self.api, "user": self.user,
                "resourceId": self.resource_id, "address": self.address,
                "expiration": iso(self.expires_at), "messages": self.message_number}


@dataclass
class GmailWatch:
    """One user's Gmail watch: where it publishes, and what was last published."""

    user: str
    grant_id: str
    topic: str
    expires_at: float
    notified: int
    last_sent: float = float("-inf")

    def as_json(self) -> dict[str, Any]:
        return {"api": "gmail", "user": self.user, "topic": self.topic,
                "expiration": iso(self.expires_at)}


@dataclass(frozen=True)
class Subscription:
    """A Pub/Sub push subscription: messages of ``topic`` are POSTed to ``endpoint``."""

    name: str
    topic: str
    endpoint: str
    #: Push authentication (`pushConfig.oidcToken`): the service account whose ID token
    #: each push carries, and its audience (Pub/Sub's default: the push endpoint).
    oidc_email: str | None = None
    oidc_audience: str | None = None

    def headers(self) -> dict[str, str]:
        """`Authorization: Bearer <ID token>` when the subscription authenticates pushes."""
        if self.oidc_email is None:
            return {}
        token = pubsub_oidc.oidc_token(self.oidc_audience or self.endpoint, self.oidc_email)
        return {"Authorization": f"Bearer {token}"}


@dataclass
class PushState:
    """Everything push-related of one emulator state."""

    channels: dict[str, Channel] = field(default_factory=dict)
    gmail: dict[str, GmailWatch] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    gmail_min_interval_s: float = GMAIL_MIN_INTERVAL_S
    message_ids: Any = field(default_factory=lambda: itertools.count(4_100_000_000_000_000))
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    session: aiohttp.ClientSession | None = None
    ticker: asyncio.Task[None] | None = None
    #: How many running apps serve this state (the notifier runs while any does).
    serving: int = 0

    def active(self) -> list[dict[str, Any]]:
        """The live channels and Gmail watches (admin view)."""
        return ([c.as_json() for c in self.channels.values()]
                + [w.as_json() for w in self.gmail.values()])


_PUSH: weakref.WeakKeyDictionary[EmulatorState, PushState] = weakref.WeakKeyDictionary()


def push_of(state: EmulatorState) -> PushState:
    """The push state of an emulator state (created on first use)."""
    if state not in _PUSH:
        _PUSH[state] = PushState()
    return _PUSH[state]


def subscribe(state: EmulatorState, topic: str, subscription: str, endpoint: str,
              oidc_email: str | None = None, oidc_audience: str | None = None) -> None:
    """Create the topic (publishable by Gmail) with one push subscription to ``endpoint``;
    with ``oidc_email``, every push carries that service account's signed ID token."""
    push_of(state).subscriptions[topic] = Subscription(subscription, topic, endpoint,
                                                       oidc_email, oidc_audience)


def version(state: EmulatorState, api: str, user: str) -> int:
    """The user's change counter for ``api``: it moves whenever that API's data changes."""
    if api == "calendar":
        return calendar_of(state, user).seq
    if api == "drive":
        return drive_data.data(state, user).seq
    return mailbox(state, user).history_id


def resource_id(api: str, user: str, resource: str) -> str:
    """A stable opaque id of the watched resource (Google's format is not documented)."""
    return hashlib.sha256(f"{api}:{user}:{resource}".encode()).hexdigest()[:27]


# -- delivery -------------------------------------------------------------------------------


def _spawn(push: PushState, coro: Any) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    push.tasks.add(task)
    task.add_done_callback(push.tasks.discard)


async def _post(push: PushState, record: dict[str, Any], url: str, **kwargs: Any) -> None:
    """POST once; the outcome goes to the delivery log, a failure to the log too."""
    if push.session is None:
        record["status"] = "no_session"
    else:
        try:
            timeout = aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_S)
            async with push.session.post(url, timeout=timeout, **kwargs) as resp:
                record["status"] = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            record["status"] = "failed"
            log.warning("push delivery failed: %s", type(exc).__name__)
    push.deliveries.append(record)


def notify_channel(push: PushState, channel: Channel, resource_state: str) -> None:
    """Send one header-only notification on ``channel`` (as a task)."""
    channel.message_number += 1
    headers = {
        "X-Goog-Channel-ID": channel.id,
        "X-Goog-Channel-Expiration": formatdate(channel.expires_at, usegmt=True),
        "X-Goog-Resource-ID": channel.resource_id,
        "X-Goog-Resource-URI": channel.resource_uri,
        "X-Goog-Resource-State": resource_state,
        "X-Goog-Message-Number": str(channel.message_number),
    }
    if channel.token is not None:
        headers["X-Goog-Channel-Token"] = channel.token
    record = {"api": channel.api, "channel_id": channel.id, "state": resource_state}
    _spawn(push, _post(push, record, channel.address, headers=headers, data=b""))


def pubsub_body(push: PushState, sub: Subscription, email: str, history_id: int,
                now: float) -> dict[str, Any]:
    """Pub/Sub's push body; ``data`` is standard base64 of Gmail's JSON notification."""
    data = json.dumps({"emailAddress": email, "historyId": history_id}).encode()
    message_id = str(next(push.message_ids))
    return {"message": {"data": base64.b64encode(data).decode(), "messageId": message_id,
                        "message_id": message_id, "publishTime": iso(now),
                        "publish_time": iso(now)},
            "subscription": sub.name}


def notify_gmail(push: PushState, state: EmulatorState, watch: GmailWatch,
                 history_id: int) -> None:
    sub = push.subscriptions.get(watch.topic)
    if sub is None:  # the subscription was deleted: Pub/Sub keeps nothing for nobody
        return
    body = pubsub_body(push, sub, state.user(watch.user).email, history_id, state.now())
    record = {"api": "gmail", "subscription": sub.name, "state": "published"}
    _spawn(push, _post(push, record, sub.endpoint, json=body, headers=sub.headers()))


# -- the ticker -----------------------------------------------------------------------------


def _alive(state: EmulatorState, grant_id: str, expires_at: float) -> bool:
    grant = state.grants.get(grant_id)
    return grant is not None and grant.revoked_at is None and expires_at > state.now()


def tick(state: EmulatorState, loop_time: float) -> None:
    """Notify every live channel whose data moved; forget dead ones."""
    push = push_of(state)
    for channel in list(push.channels.values()):
        if not _alive(state, channel.grant_id, channel.expires_at):
            del push.channels[channel.id]
            continue
        current = version(state, channel.api, channel.user)
        if current != channel.notified:
            channel.notified = current
            notify_channel(push, channel, CHANGE_STATE[channel.api])
    for user, watch in list(push.gmail.items()):
        if not _alive(state, watch.grant_id, watch.expires_at):
            del push.gmail[user]
            continue
        current = version(state, "gmail", user)
        if current != watch.notified and loop_time - watch.last_sent >= push.gmail_min_interval_s:
            watch.notified, watch.last_sent = current, loop_time
            notify_gmail(push, state, watch, current)


async def _run(state: EmulatorState) -> None:
    loop = asyncio.get_running_loop()
    while True:
        try:
            tick(state, loop.time())
        except Exception:  # a user deleted mid-tick must not stop every notification
            log.exception("push tick failed")
        await asyncio.sleep(TICK_S)


# -- lifecycle and admin routes -------------------------------------------------------------

async def _start(app: web.Application) -> None:
    """Several apps may serve one state: the first starts its notifier, the last stops it."""
    push = push_of(app[STATE_KEY])
    push.serving += 1
    if push.serving == 1:
        push.session = aiohttp.ClientSession()
        push.ticker = asyncio.get_running_loop().create_task(_run(app[STATE_KEY]))


async def _stop(app: web.Application) -> None:
    push = push_of(app[STATE_KEY])
    push.serving -= 1
    if push.serving > 0:
        return
    tasks = [t for t in (push.ticker, *push.tasks) if t is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    push.ticker = None
    if push.session is not None:
        await push.session.close()
        push.session = None


async def admin_channels(request: web.Request) -> web.Response:
    """``GET /_emulator/push/channels``: live channels and Gmail watches."""
    return web.json_response({"channels": push_of(request.app[STATE_KEY]).active()})


async def admin_deliveries(request: web.Request) -> web.Response:
    """``GET /_emulator/push/deliveries``: every notification sent and its HTTP status."""
    return web.json_response({"deliveries": push_of(request.app[STATE_KEY]).deliveries})


async def admin_subscribe(request: web.Request) -> web.Response:
    """``POST /_emulator/pubsub/subscriptions`` ``{topic, subscription, push_endpoint,
    oidc_service_account_email?, oidc_audience?}``."""
    try:
        body = await request.json()
    except ValueError:
        raise ValueError("body must be JSON") from None
    values = [body.get(k) if isinstance(body, dict) else None
              for k in ("topic", "subscription", "push_endpoint")]
    if not all(isinstance(v, str) and v for v in values):
        raise ValueError("topic, subscription and push_endpoint must be strings")
    oidc = [body.get(k) for k in ("oidc_service_account_email", "oidc_audience")]
    if not all(v is None or (isinstance(v, str) and v) for v in oidc):
        raise ValueError("oidc_service_account_email and oidc_audience must be strings")
    subscribe(request.app[STATE_KEY], *[str(v) for v in values], *oidc)
    return web.json_response({}, status=201)


def setup(app: web.Application) -> None:
    """Run the notifier with the app; register the admin routes."""
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    app.router.add_get(PREFIX + "/push/channels", admin_channels)
    app.router.add_get(PREFIX + "/push/deliveries", admin_deliveries)
    app.router.add_post(PREFIX + "/pubsub/subscriptions", admin_subscribe)
