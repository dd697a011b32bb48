"""Calendar API connectors: busy time from ``freebusy.query``, meetings from ``events.list``.

Availability is a snapshot, not a change feed: each run asks for the busy intervals of
a rolling window and never returns a cursor, so every run is a full sync and the sync
job's epoch sweep deletes intervals that are no longer busy. Meetings use sync tokens
(the last page carries ``nextSyncToken``); deletions arrive as ``status: "cancelled"``.
Only the declared fields are kept: no descriptions, locations or attendees.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from googleapiclient.discovery import Resource

from gwsync.connectors.base import Fetched
from gwsync.connectors.client import execute
from gwsync.connectors.errors import CursorExpiredError, UnknownGoogleError
from gwsync.connectors.features import FEATURES, Feature
from gwsync.connectors.quota import UNMETERED, Budget
from gwsync.storage.records import Page, Removal, Upsert
from gwsync.timeutil import utcnow

BUSY_KIND = "busy_interval"
EVENT_KIND = "event"
#: How far ahead availability looks; scheduling further out is not offered.
WINDOW = timedelta(days=14)
CALENDAR_ID = "primary"


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


def events_page(items: list[dict[str, Any]]) -> Page:
    changes = [to_change(e) for e in items]
    return Page(
        upserts=[c for c in changes if isinstance(c, Upsert)],
        removals=[c for c in changes if isinstance(c, Removal)],
    )


class AvailabilityConnector:
    """Busy intervals of the primary calendar over now … now + `WINDOW`, one page per run."""

    feature: Feature = FEATURES["availability"]

    def __init__(self, service: Resource, now: Callable[[], datetime] = utcnow,
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
    """Events of the primary calendar via ``events.list`` with sync tokens.

    Recurring events are expanded (``singleEvents``) so each stored meeting has one
    start and end. Incremental calls send ``showDeleted=true``: with a sync token
    deletions are always returned and ``showDeleted=false`` is refused.
    """

    feature: Feature = FEATURES["meetings"]

    def __init__(self, service: Resource, page_size: int, budget: Budget = UNMETERED) -> None:
        self._service = service
        self._events = service.events()
        self._budget = budget
        self._params = {"calendarId": CALENDAR_ID, "singleEvents": True,
                        "maxResults": page_size}

    async def _pages(self, page_token: str | None, **extra: Any) -> AsyncIterator[Fetched]:
        while True:
            params = {**self._params, **extra}
            if page_token:
                params["pageToken"] = page_token
            body = await execute(self._events.list(**params).execute, quota=self._budget)
            page_token = body.get("nextPageToken")
            yield Fetched(events_page(body.get("items") or []), page_token,
                          None if page_token else body.get("nextSyncToken"))
            if not page_token:
                return

    def full(self, page_token: str | None) -> AsyncIterator[Fetched]:
        return self._pages(page_token)

    def incremental(self, cursor: str) -> AsyncIterator[Fetched]:
        return self._pages(None, syncToken=cursor, showDeleted=True)

    def close(self) -> None:
        self._service.close()
