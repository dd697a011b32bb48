"""Calendar API connectors: busy time from ``freebusy.query``, meetings from ``events.list``.

Availability is a snapshot, not a change feed: each run asks for the busy intervals of
a rolling window and never returns a cursor, so every run is a full sync and the sync
job's epoch sweep deletes intervals that are no longer busy. Meetings use sync tokens
(the last page carries ``nextSyncToken``) over a bounded window (`MeetingsConnector`);
deletions arrive as ``status: "cancelled"``. Only the declared fields are kept: no
descriptions, locations or attendees.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from gwsync.connectors.base import Fetched
from gwsync.connectors.client import execute
from gwsync.connectors.errors import CursorExpiredError, UnknownGoogleError
from gwsync.connectors.quota import UNMETERED, Budget
from gwsync.core.timeutil import utcnow
from gwsync.domain.features import FEATURES, Feature
from gwsync.domain.pages import Page, Removal, Upsert

if TYPE_CHECKING:  # the per-API resource types exist only in the stubs
    from googleapiclient._apis.calendar.v3 import CalendarResource

BUSY_KIND = "busy_interval"
EVENT_KIND = "event"
#: How far ahead availability looks; scheduling further out is not offered.
WINDOW = timedelta(days=14)
CALENDAR_ID = "primary"
#: How far ahead meetings are stored: far enough for "upcoming meetings", and well inside
#: the ~6 months for which Google reports the cancelled instances of a deleted or
#: shortened series, so no stored instance can miss its cancellation (docs/google.md §9.3).
HORIZON = timedelta(days=90)
#: How far the horizon may fall behind before a run crawls the window afresh: meetings
#: are always known at least ``HORIZON - ROLL`` ahead, at one full crawl a week.
ROLL = timedelta(days=7)
#: Marks the cursors and page tokens that carry their window (older ones carry none).
WINDOWED = "w1"


def _utc(value: Any) -> str:
    """A Google timestamp as RFC 3339 UTC with ``Z``, so ids do not depend on its spelling."""
    if not isinstance(value, str):
        raise UnknownGoogleError("a busy interval without start or end")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UnknownGoogleError("a busy interval with an unreadable time") from None
    if moment.tzinfo is None:
        raise UnknownGoogleError("a busy interval without a time zone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_busy(interval: dict[str, Any]) -> Upsert:
    """One busy interval; its id is its span, so an unchanged interval keeps its record."""
    start, end = _utc(interval.get("start")), _utc(interval.get("end"))
    return Upsert(BUSY_KIND, f"{start}/{end}", {"start": start, "end": end})


def busy_page(body: dict[str, Any], calendar_id: str = CALENDAR_ID) -> Page:
    """The busy intervals of one calendar in a ``freeBusy`` answer.

    Google reports a calendar it cannot read as per-calendar ``errors`` inside a 200;
    for the user's own primary calendar that is unexpected, so it stops the run.
    """
    calendar = (body.get("calendars") or {}).get(calendar_id)
    if not isinstance(calendar, dict):
        raise UnknownGoogleError("freeBusy answered without the requested calendar")
    if calendar.get("errors"):
        reasons = sorted({str(e.get("reason")) for e in calendar["errors"]
                          if isinstance(e, dict)})
        raise UnknownGoogleError(f"freeBusy calendar errors: {','.join(reasons)}")
    return Page(upserts=[to_busy(i) for i in calendar.get("busy") or []])


def _when(slot: Any) -> str:
    """An event's ``start``/``end``: its ``dateTime``, or its ``date`` for all-day events."""
    if isinstance(slot, dict):
        value = slot.get("dateTime") or slot.get("date")
        if isinstance(value, str) and value:
            return value
    raise UnknownGoogleError("an event without a start or end")


def to_change(event: dict[str, Any]) -> Upsert | Removal:
    """A stored meeting, or its removal when Google says the event is cancelled."""
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise UnknownGoogleError("an event without id")
    status = event.get("status", "confirmed")
    if status == "cancelled":
        return Removal(EVENT_KIND, event_id)
    return Upsert(EVENT_KIND, event_id, {
        "summary": event.get("summary", ""),
        "start": _when(event.get("start")),
        "end": _when(event.get("end")),
        "status": status,
    })


def _instant(value: str) -> datetime:
    """A stored start or end as an instant; a date (all-day) counts from midnight UTC."""
    moment = datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@dataclass(frozen=True)
class Window:
    """The span of meetings kept, ``[start, end)`` by start and end (as ``timeMin``/``timeMax``)."""

    start: datetime
    end: datetime

    @classmethod
    def from_day(cls, now: datetime) -> Window:
        """From the start of today (UTC), so meetings earlier today are still shown."""
        day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return cls(day, day + HORIZON)

    def params(self) -> dict[str, str]:
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        return {"timeMin": self.start.strftime(fmt), "timeMax": self.end.strftime(fmt)}

    def wrap(self, token: str | None) -> str | None:
        """A Google token with this window, so resumed pages and later runs know it."""
        if token is None:
            return None
        return f"{WINDOWED} {self.start.isoformat()} {self.end.isoformat()} {token}"

    @staticmethod
    def unwrap(value: str) -> tuple[Window, str] | None:
        """The window and Google token of a wrapped value; ``None`` for an older one."""
        parts = value.split(" ", 3)
        if len(parts) != 4 or parts[0] != WINDOWED:
            return None
        try:
            return Window(_instant(parts[1]), _instant(parts[2])), parts[3]
        except ValueError:
            return None

    def keep(self, change: Upsert | Removal) -> Upsert | Removal:
        """A meeting outside the window becomes a removal (it may have moved out of it)."""
        if isinstance(change, Removal):
            return change
        try:
            start, end = _instant(change.content["start"]), _instant(change.content["end"])
        except ValueError:
            raise UnknownGoogleError("an event with an unreadable start or end") from None
        if start >= self.end or end <= self.start:
            return Removal(change.kind, change.external_id)
        return change


def events_page(items: list[dict[str, Any]], window: Window | None = None) -> Page:
    changes = [to_change(e) for e in items]
    if window is not None:
        changes = [window.keep(c) for c in changes]
    return Page(
        upserts=[c for c in changes if isinstance(c, Upsert)],
        removals=[c for c in changes if isinstance(c, Removal)],
    )


class AvailabilityConnector:
    """Busy intervals of the primary calendar over now … now + `WINDOW`, one page per run."""

    feature: Feature = FEATURES["availability"]

    def __init__(self, service: CalendarResource, now: Callable[[], datetime] = utcnow,
                 budget: Budget = UNMETERED) -> None:
        self._service = service
        self._now = now
        self._budget = budget

    def _window(self) -> tuple[str, str]:
        """From the top of the current hour, so an ongoing meeting keeps its id for the hour."""
        start = self._now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        return start.strftime(fmt), (start + WINDOW).strftime(fmt)

    async def _snapshot(self) -> AsyncIterator[Fetched]:
        time_min, time_max = self._window()
        request = self._service.freebusy().query(body={
            "timeMin": time_min, "timeMax": time_max, "items": [{"id": CALENDAR_ID}]})
        body = await execute(request.execute, quota=self._budget)
        yield Fetched(busy_page(body), None, None)

    def full(self, page_token: str | None) -> AsyncIterator[Fetched]:
        """The whole window; `page_token` is never set, as no page token is ever handed out."""
        return self._snapshot()

    async def incremental(self, cursor: str) -> AsyncIterator[Fetched]:
        """Unreachable while `full` returns no cursor; if a stale state asks, resync in full."""
        raise CursorExpiredError("availability has no cursor")
        yield  # pragma: no cover - makes this an async generator

    def close(self) -> None:
        self._service.close()


class MeetingsConnector:
    """Meetings of the primary calendar via ``events.list``, up to `HORIZON` ahead.

    Recurring events are expanded (``singleEvents=true``) so each stored meeting has one
    start and end — which makes a series many records, and two of Google's behaviours
    (docs/google.md §9.3) matter: an endless daily series is ~730 instances, and when a
    series is deleted or shortened Google reports the cancelled instances only for about
    six months, so instances stored further out would never be removed — ghost meetings.

    Why a horizon rather than series stored with their rule and expanded at read time:
    the rule alone is not the meeting list — exceptions, moved and cancelled instances,
    ``EXDATE``/``RDATE`` and time zones with DST all change it, and Google already
    expands them with its own semantics; re-expanding here would be a second, divergent
    implementation of RFC 5545 in the read path, and every reader (the records API, the
    main app) would need it. With a horizon each record stays one meeting with one start
    and end, as the feature declares. What it costs is one full crawl of the window a
    week (`ROLL`), which stays small because the window is bounded.

    So every crawl asks for ``[today, today + HORIZON)`` (``timeMin``/``timeMax``) and
    the sync job's epoch sweep deletes what it did not see; per series at most
    ``HORIZON`` days of instances are stored. Incremental changes outside the window
    become removals. Because the horizon (90 days) is well inside Google's ~6 months,
    every stored instance of a deleted or shortened series gets its cancellation; the
    weekly crawl's sweep catches anything else. The window travels inside the cursor and
    page tokens (`Window.wrap`), so a resumed crawl repeats its own parameters, and when
    the horizon falls `ROLL` behind, the cursor counts as expired and a full crawl runs.

    Incremental calls repeat the initial call's parameters exactly (``singleEvents``,
    ``maxResults``; ``timeMin``/``timeMax`` may not go with a sync token): deletions come
    with a sync token anyway, and adding ``showDeleted`` only then is the change Google
    calls undefined behaviour (§9.2).
    """

    feature: Feature = FEATURES["meetings"]

    def __init__(self, service: CalendarResource, page_size: int,
                 budget: Budget = UNMETERED, now: Callable[[], datetime] = utcnow) -> None:
        self._service = service
        self._events = service.events()
        self._budget = budget
        self._now = now
        self._params = {"calendarId": CALENDAR_ID, "singleEvents": True,
                        "maxResults": page_size}

    async def _pages(self, window: Window, page_token: str | None,
                     **extra: Any) -> AsyncIterator[Fetched]:
        while True:
            params = {**self._params, **extra}
            if page_token:
                params["pageToken"] = page_token
            body = await execute(self._events.list(**params).execute, quota=self._budget)
            page_token = body.get("nextPageToken")
            yield Fetched(events_page(body.get("items") or [], window), window.wrap(page_token),
                          None if page_token else window.wrap(body.get("nextSyncToken")))
            if not page_token:
                return

    def full(self, page_token: str | None) -> AsyncIterator[Fetched]:
        """The window's meetings; a resumed crawl keeps the window its page token carries
        (an older, unwrapped page token starts the crawl over)."""
        resumed = Window.unwrap(page_token) if page_token else None
        window, token = resumed if resumed else (Window.from_day(self._now()), None)
        return self._pages(window, token, **window.params())

    def incremental(self, cursor: str) -> AsyncIterator[Fetched]:
        """Changes since `cursor`; an old cursor, or a horizon `ROLL` behind, is expired."""
        found = Window.unwrap(cursor)
        if found is None:
            raise CursorExpiredError("meetings cursor without a window")
        window, sync_token = found
        if window.end - self._now() < HORIZON - ROLL:
            raise CursorExpiredError("meetings horizon moved on")
        return self._pages(window, None, syncToken=sync_token)

    def close(self) -> None:
        self._service.close()
