"""Calendar API routes (``/calendar/v3/``): ``freebusy.query`` and ``events.list``.

``events.list`` follows the documented sync contract: the last page of a full listing
carries ``nextSyncToken``; ``syncToken`` returns everything changed since, deletions
as ``status: "cancelled"``; the parameters that cannot go with a sync token are
refused; an expired or unknown token answers ``410 fullSyncRequired``. As for People,
a listing is snapshotted on its first page (which events, up to which change), so a
change made while paging shows up in the next incremental sync instead of being lost.
Recurring series (`calendar_recurrence`) are listed as their master and exceptions, or
with ``singleEvents=true`` as their instances; a sync token remembers the initial call's
``singleEvents`` and ``showDeleted`` and refuses a call that changes them (see `_start`).

Calendar v3 still answers errors in the older JSON shape its error guide documents
(``{"error": {"errors": [{domain, reason, message}], "code", "message"}}``); 401/403 for
tokens come from `auth.py`, in the shape Google's front end uses for every API.
Per-user data lives in ``state.api_data("calendar", ...)`` (see `calendar_events`, which
also holds the in-process helpers; the admin routes are `calendar_admin`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from gwsync.emulator import calendar_admin
from gwsync.emulator import calendar_events as ev
from gwsync.emulator.auth import ApiMethod, google_api
from gwsync.emulator.calendar_events import CalendarData, calendar_of
from gwsync.emulator.errors import GoogleApiError, error_item
from gwsync.emulator.grants import BearerToken
from gwsync.emulator.state import STATE_KEY, EmulatorState

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


def calendar_error(code: int, message: str, reason: str) -> GoogleApiError:
    """An error in Calendar v3's documented shape, with a ``reason`` clients match on."""
    return GoogleApiError(code, message, errors=[error_item(reason, message)], rpc_status=False)


def bad_request(message: str, reason: str = "badRequest") -> GoogleApiError:
    """A 400; Google's exact messages for most of these are not documented."""
    return calendar_error(400, message, reason)


def full_sync_required() -> GoogleApiError:
    """The documented answer to an expired (here also: unknown) sync token."""
    return calendar_error(410, FULL_SYNC_REQUIRED, "fullSyncRequired")


def not_found() -> GoogleApiError:
    return calendar_error(404, "Not Found", "notFound")


def busy(data: CalendarData, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """Busy time in ``[start, end)``: opaque events and instances of series, clipped to
    the window, overlaps merged.

    That Google clips to the window and merges overlapping events is what its answers
    show, not what its reference states.
    """
    spans = sorted(
        (max(s, start), min(e, end))
        for s, e in (x.span() for x in data.listable(True, start, end) if x.busy())
        if s < end and e > start
    )
    merged: list[tuple[datetime, datetime]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


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
async def freebusy_query(request: web.Request, token: BearerToken) -> web.Response:
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
    #: ``showDeleted`` as the caller sent it (false when absent), to compare with the
    #: initial listing's; `show_deleted` is what applies (always true with a sync token).
    asked_deleted: bool
    time_min: datetime | None
    time_max: datetime | None
    order_by: str | None

    def fingerprint(self) -> tuple[Any, ...]:
        """What must equal the first call's parameters when paging (maxResults may vary)."""
        return (self.sync_token, self.show_deleted, self.single_events, self.time_min,
                self.time_max, self.order_by)

    def sync_params(self) -> tuple[Any, ...]:
        """What an incremental call must repeat of the initial one (its sync token's)."""
        return (self.single_events, self.asked_deleted)


@dataclass(frozen=True)
class Listing:
    """A listing's snapshot, shared by all its page tokens."""

    calendar: CalendarData
    items: tuple[str, ...]
    fingerprint: tuple[Any, ...]
    upto_seq: int
    incremental: bool
    show_deleted: bool
    single_events: bool
    #: Carried by the sync tokens this listing issues (see `CalendarData.changed`).
    params: tuple[Any, ...]
    time_min: datetime | None


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
        single_events=bool(single_events), asked_deleted=bool(show_deleted),
        time_min=_query_time(query, "timeMin"),
        time_max=_query_time(query, "timeMax"), order_by=order_by,
    )


def _in_window(event: ev.StoredEvent, q: EventsQuery) -> bool:
    """timeMin bounds the end, timeMax the start, both exclusive (as the reference says)."""
    start, end = event.span()
    return ((q.time_min is None or end > q.time_min)
            and (q.time_max is None or start < q.time_max))


def _shown(event: ev.StoredEvent, show_deleted: bool, single_events: bool) -> bool:
    """Live events; cancelled ones with ``showDeleted``, and cancelled exceptions of a
    series even without it when ``singleEvents`` is false (as the reference says)."""
    return (not event.cancelled or show_deleted
            or (not single_events and event.series_id is not None))


def _full_items(data: CalendarData, q: EventsQuery) -> list[ev.StoredEvent]:
    chosen = [e for e in data.listable(q.single_events, q.time_min, q.time_max)
              if _shown(e, q.show_deleted, q.single_events) and _in_window(e, q)]
    if q.order_by == "startTime":
        return sorted(chosen, key=lambda e: e.span()[0])
    if q.order_by == "updated":
        return sorted(chosen, key=lambda e: e.updated)
    return chosen  # "unspecified, stable order": change order


def _start(data: CalendarData, q: EventsQuery) -> Listing:
    """Snapshot a new listing: a full one, or the changes since a sync token.

    An incremental call must repeat the initial call's parameters: Google calls anything
    else "undefined behavior" (the ``syncToken`` description), and users report every
    event ever deleted coming back when ``showDeleted`` is added only on incremental
    calls (googleapis/google-api-ruby-client#860). Google is not known to refuse such a
    call; the emulator makes the undefined behaviour loud instead — a 400 — so a client
    that drifts is caught in tests rather than by its users.
    """
    if not q.sync_token:
        return Listing(data, tuple(e.id for e in _full_items(data, q)), q.fingerprint(),
                       data.seq, False, q.show_deleted, q.single_events, q.sync_params(),
                       q.time_min)
    record = data.token(q.sync_token)
    if record is None:
        raise full_sync_required()
    if record.params and record.params != q.sync_params():
        raise bad_request("The parameters of a sync-token request must be those of the "
                          "initial synchronization (singleEvents, showDeleted).", "invalid")
    chosen = data.changed(record.seq, data.seq, q.single_events, record.time_min)
    return Listing(data, tuple(e.id for e in chosen), q.fingerprint(), data.seq, True,
                   q.show_deleted, q.single_events, q.sync_params(), record.time_min)


def _resume(state: EmulatorState, data: CalendarData, q: EventsQuery) -> tuple[Listing, int]:
    """The snapshot and offset behind a page token, if it belongs to this calendar and call."""
    entry = state.page_cursor(q.page_token or "")
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
        event = data.resolve(event_id)
        if event is None or not _shown(event, listing.show_deleted, listing.single_events):
            continue  # gone after the snapshot: the next incremental sync says so
        items.append(event.render(email))
    body: dict[str, Any] = {
        "kind": "calendar#events", "etag": f'"p{data.seq}"', "summary": email,
        "updated": ev.format_time(datetime.fromtimestamp(state.now(), UTC)),
        "timeZone": "UTC", "accessRole": "owner", "defaultReminders": [], "items": items,
    }
    if end < len(listing.items):
        body["nextPageToken"] = state.new_page_token((listing, end))
    else:
        body["nextSyncToken"] = data.issue_token(listing.upto_seq, listing.params,
                                                 listing.time_min)
    return body


@google_api(EVENTS_LIST)
async def events_list(request: web.Request, token: BearerToken) -> web.Response:
    """``GET /calendar/v3/calendars/{calendarId}/events``."""
    state = request.app[STATE_KEY]
    if not _own(state, token.user, request.match_info["calendarId"]):
        raise not_found()
    query = parse_events_query(request.query)
    return web.json_response(list_events(state, token.user, query))


def setup(app: web.Application) -> None:
    """Register the Calendar API routes and their admin routes."""
    app.router.add_post("/calendar/v3/freeBusy", freebusy_query)
    app.router.add_get("/calendar/v3/calendars/{calendarId}/events", events_list)
    calendar_admin.setup(app)
