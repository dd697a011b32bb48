"""Push notifications from Google: Calendar and Drive channels, Gmail through Pub/Sub.

Each notification is checked against a stored channel (or, for Gmail, the configured
subscription and secret), and at most enqueues one incremental sync of the feature —
the queue coalesces: one queued job per account and feature, one follow-up while it runs.

Answers follow what the senders do with them. Calendar/Drive retry only 500/502/503/504
(docs/google.md §4.2), so an unknown channel gets a 404 and a wrong token a 403: Google does
not retry them, and the refusal is visible. Pub/Sub redelivers anything but 102/200/
201/202/204, so a genuine message (right subscription and secret) for a mailbox we no
longer watch is acknowledged with 200 and ignored — a 4xx would be redelivered for days.
The Pub/Sub endpoint is authenticated as Pub/Sub push does it: the subscription's OIDC
token (`Authorization: Bearer`, verified with google-auth against Google's keys, its
audience and service account from `GWSYNC_PUSH_OIDC_AUDIENCE`/`GWSYNC_PUSH_OIDC_EMAIL`;
gwsync/connectors/push_auth.py). Only when those are unset does a shared secret in the
URL (`?token=`) stand in — weaker, since a URL can leak through proxies' logs; the web
process keeps no access log, so the secret is not written anywhere by us.
Nothing here logs addresses or tokens: ids and outcomes only. Bodies go through the web
layer's one strict parse path (bounded size and depth, ASCII-digit history ids), so a
malformed push is a 4xx that Pub/Sub may redeliver, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import uuid
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gwsync.connectors import push_auth, watches
from gwsync.core import logs
from gwsync.core.settings import Settings
from gwsync.domain.api import ErrorBody, WebhookAck
from gwsync.storage import accounts, channels
from gwsync.storage.models import Account, SyncState, WatchChannel
from gwsync.tasks.deps import Deps
from gwsync.web.answers import answer
from gwsync.web.http import HttpError, deps_of
from gwsync.web.parse import Integer, parse_json, read_json

log = logs.get("gwsync.push")
MAX_BODY = 16 * 1024
#: Gmail's history ids are unsigned 64-bit integers.
MAX_HISTORY_ID = 2**64 - 1
#: Route → the feature its channels watch.
CHANNEL_FEATURES = {"calendar": "meetings", "drive": "shared_files"}


class Refused(Exception):
    """A notification that changes nothing: its HTTP status and machine-readable error."""

    def __init__(self, status: int, error: str, message: str = "") -> None:
        super().__init__(error)
        self.status, self.error = status, error
        self.message = message or MESSAGES.get(error, error.replace("_", " "))

    def response(self) -> web.Response:
        return answer(ErrorBody(error=self.error, message=self.message), status=self.status)


MESSAGES = {
    "missing_channel_headers": "X-Goog-Channel-ID and X-Goog-Resource-State are required",
    "unknown_channel": "no watch channel has this id",
    "bad_channel_token": "the channel token does not match",
    "bad_resource_id": "the resource id does not match the channel",
    "bad_pubsub_body": "the body is not a Pub/Sub push of a Gmail change",
    "push_not_configured": "Gmail push is not configured",
    "bad_push_token": "the push token does not match",
    "missing_push_oidc_token": "an Authorization: Bearer ID token from Pub/Sub is required",
    "invalid_push_oidc_token": "the push's ID token is not valid (signature, audience, "
                               "issuer or expiry)",
    "wrong_push_sender": "the push's ID token names another service account",
    "push_keys_unavailable": "Google's signing keys could not be fetched; retry",
    "unknown_subscription": "the subscription is not the configured one",
}


async def _enqueue(deps: Deps, account: Account, feature: str) -> web.Response:
    queued = await deps.queue.enqueue_sync(account.id, feature, account.generation)
    log.info("push_sync_requested", account_id=account.id, feature=feature, queued=queued)
    return answer(WebhookAck(status="queued" if queued else "coalesced"))


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
        return answer(WebhookAck(status="sync_acknowledged"))
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


class PubSubMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # Pub/Sub adds ids, times, attributes
    data: Annotated[str, Field(max_length=MAX_BODY)]


class PubSubPush(BaseModel):
    """The push body Pub/Sub posts: one message and the subscription it came through."""

    model_config = ConfigDict(extra="ignore")
    message: PubSubMessage
    subscription: Annotated[str, Field(max_length=255)] = ""


class GmailChange(BaseModel):
    """The message's data as Gmail's watch publishes it."""

    model_config = ConfigDict(extra="ignore")
    emailAddress: Annotated[str, Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@\S+$")]
    historyId: Annotated[int, Integer(0, MAX_HISTORY_ID)]


def parse_pubsub(body: Any) -> tuple[str, str, int]:
    """(subscription, mailbox address, history id) of a Pub/Sub push body."""
    try:
        push = PubSubPush.model_validate(body)
        change = GmailChange.model_validate(parse_json(_b64decode(push.message.data)))
    except (ValidationError, binascii.Error, ValueError, HttpError):
        raise Refused(400, "bad_pubsub_body") from None
    return push.subscription, change.emailAddress, change.historyId


#: One verifier (and its cache of Google's keys) per OIDC configuration in use.
PUSH_VERIFIERS = web.AppKey("push_verifiers", dict[tuple[str, str, str], push_auth.PushVerifier])


def _verifier(request: web.Request, settings: Settings) -> push_auth.PushVerifier:
    config = (settings.push_oidc_audience or "", settings.push_oidc_email or "",
              deps_of(request).endpoints.certs)
    verifiers = request.app[PUSH_VERIFIERS]
    if config not in verifiers:
        verifiers[config] = push_auth.PushVerifier(*config, timeout_s=settings.http_timeout_s)
    return verifiers[config]


async def _check_sender(deps: Deps, request: web.Request) -> None:
    """Pub/Sub's OIDC token when configured (push_auth.py); else the URL token."""
    settings = deps.settings
    if settings.gmail_push_subscription and settings.push_oidc:
        try:
            await _verifier(request, settings).verify(request.headers.get("Authorization", ""))
        except push_auth.PushAuthError as exc:
            raise Refused(exc.status, exc.error) from None
        return
    if not (settings.gmail_push_subscription and settings.push_token):
        raise Refused(404, "push_not_configured")
    presented = request.query.get("token", "").encode()
    if not hmac.compare_digest(presented, settings.push_token.get_secret_value().encode()):
        raise Refused(403, "bad_push_token")


async def _body(request: web.Request) -> Any:
    """The whole body as bounded JSON; too large is 413, too deep or malformed 400."""
    try:
        return await read_json(request, MAX_BODY)
    except HttpError as exc:
        raise Refused(exc.status, exc.error, "the body is not bounded, valid JSON") from None


async def _already_synced(deps: Deps, account_id: str, history_id: int) -> bool:
    """The stored cursor is at or past this history id: the change is already in."""
    async with deps.sessions() as session:
        state = await session.get(SyncState, (account_id, "mail_activity"))
    cursor = state.cursor if state is not None else None
    return bool(cursor and cursor.isdigit() and int(cursor) >= history_id)


async def gmail_notification(request: web.Request) -> web.Response:
    deps = deps_of(request)
    try:
        await _check_sender(deps, request)
        subscription, email, history_id = parse_pubsub(await _body(request))
        if subscription != deps.settings.gmail_push_subscription:
            raise Refused(403, "unknown_subscription")
    except Refused as refused:
        log.info("push_refused", feature="mail_activity", error=refused.error)
        return refused.response()
    async with deps.sessions() as session:
        rows = await channels.by_address(
            session, watches.address_hash(deps.keyring.pseudonyms.subkey("mailbox-address"), email))
    account = await _active_account(deps, rows[0]) if rows else None
    if account is None:  # acknowledged, so Pub/Sub does not redeliver it for days
        log.info("push_ignored", feature="mail_activity", reason="no_watch")
        return answer(WebhookAck(status="ignored"))
    if await _already_synced(deps, account.id, history_id):
        return answer(WebhookAck(status="up_to_date"))
    return await _enqueue(deps, account, "mail_activity")


def add_routes(app: web.Application) -> None:
    app[PUSH_VERIFIERS] = {}
    app.router.add_post("/webhooks/google/calendar", calendar_notification)
    app.router.add_post("/webhooks/google/drive", drive_notification)
    app.router.add_post("/webhooks/google/gmail", gmail_notification)
