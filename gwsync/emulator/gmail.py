"""Gmail API routes (``gmail.googleapis.com``): getProfile, messages.list/get, history.list.

Served at Google's paths (``/gmail/v1/users/{userId}/...``). The ``gmail.metadata``
scope is limited as Google limits it: no ``q`` on messages.list and no ``format=full``
or ``raw`` on messages.get (discovery text). Google applies the limit whenever the
token carries ``gmail.metadata``, even beside ``gmail.readonly`` (acknowledged Gmail bug,
google-api-python-client issue #582), and so does the emulator.

Listings are snapshotted at their first page (the ids, newest first); later pages
render what is still there, so a page costs O(page), not O(mailbox).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from gwsync.emulator import gmail_admin
from gwsync.emulator.auth import ApiMethod, google_api
from gwsync.emulator.errors import GoogleApiError, error_item
from gwsync.emulator.grants import BearerToken
from gwsync.emulator.mailbox import (
    HISTORY_TYPES,
    METADATA_SCOPE,
    Mailbox,
    add_gmail_user,
    mailbox,
    seed_gmail,
)
from gwsync.emulator.state import STATE_KEY, EmulatorState

FORMATS = ("minimal", "full", "raw", "metadata")
DEFAULT_MAX, MAX_RESULTS = 100, 500
__all__ = ["add_gmail_user", "mailbox", "seed_gmail", "setup"]
#: `rpc` names as they appear in Google's insufficient-scope ErrorInfo (observed).
_RPC = "caribou.api.proto.MailboxService."
GET_PROFILE = ApiMethod("gmail.users.getProfile", _RPC + "GetProfile", "gmail.googleapis.com")
LIST_MESSAGES = ApiMethod("gmail.users.messages.list", _RPC + "ListMessages",
                          "gmail.googleapis.com")
GET_MESSAGE = ApiMethod("gmail.users.messages.get", _RPC + "GetMessage", "gmail.googleapis.com")
LIST_HISTORY = ApiMethod("gmail.users.history.list", _RPC + "ListHistory",
                         "gmail.googleapis.com")


def gmail_error(code: int, message: str, reason: str) -> GoogleApiError:
    """Gmail still answers with the legacy ``errors`` list beside ``google.rpc.Status``."""
    return GoogleApiError(code, message, errors=[error_item(reason, message)])


def not_found() -> GoogleApiError:
    """Gmail's 404 for an unknown message or a start history id out of range."""
    return gmail_error(404, "Requested entity was not found.", "notFound")


def invalid(message: str) -> GoogleApiError:
    return gmail_error(400, message, "invalidArgument")


def _check_user(request: web.Request, token: BearerToken) -> Mailbox:
    """``userId`` must be ``me`` or the token's own address (else Gmail's delegation 403)."""
    state = request.app[STATE_KEY]
    user_id = request.match_info["userId"]
    if user_id not in ("me", state.user(token.user).email):
        raise gmail_error(403, f"Delegation denied for {user_id}", "forbidden")
    return mailbox(state, token.user)


def _restricted(token: BearerToken) -> bool:
    return METADATA_SCOPE in token.scopes


def _max_results(query: MultiMapping[str]) -> int:
    """``maxResults`` (uint32): 0 or unset → 100; above 500 Google caps (observed, undocumented)."""
    raw = query.get("maxResults", "")
    if not raw:
        return DEFAULT_MAX
    if not raw.isdigit():
        raise invalid(f"Invalid value '{raw}'. Values must match the following regular "
                      "expression: '[0-9]+'")
    return min(int(raw), MAX_RESULTS) or DEFAULT_MAX


def _flag(query: MultiMapping[str], name: str) -> bool:
    raw = query.get(name, "false").lower()
    if raw not in ("true", "false"):
        raise invalid(f"Invalid value '{raw}'. Valid values are: [true, false]")
    return raw == "true"


@dataclass(frozen=True)
class _Listing:
    """A snapshot behind messages.list page tokens."""

    user: str
    incarnation: str
    fingerprint: tuple[Any, ...]
    ids: tuple[str, ...]


@dataclass(frozen=True)
class _HistoryPage:
    """Where a history.list listing goes on: records after `after`, up to `upto`."""

    user: str
    incarnation: str
    fingerprint: tuple[Any, ...]
    after: int
    upto: int


def _resume(state: EmulatorState, user_key: str, token: str,
            kind: type[_Listing] | type[_HistoryPage],
            fingerprint: tuple[Any, ...]) -> Any:
    """The cursor behind a page token of this user and query.

    A bad or expired token answers 400 ``invalidArgument`` "Invalid pageToken", as Gmail
    was observed to (dacastro4/laravel-gmail#121); that expiry uses this answer too is
    our assumption (Gmail documents neither a lifetime nor an expired-token error).
    """
    entry = state.page_cursor(token)
    cursor = entry[0] if isinstance(entry, tuple) else entry
    if (not isinstance(cursor, kind) or cursor.user != user_key
            or cursor.incarnation != state.user(user_key).incarnation
            or cursor.fingerprint != fingerprint):
        raise invalid("Invalid pageToken")
    return entry


@google_api(GET_PROFILE)
async def get_profile(request: web.Request, token: BearerToken) -> web.Response:
    """``GET .../profile``: address, totals and the mailbox's current history id."""
    box = _check_user(request, token)
    threads = {m.thread_id for m in box.messages.values()}
    return web.json_response({
        "emailAddress": request.app[STATE_KEY].user(token.user).email,
        "messagesTotal": len(box.messages), "threadsTotal": len(threads),
        "historyId": str(box.history_id),
    })


def list_messages(state: EmulatorState, user_key: str, query: MultiMapping[str],
                  restricted: bool) -> dict[str, Any]:
    """One page of messages.list: ``{id, threadId}`` items, newest first."""
    if "q" in query and restricted:
        raise gmail_error(403, "Metadata scope does not support 'q' parameter", "forbidden")
    if query.get("q"):
        raise invalid("The emulator does not implement search queries (q).")
    labels = tuple(query.getall("labelIds", ()))
    spam_trash = _flag(query, "includeSpamTrash")
    fingerprint = (frozenset(labels), spam_trash)
    box = mailbox(state, user_key)
    if query.get("pageToken"):
        listing, offset = _resume(state, user_key, query["pageToken"], _Listing, fingerprint)
    else:
        listing = _Listing(user_key, state.user(user_key).incarnation, fingerprint,
                           box.listing(labels, spam_trash))
        offset = 0
    end = offset + _max_results(query)
    page = [box.messages[i] for i in listing.ids[offset:end] if i in box.messages]
    body: dict[str, Any] = {}
    if page:
        body["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
    if end < len(listing.ids):
        body["nextPageToken"] = state.new_page_token((listing, end))
    body["resultSizeEstimate"] = len(listing.ids)
    return body


@google_api(LIST_MESSAGES)
async def messages_list(request: web.Request, token: BearerToken) -> web.Response:
    """``GET .../messages``."""
    _check_user(request, token)
    return web.json_response(list_messages(request.app[STATE_KEY], token.user, request.query,
                                           _restricted(token)))


@google_api(GET_MESSAGE)
async def messages_get(request: web.Request, token: BearerToken) -> web.Response:
    """``GET .../messages/{id}`` in the asked format.

    Whether Google sends ``snippet`` to a gmail.metadata token is not documented; the
    snippet is body text, so the emulator leaves it out for such tokens.
    """
    box = _check_user(request, token)
    fmt = request.query.get("format", "full")
    if fmt not in FORMATS:
        raise invalid(f"Invalid value at 'format' ({fmt})")
    if fmt in ("full", "raw") and _restricted(token):
        raise gmail_error(403, f"Metadata scope doesn't allow format {fmt.upper()}", "forbidden")
    message = box.messages.get(request.match_info["id"])
    if message is None:
        raise not_found()
    return web.json_response(message.render(fmt, request.query.getall("metadataHeaders", ()),
                                            with_snippet=not _restricted(token)))


def _history_types(query: MultiMapping[str]) -> frozenset[str]:
    types = query.getall("historyTypes", ())
    for t in types:
        if t not in HISTORY_TYPES:
            raise invalid(f"Invalid value at 'history_types' ({t})")
    return frozenset(types or HISTORY_TYPES)


def list_history(state: EmulatorState, user_key: str,
                 query: MultiMapping[str]) -> dict[str, Any]:
    """One page of history.list; a start id outside the kept log → 404.

    A start id above the mailbox's current id is "invalid" too (Google: "an invalid or
    out of date startHistoryId typically returns an HTTP 404").
    """
    raw = query.get("startHistoryId", "")
    if not raw.isdigit():
        raise invalid("Invalid startHistoryId" if raw else "Missing startHistoryId")
    start, types, box = int(raw), _history_types(query), mailbox(state, user_key)
    box.forget_expired()
    fingerprint = (start, types, query.get("labelId"))
    if not box.floor <= start <= box.history_id:
        raise not_found()
    if query.get("pageToken"):
        page = _resume(state, user_key, query["pageToken"], _HistoryPage, fingerprint)
    else:
        page = _HistoryPage(user_key, state.user(user_key).incarnation, fingerprint,
                            start, box.history_id)
    records, more = box.changes(page.after, page.upto, types, _max_results(query))
    label = query.get("labelId")
    body: dict[str, Any] = {}
    shown = [r.render() for r in records if not label or label in r.message_labels]
    if shown:
        body["history"] = shown
    if more is not None:
        body["nextPageToken"] = state.new_page_token(
            _HistoryPage(page.user, page.incarnation, fingerprint, more, page.upto))
    body["historyId"] = str(page.upto)
    return body


@google_api(LIST_HISTORY)
async def history_list(request: web.Request, token: BearerToken) -> web.Response:
    """``GET .../history``."""
    _check_user(request, token)
    return web.json_response(list_history(request.app[STATE_KEY], token.user, request.query))


def setup(app: web.Application) -> None:
    """Register the Gmail routes and their admin routes."""
    users = "/gmail/v1/users/{userId}"
    app.router.add_get(users + "/profile", get_profile)
    app.router.add_get(users + "/messages", messages_list)
    app.router.add_get(users + "/messages/{id}", messages_get)
    app.router.add_get(users + "/history", history_list)
    gmail_admin.setup(app)
