"""Push watches at Google: create and stop Calendar/Drive channels and Gmail watches.

Only features whose computed scope authorises their watch methods are watched (the
methods are declared in `features`, so declaring them could not widen a scope):
meetings (``events.watch``), shared_files (``changes.watch``) and mail_activity
(``users.watch``). availability (``calendar.freebusy`` authorises no watch method) and
contacts (People has no push) are polled by the scheduler.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from googleapiclient.discovery import Resource

from gwsync.connectors.client import execute
from gwsync.connectors.errors import UnknownGoogleError
from gwsync.connectors.quota import UNMETERED, Budget
from gwsync.domain.features import FEATURES

# The API of a `service` below follows its feature, known at run time: hence the casts.
if TYPE_CHECKING:  # the per-API resource types exist only in the stubs
    from googleapiclient._apis.calendar.v3 import CalendarResource, Channel
    from googleapiclient._apis.drive.v3 import DriveResource
    from googleapiclient._apis.gmail.v1 import GmailResource
    from googleapiclient.http import HttpRequest

#: Watched feature → (API, the methods it watches and stops with).
WATCHED: dict[str, tuple[str, tuple[str, str]]] = {
    "meetings": ("calendar", ("calendar.events.watch", "calendar.channels.stop")),
    "shared_files": ("drive", ("drive.changes.watch", "drive.channels.stop")),
    "mail_activity": ("gmail", ("gmail.users.watch", "gmail.users.stop")),
}
CALENDAR_ID = "primary"


@dataclass(frozen=True)
class Watch:
    """What Google answered to a watch: the resource (for stop) and the channel's end."""

    resource_id: str | None
    expires_at: datetime


class _NoContent:
    """A stop request's ``execute``: Google answers 204 with no body, the client ``""``.

    Keeps the request as ``__self__``, where metrics and quota read the method id.
    """

    def __init__(self, request: Any) -> None:
        self.__self__ = request

    def __call__(self) -> dict[str, Any]:
        return self.__self__.execute() or {}


def declared(feature: str) -> bool:
    """A feature is watched only if it declares its watch methods (so its scope covers them)."""
    return feature in WATCHED and set(WATCHED[feature][1]) <= set(FEATURES[feature].methods)


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_matches(presented: str, stored: str | None) -> bool:
    """Compare hashes in constant time (the secret itself is never stored)."""
    return stored is not None and hmac.compare_digest(token_hash(presented), stored)


def address_hash(key: bytes, email: str) -> str:
    """A mailbox address as kept: keyed (`key`: the pseudonym key's mailbox subkey, which a
    master key rotation leaves unchanged), so a list of addresses cannot be hashed to match."""
    return hmac.new(key, email.strip().lower().encode(), hashlib.sha256).hexdigest()


def _expiry(value: object) -> datetime:
    """Google's ``expiration``: epoch milliseconds, as a string or a number."""
    if not str(value).isdigit():
        raise UnknownGoogleError("a watch answer without expiration")
    return datetime.fromtimestamp(int(str(value)) / 1000, UTC)


def _channel(channel_id: str, address: str, secret: str, ttl_s: int) -> Channel:
    expiration = int((datetime.now(UTC).timestamp() + ttl_s) * 1000)
    return {"id": channel_id, "type": "web_hook", "address": address, "token": secret,
            "expiration": str(expiration)}


async def watch_channel(service: Resource, feature: str, channel_id: str, address: str,
                        secret: str, ttl_s: int, cursor: str | None,
                        budget: Budget = UNMETERED) -> Watch:
    """Open a Calendar (events of the primary calendar) or Drive (changes) channel."""
    body = _channel(channel_id, address, secret, ttl_s)
    request: HttpRequest
    if feature == "meetings":
        events = cast("CalendarResource", service).events()
        request = events.watch(calendarId=CALENDAR_ID, body=body)
    else:
        if not cursor:
            raise UnknownGoogleError("changes.watch needs a page token")
        request = cast("DriveResource", service).changes().watch(
            pageToken=cursor, body=body, supportsAllDrives=True, includeItemsFromAllDrives=True)
    answer = await execute(request.execute, quota=budget)
    if answer.get("id") != channel_id or not isinstance(answer.get("resourceId"), str):
        raise UnknownGoogleError("a watch answer for another channel")
    return Watch(answer["resourceId"], _expiry(answer.get("expiration")))


async def stop_channel(service: Resource, feature: str, channel_id: str,
                       resource_id: str | None, budget: Budget = UNMETERED) -> None:
    """Stop a channel (only the user and client that opened it can)."""
    body = {"id": channel_id, "resourceId": resource_id}
    channels = cast("CalendarResource | DriveResource", service).channels()
    # resource_id is set on every Calendar and Drive channel (only Gmail's have none).
    await execute(_NoContent(channels.stop(body=body)), quota=budget)  # type: ignore[arg-type]


async def watch_mailbox(service: Resource, topic: str, budget: Budget = UNMETERED) -> Watch:
    """(Re)start Gmail's watch of the whole mailbox; calling it again renews it."""
    users = cast("GmailResource", service).users()
    answer = await execute(users.watch(userId="me", body={"topicName": topic}).execute,
                           quota=budget)
    return Watch(None, _expiry(answer.get("expiration")))


async def stop_mailbox(service: Resource, budget: Budget = UNMETERED) -> None:
    users = cast("GmailResource", service).users()
    await execute(_NoContent(users.stop(userId="me")), quota=budget)


async def mailbox_address(service: Resource, budget: Budget = UNMETERED) -> str:
    """The watched address (``getProfile``), needed only to hash it: Pub/Sub names it."""
    users = cast("GmailResource", service).users()
    answer = await execute(users.getProfile(userId="me").execute, quota=budget)
    email = answer.get("emailAddress")
    if not isinstance(email, str) or "@" not in email:
        raise UnknownGoogleError("getProfile without emailAddress")
    return email
