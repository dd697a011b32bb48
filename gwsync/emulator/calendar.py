"""Calendar API routes (``/calendar/v3/``): ``freebusy.query`` and ``events.list``.

``events.list`` follows the documented sync contract: the last page of a full listing
carries ``nextSyncToken``; ``syncToken`` returns everything changed since, deletions
as ``status: "cancelled"``; the parameters that cannot go with a sync token are
refused; an expired or unknown token answers ``410 fullSyncRequired``. As for People,
a listing is snapshotted on its first page (which events, up to which change), so a
change made while paging shows up in the next incremental sync instead of being lost.

Calendar v3 still answers errors in the older JSON shape its error guide documents
(``{"error": {"errors": [{domain, reason, message}], "code", "message"}}``); 401/403 for
tokens come from `auth.py`, in the shape Google's front end uses for every API.
Per-user data lives in ``state.api_data("calendar", ...)`` (see `calendar_events`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from gwsync.emulator import calendar_events as ev
from gwsync.emulator.admin import PREFIX, BadRequest
from gwsync.emulator.auth import ApiMethod, google_api
from gwsync.emulator.calendar_events import CalendarData
from gwsync.emulator.errors import ApiError
from gwsync.emulator.state import STATE_KEY, AccessToken, EmulatorState

#: ``rpc``/``service`` appear only in 403 ErrorInfo metadata; these names are our best
#: reading of what Google sends for Calendar, not documented.
FREEBUSY_QUERY = ApiMethod("calendar.freebusy.query", "calendar.v3.Freebusy.Query",
                           "calendar-json.googleapis.com")
EVENTS_LIST = ApiMethod("calendar.events.list", "calendar.v3.Events.List",
                        "calendar-json.googleapis.com")
DEFAULT_MAX_RESULTS = 250
MAX_RESULTS = 2500
#: Parameters that "cannot be specified together with nextSyncToken" (events.list reference).
NOT_WITH_SYNC_TOKEN = ("iCalUID", "orderBy", "privateExtendedProperty", "q",
                       "sharedExtendedProperty", "timeMin", "timeMax", "updatedMin")
#: Filters the emulator does not implement: refused rather than silently ignored.
UNSUPPORTED = ("iCalUID", "privateExtendedProperty", "q", "sharedExtendedProperty",
               "updatedMin", "eventTypes")
FULL_SYNC_REQUIRED = "Sync token is no longer valid, a full sync is required."


class CalendarError(ApiError):
    """An error in Calendar v3's documented shape, with a ``reason`` clients match on."""

    def __init__(self, code: int, message: str, reason: str) -> None:
        super().__init__(code, message)
        self.reason = reason

    def body(self) -> dict[str, Any]:
        detail = {"domain": "global", "reason": self.reason, "message": self.message}
        return {"error": {"errors": [detail], "code": self.code, "message": self.message}}


def bad_request(message: str, reason: str = "badRequest") -> CalendarError:
    """A 400; Google's exact messages for most of these are not documented."""
    return CalendarError(400, message, reason)


def full_sync_required() -> CalendarError:
    """The documented answer to an expired (here also: unknown) sync token."""
    return CalendarError(410, FULL_SYNC_REQUIRED, "fullSyncRequired")


def not_found() -> CalendarError:
    return CalendarError(404, "Not Found", "notFound")


# -- in-process helpers (tests, seed, admin routes) ------------------------------------


def calendar_of(state: EmulatorState, user_key: str) -> CalendarData:
    """The user's primary calendar (created empty on first use)."""
    return state.api_data("calendar", user_key, CalendarData)


def add_events(state: EmulatorState, user_key: str, events: list[Mapping[str, Any]]) -> list[str]:
    """Add Calendar-API-shaped event dicts (``start``/``end`` required); returns their ids."""
    data = calendar_of(state, user_key)
    return [data.add(e, state.now(), salt=user_key).id for e in events]


def update_event(state: EmulatorState, user_key: str, event_id: str,
                 changes: Mapping[str, Any]) -> str:
    """Replace fields of an event (``None`` removes one); returns the new etag."""
    return calendar_of(state, user_key).update(event_id, changes, state.now()).etag


def cancel_event(state: EmulatorState, user_key: str, event_id: str) -> None:
    """Delete an event; incremental syncs report it as ``cancelled``."""
    calendar_of(state, user_key).cancel(event_id, state.now())


def expire_calendar_sync_tokens(state: EmulatorState, user_key: str) -> int:
    """Every Calendar sync token of the user now answers 410; returns how many were live."""
    return calendar_of(state, user_key).expire_tokens()


def events(state: EmulatorState, user_key: str) -> list[dict[str, Any]]:
    """The user's live events as ``events.list`` renders them, oldest change first."""
    email = state.user(user_key).email
    return [e.render(email) for e in calendar_of(state, user_key).ordered() if not e.cancelled]


def busy(data: CalendarData, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """Busy time in ``[start, end)``: opaque events, clipped to the window, overlaps merged.

    That Google clips to the window and merges overlapping events is what its answers
    show, not what its reference states.
    """
    spans = sorted(
        (max(s, start), min(e, end))
        for s, e in (x.span() for x in data.events.values() if x.busy())
        if s < end and e > start
    )
    merged: list[tuple[datetime, datetime]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def fake_event(i: int, base: datetime) -> dict[str, Any]:
    """The ``i``-th fake event: three a day from ``base``, with more than gwsync stores."""
    start = base + timedelta(days=i // 3, hours=9 + 3 * (i % 3))
    end = start + timedelta(minutes=30 if i % 2 else 60)
    event: dict[str, Any] = {
        "summary": f"Meeting #{i}",
        "description": f"Private agenda #{i}: budget figures.",
        "location": f"Room {100 + i % 7}",
        "start": {"dateTime": ev.format_time(start), "timeZone": "UTC"},
        "end": {"dateTime": ev.format_time(end), "timeZone": "UTC"},
        "attendees": [
            {"email": f"guest.{i}@example.com", "responseStatus": "accepted"},
            {"email": f"other.{i}@example.com", "responseStatus": "needsAction"},
        ],
    }
    if i % 7 == 6:  # a few events are marked "free" and block no time
        event["transparency"] = "transparent"
    return event


def seed_calendar(state: EmulatorState, user_key: str, n_events: int,
                  base: datetime | None = None) -> list[str]:
    """Give the user ``n_events`` deterministic events from ``base`` (default: tomorrow 00:00 UTC).

    The same ``n_events`` and ``base`` always give the same events and ids.
    """
    if base is None:
        today = datetime.fromtimestamp(state.now(), UTC).replace(
            hour=0, minute=0, second=0, microsecond=0)
        base = today + timedelta(days=1)
    return add_events(state, user_key, [fake_event(i, base) for i in range(n_events)])


# -- freebusy.query --------------------------------------------------------------------


def _request_time(body: Mapping[str, Any], name: str) -> datetime:
    raw = body.get(name)
    if not isinstance(raw, str):
        raise bad_request(f"Missing {name} parameter.", "required")
    try:
        return ev.parse_time(raw)
    except ev.BadEventError:
        raise bad_request(f"Invalid {name} value.", "invalid") from None


def _own(state: EmulatorState, user_key: str, calendar_id: str) -> bool:
    """Only the caller's own primary calendar exists here (as ``primary`` or its email)."""
    return calendar_id == "primary" or calendar_id == state.user(user_key).email


def freebusy(state: EmulatorState, user_key: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``freeBusy`` answer for a ``FreeBusyRequest`` body.

    Unknown calendars get per-calendar ``errors`` with reason ``notFound`` (documented
    reasons include ``notFound`` and ``internalError``). Google also limits the span of
    the window; that limit is not documented and not enforced here.
    """
    start, end = _request_time(body, "timeMin"), _request_time(body, "timeMax")
    if end <= start:
        raise bad_request("The specified time range is empty.", "timeRangeEmpty")
    items = body.get("items", [])
    if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("id"), str) for i in items):
        raise bad_request("items must be a list of {id} objects.", "invalid")
    calendars: dict[str, Any] = {}
    for item in items:
        if _own(state, user_key, item["id"]):
            spans = busy(calendar_of(state, user_key), start, end)
            calendars[item["id"]] = {"busy": [
                {"start": ev.format_time(s), "end": ev.format_time(e)} for s, e in spans]}
        else:
            calendars[item["id"]] = {
                "errors": [{"domain": "global", "reason": "notFound"}], "busy": []}
    return {"kind": "calendar#freeBusy", "timeMin": ev.format_time(start),
            "timeMax": ev.format_time(end), "calendars": calendars}


@google_api(FREEBUSY_QUERY)
async def freebusy_query(request: web.Request, token: AccessToken) -> web.Response:
    """``POST /calendar/v3/freeBusy``."""
    try:
        body = await request.json()
    except ValueError:
        raise bad_request("Parse Error", "parseError") from None
    if not isinstance(body, dict):
        raise bad_request("Parse Error", "parseError")
    return web.json_response(freebusy(request.app[STATE_KEY], token.user, body))


# -- events.list -----------------------------------------------------------------------


@dataclass(frozen=True)
class EventsQuery:
    """The validated query parameters of one ``events.list`` call."""

    max_results: int
    page_token: str | None
    sync_token: str | None
    show_deleted: bool
    single_events: bool
    time_min: datetime | None
    time_max: datetime | None
    order_by: str | None

    def fingerprint(self) -> tuple[Any, ...]:
        """What must equal the first call's parameters when paging (maxResults may vary)."""
        return (self.sync_token, self.show_deleted, self.single_events, self.time_min,
                self.time_max, self.order_by)


@dataclass(frozen=True)
class Listing:
    """A listing's snapshot, shared by all its page tokens."""

    calendar: CalendarData
    items: tuple[str, ...]
    fingerprint: tuple[Any, ...]
    upto_seq: int
    incremental: bool
    show_deleted: bool


def _flag(query: MultiMapping[str], name: str) -> bool | None:
    raw = query.get(name)
    if raw is None:
        return None
    if raw.lower() not in {"true", "false"}:
        raise bad_request(f"Invalid boolean value for {name}.", "invalidParameter")
    return raw.lower() == "true"


def _max_results(query: MultiMapping[str]) -> int:
    """1 or more; the reference says a page "can never be larger than 2500", so clamp."""
    raw = query.get("maxResults")
    if raw is None:
        return DEFAULT_MAX_RESULTS
    try:
        value = int(raw)
    except ValueError:
        raise bad_request("Invalid value for maxResults.", "invalidParameter") from None
    if value < 1:
        raise bad_request("Invalid value for maxResults.", "invalidParameter")
    return min(value, MAX_RESULTS)


def _query_time(query: MultiMapping[str], name: str) -> datetime | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        return ev.parse_time(raw)
    except ev.BadEventError:
        raise bad_request(f"Bad Request: {name} is not an RFC 3339 timestamp.") from None


def _check_sync_params(query: MultiMapping[str], show_deleted: bool | None) -> None:
    """With a sync token, the documented forbidden parameters and ``showDeleted=false`` → 400."""
    for name in NOT_WITH_SYNC_TOKEN:
        if name in query:
            raise bad_request(f"{name} cannot be specified together with syncToken.", "invalid")
    if show_deleted is False:
        raise bad_request("showDeleted cannot be false together with syncToken.", "invalid")


def parse_events_query(query: MultiMapping[str]) -> EventsQuery:
    """Validate an ``events.list`` query string (standard params such as ``alt`` ignored)."""
    sync_token = query.get("syncToken") or None
    show_deleted, single_events = _flag(query, "showDeleted"), _flag(query, "singleEvents")
    if sync_token:
        _check_sync_params(query, show_deleted)
    for name in UNSUPPORTED:
        if name in query:
            raise bad_request(f"The emulator does not implement the {name} filter.")
    order_by = query.get("orderBy")
    if order_by not in (None, "startTime", "updated"):
        raise bad_request("Invalid value for orderBy.", "invalidParameter")
    if order_by == "startTime" and not single_events:
        raise bad_request("The requested ordering is not available for the particular query.")
    return EventsQuery(
        max_results=_max_results(query), page_token=query.get("pageToken") or None,
        sync_token=sync_token, show_deleted=bool(show_deleted) or sync_token is not None,
        single_events=bool(single_events), time_min=_query_time(query, "timeMin"),
        time_max=_query_time(query, "timeMax"), order_by=order_by,
    )


def _in_window(event: ev.StoredEvent, q: EventsQuery) -> bool:
    """timeMin bounds the end, timeMax the start, both exclusive (as the reference says)."""
    start, end = event.span()
    return ((q.time_min is None or end > q.time_min)
            and (q.time_max is None or start < q.time_max))


def _full_items(data: CalendarData, q: EventsQuery) -> list[ev.StoredEvent]:
    chosen = [e for e in data.ordered()
              if (q.show_deleted or not e.cancelled) and _in_window(e, q)]
    if q.order_by == "startTime":
        return sorted(chosen, key=lambda e: e.span()[0])
    if q.order_by == "updated":
        return sorted(chosen, key=lambda e: e.updated)
    return chosen  # "unspecified, stable order": change order


def _start(data: CalendarData, q: EventsQuery) -> Listing:
    """Snapshot a new listing: a full one, or the changes since a sync token."""
    if q.sync_token:
        record = data.token(q.sync_token)
        if record is None:
            raise full_sync_required()
        chosen = data.changed(record.seq, data.seq)
    else:
        chosen = _full_items(data, q)
    return Listing(data, tuple(e.id for e in chosen), q.fingerprint(), data.seq,
                   q.sync_token is not None, q.show_deleted)


def _resume(state: EmulatorState, data: CalendarData, q: EventsQuery) -> tuple[Listing, int]:
    """The snapshot and offset behind a page token, if it belongs to this calendar and call."""
    entry = state.page_tokens.get(q.page_token or "")
    if not isinstance(entry, tuple) or not isinstance(entry[0], Listing):
        raise bad_request("Invalid page token value.", "invalid")
    listing, offset = entry
    if listing.calendar is not data or listing.fingerprint != q.fingerprint():
        raise bad_request("Invalid page token value.", "invalid")
    return listing, offset


def list_events(state: EmulatorState, user_key: str, q: EventsQuery) -> dict[str, Any]:
    """One page of ``events.list`` on the user's primary calendar."""
    data = calendar_of(state, user_key)
    listing, offset = _resume(state, data, q) if q.page_token else (_start(data, q), 0)
    end = offset + q.max_results
    email = state.user(user_key).email
    items = []
    for event_id in listing.items[offset:end]:
        event = data.events[event_id]
        if event.cancelled and not listing.show_deleted:
            continue  # cancelled after the snapshot: the next incremental sync says so
        items.append(event.render(email))
    body: dict[str, Any] = {
        "kind": "calendar#events", "etag": f'"p{data.seq}"', "summary": email,
        "updated": ev.format_time(datetime.fromtimestamp(state.now(), UTC)),
        "timeZone": "UTC", "accessRole": "owner", "defaultReminders": [], "items": items,
    }
    if end < len(listing.items):
        body["nextPageToken"] = state.new_page_token((listing, end))
    else:
        body["nextSyncToken"] = data.issue_token(listing.upto_seq)
    return body


@google_api(EVENTS_LIST)
async def events_list(request: web.Request, token: AccessToken) -> web.Response:
    """``GET /calendar/v3/calendars/{calendarId}/events``."""
    state = request.app[STATE_KEY]
    if not _own(state, token.user, request.match_info["calendarId"]):
        raise not_found()
    query = parse_events_query(request.query)
    return web.json_response(list_events(state, token.user, query))


# -- admin routes ----------------------------------------------------------------------


def _admin_error(status: int, error: str, detail: str) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status)


def _event_list(body: Any) -> list[dict[str, Any]]:
    """One event, a list, or ``{"events": [...]}``."""
    found = body.get("events", [body]) if isinstance(body, dict) else body
    if not isinstance(found, list) or not all(isinstance(e, dict) for e in found):
        raise BadRequest("events must be a list of event objects")
    return found


async def _body(request: web.Request) -> Any:
    try:
        return await request.json() if request.can_read_body else {}
    except json.JSONDecodeError:
        raise BadRequest("body must be JSON") from None


async def admin_add_events(request: web.Request) -> web.Response:
    """``POST …/calendar/events`` → 201 ``{"ids": [...]}``."""
    ids = add_events(request.app[STATE_KEY], request.match_info["user"],
                     _event_list(await _body(request)))
    return web.json_response({"ids": ids}, status=201)


async def admin_list_events(request: web.Request) -> web.Response:
    """``GET …/calendar/events``: the live events, as the API renders them."""
    return web.json_response({"events": events(request.app[STATE_KEY],
                                               request.match_info["user"])})


async def admin_update_event(request: web.Request) -> web.Response:
    """``PATCH …/calendar/events/{id}`` with the fields to replace (``null`` removes one)."""
    body = await _body(request)
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    try:
        etag = update_event(request.app[STATE_KEY], request.match_info["user"],
                            request.match_info["id"], body)
    except ev.UnknownEventError as exc:
        return _admin_error(404, "unknown_event", str(exc.args[0]))
    return web.json_response({"etag": etag})


async def admin_cancel_event(request: web.Request) -> web.Response:
    """``DELETE …/calendar/events/{id}``: the event becomes cancelled."""
    try:
        cancel_event(request.app[STATE_KEY], request.match_info["user"], request.match_info["id"])
    except ev.UnknownEventError as exc:
        return _admin_error(404, "unknown_event", str(exc.args[0]))
    return web.json_response({})


async def admin_expire_tokens(request: web.Request) -> web.Response:
    """``POST …/calendar/expire-sync-tokens``: every Calendar sync token now answers 410."""
    count = expire_calendar_sync_tokens(request.app[STATE_KEY], request.match_info["user"])
    return web.json_response({"expired": count})


async def admin_seed(request: web.Request) -> web.Response:
    """``POST …/calendar/seed`` ``{"n_events": n}`` → 201 ``{"ids": [...]}``."""
    body = await _body(request)
    n = body.get("n_events") if isinstance(body, dict) else None
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 10_000:
        raise BadRequest("n_events must be an integer from 0 to 10000")
    ids = seed_calendar(request.app[STATE_KEY], request.match_info["user"], n)
    return web.json_response({"ids": ids}, status=201)


def setup(app: web.Application) -> None:
    """Register the Calendar API routes and their admin routes."""
    app.router.add_post("/calendar/v3/freeBusy", freebusy_query)
    app.router.add_get("/calendar/v3/calendars/{calendarId}/events", events_list)
    admin = PREFIX + "/users/{user}/calendar"
    app.router.add_post(admin + "/events", admin_add_events)
    app.router.add_get(admin + "/events", admin_list_events)
    app.router.add_patch(admin + "/events/{id}", admin_update_event)
    app.router.add_delete(admin + "/events/{id}", admin_cancel_event)
    app.router.add_post(admin + "/expire-sync-tokens", admin_expire_tokens)
    app.router.add_post(admin + "/seed", admin_seed)
