"""Push notifications from Google: Calendar and Drive channels, Gmail through Pub/Sub.

Each notification is checked against a stored channel (or, for Gmail, the configured
subscription and secret), and at most enqueues one incremental sync of the feature —
the queue coalesces: one queued job per account and feature, one follow-up while it runs.

Answers follow what the senders do with them. Calendar/Drive retry only 500/502/503/504
(reference §4.2), so an unknown channel gets a 404 and a wrong token a 403: Google does
not retry them, and the refusal is visible. Pub/Sub redelivers anything but 102/200/
201/202/204, so a genuine message (right subscription and secret) for a mailbox we no
longer watch is acknowledged with 200 and ignored — a 4xx would be redelivered for days.
The Pub/Sub endpoint is protected by a shared secret in its URL (`?token=`), the simplest
of the two schemes Pub/Sub push supports (the other is an OIDC token, which needs Google's
keys); the web process keeps no access log, so the secret is not written anywhere.
Nothing here logs addresses or tokens: ids and outcomes only.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import uuid
from typing import Any

from aiohttp import web

from gwsync.connectors import watches
from gwsync.storage import accounts, channels
from gwsync.storage.models import Account, SyncState, WatchChannel
from gwsync.worker import logging
from gwsync.worker.deps import Deps
from gwsync.worker.web import deps_of

log = logging.get("gwsync.push")
MAX_BODY = 16 * 1024
#: Route → the feature its channels watch.
CHANNEL_FEATURES = {"calendar": "meetings", "drive": "shared_files"}


class Refused(Exception):
    """A notification that changes nothing: its HTTP status and machine-readable error."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status, self.error = status, error

    def response(self) -> web.Response:
        return web.json_response({"error": self.error}, status=self.status)


async def _enqueue(deps: Deps, account: Account, feature: str) -> web.Response:
    queued = await deps.queue.enqueue_sync(account.id, feature, account.generation)
    log.info("push_sync_requested", account_id=account.id, feature=feature, queued=queued)
    return web.json_response({"status": "queued" if queued else "coalesced"})


async def _active_account(deps: Deps, row: WatchChannel) -> Account | None:
    async with deps.sessions() as session:
        account = await session.get(Account, row.account_id)
    return account if account is not None and account.status == accounts.ACTIVE else None


# -- Calendar and Drive -----------------------------------------------------------------------


async def _channel(deps: Deps, request: web.Request, feature: str) -> WatchChannel:
    """The stored channel these headers name, with its token checked."""
    channel_id = request.headers.get("X-Goog-Channel-ID", "")
    if not channel_id or not request.headers.get("X-Goog-Resource-State"):
        raise Refused(400, "missing_channel_headers")
    try:
        channel_id = str(uuid.UUID(channel_id))
    except ValueError:
        raise Refused(404, "unknown_channel") from None
    async with deps.sessions() as session:
        row = await channels.find(session, channel_id)
    if row is None or row.feature != feature:
        raise Refused(404, "unknown_channel")
    if not watches.token_matches(request.headers.get("X-Goog-Channel-Token", ""),
                                 row.token_hash):
        raise Refused(403, "bad_channel_token")
    if row.resource_id and request.headers.get("X-Goog-Resource-ID") != row.resource_id:
        raise Refused(403, "bad_resource_id")
    return row


async def channel_notification(request: web.Request, api: str) -> web.Response:
    """One channel message. `sync` is acknowledged before any lookup: Google sends it
    while the watch call is still answering, before the channel can have been stored,
    and it changes nothing whoever sent it."""
    deps, feature = deps_of(request), CHANNEL_FEATURES[api]
    if request.headers.get("X-Goog-Resource-State") == "sync":
        return web.json_response({"status": "sync_acknowledged"})
    try:
        row = await _channel(deps, request, feature)
    except Refused as refused:
        log.info("push_refused", feature=feature, error=refused.error)
        return refused.response()
    account = await _active_account(deps, row)
    if account is None:
        log.info("push_refused", feature=feature, error="account_not_active")
        return Refused(404, "unknown_channel").response()
    return await _enqueue(deps, account, feature)


async def calendar_notification(request: web.Request) -> web.Response:
    return await channel_notification(request, "calendar")


async def drive_notification(request: web.Request) -> web.Response:
    return await channel_notification(request, "drive")


# -- Gmail through Pub/Sub --------------------------------------------------------------------


def _b64decode(data: str) -> bytes:
    """Pub/Sub sends standard base64; accept the URL-safe alphabet and missing padding too."""
    text = data.strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def parse_pubsub(body: Any) -> tuple[str, str, int]:
    """(subscription, mailbox address, history id) of a Pub/Sub push body."""
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("data"), str):
        raise Refused(400, "bad_pubsub_body")
    try:
        data = json.loads(_b64decode(message["data"]))
    except (binascii.Error, ValueError):
        raise Refused(400, "bad_pubsub_body") from None
    email = data.get("emailAddress") if isinstance(data, dict) else None
    history = data.get("historyId") if isinstance(data, dict) else None
    if not isinstance(email, str) or "@" not in email or not str(history).isdigit():
        raise Refused(400, "bad_pubsub_body")
    return str(body.get("subscription", "")), email, int(str(history))


def _check_sender(deps: Deps, request: web.Request) -> None:
    settings = deps.settings
    if not (settings.gmail_push_subscription and settings.push_token):
        raise Refused(404, "push_not_configured")
    presented = request.query.get("token", "").encode()
    if not hmac.compare_digest(presented, settings.push_token.get_secret_value().encode()):
        raise Refused(403, "bad_push_token")


async def _body(request: web.Request) -> Any:
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise Refused(413, "body_too_large")
    try:
        return json.loads(raw)
    except ValueError:
        raise Refused(400, "bad_pubsub_body") from None


async def _already_synced(deps: Deps, account_id: str, history_id: int) -> bool:
    """The stored cursor is at or past this history id: the change is already in."""
    async with deps.sessions() as session:
        state = await session.get(SyncState, (account_id, "mail_activity"))
    cursor = state.cursor if state is not None else None
    return bool(cursor and cursor.isdigit() and int(cursor) >= history_id)


async def gmail_notification(request: web.Request) -> web.Response:
    deps = deps_of(request)
    try:
        _check_sender(deps, request)
        subscription, email, history_id = parse_pubsub(await _body(request))
        if subscription != deps.settings.gmail_push_subscription:
            raise Refused(403, "unknown_subscription")
    except Refused as refused:
        log.info("push_refused", feature="mail_activity", error=refused.error)
        return refused.response()
    async with deps.sessions() as session:
        rows = await channels.by_address(
            session, watches.address_hash(deps.settings.master_key, email))
    account = await _active_account(deps, rows[0]) if rows else None
    if account is None:  # acknowledged, so Pub/Sub does not redeliver it for days
        log.info("push_ignored", feature="mail_activity", reason="no_watch")
        return web.json_response({"status": "ignored"})
    if await _already_synced(deps, account.id, history_id):
        return web.json_response({"status": "up_to_date"})
    return await _enqueue(deps, account, "mail_activity")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/webhooks/google/calendar", calendar_notification)
    app.router.add_post("/webhooks/google/drive", drive_notification)
    app.router.add_post("/webhooks/google/gmail", gmail_notification)
