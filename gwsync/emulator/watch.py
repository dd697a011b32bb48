"""The watch and stop methods of Calendar, Drive and Gmail, in Google's shapes.

``events.watch`` and ``changes.watch`` take a Channel body ``{id, type: "web_hook",
address, token?, expiration? (ms)}`` and answer the channel with ``resourceId``,
``resourceUri`` and ``expiration`` (ms, as a string); ``channels.stop`` takes ``{id,
resourceId}`` and answers 204, and only the user and client that created a channel may
stop it. ``users.watch`` takes ``{topicName, labelIds?, labelFilterBehavior?}`` and
answers ``{historyId, expiration}``; ``users.stop`` answers 204. Delivery is `push`'s job.

Google demands an HTTPS address with a valid certificate; the emulator also accepts
``http`` so that tests and the demo can use loopback addresses.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from gwsync.emulator import drive_data
from gwsync.emulator.auth import ApiMethod, google_api
from gwsync.emulator.errors import GoogleApiError, error_item
from gwsync.emulator.grants import BearerToken
from gwsync.emulator.push import Channel, GmailWatch, notify_channel, push_of, resource_id, version
from gwsync.emulator.state import STATE_KEY, EmulatorState

_CAL, _DRIVE = "calendar-json.googleapis.com", "drive.googleapis.com"
# ``rpc`` names are not published; these follow each API's naming pattern [unconfirmed].
EVENTS_WATCH = ApiMethod("calendar.events.watch", "calendar.v3.Events.Watch", _CAL)
CALENDAR_STOP = ApiMethod("calendar.channels.stop", "calendar.v3.Channels.Stop", _CAL)
CHANGES_WATCH = ApiMethod("drive.changes.watch", "google.apps.drive.v3.DriveChanges.Watch",
                          _DRIVE)
DRIVE_STOP = ApiMethod("drive.channels.stop", "google.apps.drive.v3.DriveChannels.Stop", _DRIVE)
_GMAIL_RPC = "caribou.api.proto.MailboxService."
GMAIL_WATCH = ApiMethod("gmail.users.watch", _GMAIL_RPC + "Watch", "gmail.googleapis.com")
GMAIL_STOP = ApiMethod("gmail.users.stop", _GMAIL_RPC + "Stop", "gmail.googleapis.com")
#: Calendar's documented default channel lifetime; Drive changes channels are capped at a
#: week [unconfirmed]; Gmail watches expire after 7 days ("call watch at least every 7 days").
DEFAULT_TTL_S = {"calendar": 604800.0, "drive": 3600.0}
MAX_TTL_S = {"calendar": None, "drive": 604800.0}
GMAIL_TTL_S = 604800.0
_CHANNEL_ID = re.compile(r"^[A-Za-z0-9\-_+/=]{1,64}$")
_TOPIC = re.compile(r"^projects/[^/]+/topics/[^/]+$")


def _error(code: int, reason: str, message: str) -> GoogleApiError:
    """Calendar, Drive and Gmail render ``errors[{domain, reason, message}]`` beside status."""
    return GoogleApiError(code, message, errors=[error_item(reason, message)])


async def _object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _error(400, "parseError", "Parse Error") from None
    if not isinstance(body, dict):
        raise _error(400, "parseError", "Parse Error")
    return body


def _expiry(state: EmulatorState, api: str, asked: Any) -> float:
    """The channel's end: as asked (ms), capped where a maximum is known; else the default."""
    now = state.now()
    ttl = DEFAULT_TTL_S[api]
    if asked is not None:
        if not str(asked).isdigit():
            raise _error(400, "invalid", "Invalid value for expiration.")
        ttl = max(int(asked) / 1000 - now, 1.0)
    cap = MAX_TTL_S[api]
    return now + (min(ttl, cap) if cap else ttl)


def _new_channel(request: web.Request, token: BearerToken, api: str, body: dict[str, Any],
                 resource: str, uri: str) -> Channel:
    state, push = request.app[STATE_KEY], push_of(request.app[STATE_KEY])
    channel_id, address = body.get("id"), body.get("address")
    if not isinstance(channel_id, str) or not _CHANNEL_ID.match(channel_id):
        raise _error(400, "required" if channel_id is None else "invalid", "Invalid channel id.")
    if body.get("type") not in ("web_hook", "webhook"):
        raise _error(400, "invalid", "Invalid value for type.")  # Google's text unconfirmed
    if not isinstance(address, str) or not address.startswith(("https://", "http://")):
        raise _error(400, "invalid", "Invalid address.")
    if channel_id in push.channels:
        raise _error(400, "channelIdNotUnique", "Channel id not unique.")
    secret = body.get("token")
    if secret is not None and (not isinstance(secret, str) or len(secret) > 256):
        raise _error(400, "invalid", "Invalid channel token.")
    grant = state.grants[token.grant_id]
    channel = Channel(channel_id, api, token.user, token.grant_id, grant.client_id,
                      resource_id(api, token.user, resource), uri, address, secret,
                      _expiry(state, api, body.get("expiration")),
                      version(state, api, token.user))
    push.channels[channel_id] = channel
    notify_channel(push, channel, "sync")  # first message, number 1
    return channel


def _channel_json(channel: Channel) -> dict[str, Any]:
    body = {"kind": "api#channel", "id": channel.id, "resourceId": channel.resource_id,
            "resourceUri": channel.resource_uri, "expiration": str(int(channel.expires_at * 1000))}
    if channel.token is not None:
        body["token"] = channel.token
    return body


@google_api(EVENTS_WATCH)
async def events_watch(request: web.Request, token: BearerToken) -> web.Response:
    """``POST /calendar/v3/calendars/{calendarId}/events/watch``: the primary calendar only."""
    state = request.app[STATE_KEY]
    calendar_id = request.match_info["calendarId"]
    if calendar_id not in ("primary", state.user(token.user).email):
        raise _error(404, "notFound", "Not Found")
    uri = "https://www.googleapis.com/calendar/v3/calendars/primary/events?alt=json"
    channel = _new_channel(request, token, "calendar", await _object(request), "primary", uri)
    return web.json_response(_channel_json(channel))


@google_api(CHANGES_WATCH)
async def changes_watch(request: web.Request, token: BearerToken) -> web.Response:
    """``POST /drive/v3/changes/watch?pageToken=…`` (``pageToken`` is required)."""
    raw = request.query.get("pageToken")
    if not raw:
        raise _error(400, "required", "Required parameter: pageToken")
    data = drive_data.data(request.app[STATE_KEY], token.user)
    if not raw.isdigit() or not data.token_valid(int(raw)):
        raise _error(400, "invalid", "Invalid Value")
    uri = f"https://www.googleapis.com/drive/v3/changes?alt=json&pageToken={raw}"
    channel = _new_channel(request, token, "drive", await _object(request), "changes", uri)
    return web.json_response(_channel_json(channel))


async def _stop(request: web.Request, token: BearerToken, api: str) -> web.Response:
    """Stop a channel of this user and client; Google's 404 text is as observed."""
    state = request.app[STATE_KEY]
    body, push = await _object(request), push_of(state)
    channel = push.channels.get(str(body.get("id")))
    client_id = state.grants[token.grant_id].client_id
    if (channel is None or channel.api != api or channel.user != token.user
            or channel.client_id != client_id or channel.resource_id != body.get("resourceId")):
        raise _error(404, "notFound",
                     f"Channel '{body.get('id')}' not found for project '{client_id}'")
    del push.channels[channel.id]
    return web.Response(status=204)


@google_api(CALENDAR_STOP)
async def calendar_stop(request: web.Request, token: BearerToken) -> web.Response:
    """``POST /calendar/v3/channels/stop``."""
    return await _stop(request, token, "calendar")


@google_api(DRIVE_STOP)
async def drive_stop(request: web.Request, token: BearerToken) -> web.Response:
    """``POST /drive/v3/channels/stop``."""
    return await _stop(request, token, "drive")


def _own_mailbox(request: web.Request, token: BearerToken) -> None:
    state = request.app[STATE_KEY]
    user_id = request.match_info["userId"]
    if user_id not in ("me", state.user(token.user).email):
        raise _error(403, "forbidden", f"Delegation denied for {user_id}")


def _check_watch_request(body: dict[str, Any]) -> str:
    topic = body.get("topicName")
    if not isinstance(topic, str) or not _TOPIC.match(topic):
        raise _error(400, "invalidArgument", "Invalid topicName")
    labels = body.get("labelIds", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise _error(400, "invalidArgument", "Invalid labelIds")
    for key in ("labelFilterBehavior", "labelFilterAction"):
        if str(body.get(key, "include")).lower() not in ("include", "exclude"):
            raise _error(400, "invalidArgument", f"Invalid {key}")
    return topic


@google_api(GMAIL_WATCH)
async def gmail_watch(request: web.Request, token: BearerToken) -> web.Response:
    """``POST /gmail/v1/users/{userId}/watch``; calling it again replaces the watch.

    A topic Gmail may not publish to answers 403 as Google does (its text as observed).
    Label filters are accepted but not applied: every mailbox change notifies.
    """
    _own_mailbox(request, token)
    state, push = request.app[STATE_KEY], push_of(request.app[STATE_KEY])
    topic = _check_watch_request(await _object(request))
    if topic not in push.subscriptions:
        raise _error(403, "forbidden", f"Error sending test message to Cloud PubSub {topic} : "
                                       "User not authorized to perform this action.")
    current = version(state, "gmail", token.user)
    expires = state.now() + GMAIL_TTL_S
    previous = push.gmail.get(token.user)
    push.gmail[token.user] = GmailWatch(token.user, token.grant_id, topic, expires, current,
                                        previous.last_sent if previous else float("-inf"))
    return web.json_response({"historyId": str(current), "expiration": str(int(expires * 1000))})


@google_api(GMAIL_STOP)
async def gmail_stop(request: web.Request, token: BearerToken) -> web.Response:
    """``POST /gmail/v1/users/{userId}/stop``: no more notifications for this mailbox."""
    _own_mailbox(request, token)
    push_of(request.app[STATE_KEY]).gmail.pop(token.user, None)
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    app.router.add_post("/calendar/v3/calendars/{calendarId}/events/watch", events_watch)
    app.router.add_post("/calendar/v3/channels/stop", calendar_stop)
    app.router.add_post("/drive/v3/changes/watch", changes_watch)
    app.router.add_post("/drive/v3/channels/stop", drive_stop)
    app.router.add_post("/gmail/v1/users/{userId}/watch", gmail_watch)
    app.router.add_post("/gmail/v1/users/{userId}/stop", gmail_stop)
