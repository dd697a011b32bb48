"""A user's primary calendar, with the change sequence that Calendar sync tokens need.

As for contacts (`contacts.py`), every add, change and cancellation stamps the event
with the next value of a per-calendar sequence; a sync token remembers the sequence at
issue time, so "changed since" is a filter. Cancelled events stay as tombstones, which
is how Google reports deletions on incremental syncs (``status: "cancelled"``).

Only single (non-recurring) events are modelled: gwsync lists with
``singleEvents=true``, which turns recurring events into instances of this same shape.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: Keys the emulator manages itself; an admin call cannot set them as event fields.
MANAGED_KEYS = frozenset({"id", "etag", "status", "created", "updated", "kind", "iCalUID"})
#: Every field an admin call may set, each with Google's JSON shape.
EVENT_FIELDS = frozenset({
    "summary", "description", "location", "start", "end", "attendees", "transparency",
    "organizer", "creator", "visibility", "htmlLink", "eventType", "conferenceData",
})


class UnknownEventError(KeyError):
    """An admin call named an event the calendar does not hold (or that is cancelled)."""


class BadEventError(ValueError):
    """An event body the emulator cannot store (missing or malformed start/end)."""


def parse_time(value: str) -> datetime:
    """An RFC 3339 timestamp with an offset (Google rejects one without), as aware UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise BadEventError(f"not an RFC 3339 timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        raise BadEventError(f"timestamp without an offset: {value!r}")
    return parsed.astimezone(UTC)


def format_time(value: datetime) -> str:
    """UTC with a ``Z``, seconds precision, as freeBusy answers write times."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def when(slot: Any) -> datetime:
    """The instant of an event's ``start``/``end`` (``dateTime``, or ``date`` at 00:00 UTC).

    Google places all-day dates in the calendar's time zone; the emulator's calendars
    are all in UTC, so midnight UTC is that instant here.
    """
    if not isinstance(slot, Mapping):
        raise BadEventError("start and end must be objects with dateTime or date")
    if isinstance(slot.get("dateTime"), str):
        return parse_time(slot["dateTime"])
    if isinstance(slot.get("date"), str):
        try:
            return datetime.fromisoformat(slot["date"]).replace(tzinfo=UTC)
        except ValueError:
            raise BadEventError(f"not a date: {slot['date']!r}") from None
    raise BadEventError("start and end need dateTime or date")


def _rfc3339_ms(ts: float) -> str:
    """``created``/``updated`` as Google writes them: milliseconds and ``Z``."""
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class StoredEvent:
    """One event: its id, its fields (Google's JSON names), status and change stamp."""

    id: str
    fields: dict[str, Any]
    seq: int
    created: float
    updated: float
    status: str = "confirmed"
    etag: str = ""

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"

    def restamp(self, seq: int, now: float) -> None:
        """Record a change: next sequence, new ``updated`` and etag (Google's etags are quoted)."""
        self.seq, self.updated = seq, now
        digest = hashlib.sha256(
            json.dumps([self.id, seq, self.status, self.fields], sort_keys=True).encode()
        ).hexdigest()
        self.etag = f'"{int(digest[:15], 16)}"'

    def span(self) -> tuple[datetime, datetime]:
        return when(self.fields.get("start")), when(self.fields.get("end"))

    def busy(self) -> bool:
        """Whether the event blocks time: confirmed or tentative, and not marked free."""
        return not self.cancelled and self.fields.get("transparency", "opaque") == "opaque"

    def render(self, calendar_id: str) -> dict[str, Any]:
        """The event as ``events.list`` returns it.

        A cancelled event renders as Google documents deleted events on incremental
        syncs: "only the id field is guaranteed to be populated" — here id, kind, etag
        and status.
        """
        head = {"kind": "calendar#event", "etag": self.etag, "id": self.id, "status": self.status}
        if self.cancelled:
            return head
        body = {
            **head,
            "htmlLink": f"https://www.google.com/calendar/event?eid={self.id}",
            "created": _rfc3339_ms(self.created),
            "updated": _rfc3339_ms(self.updated),
            "creator": {"email": calendar_id, "self": True},
            "organizer": {"email": calendar_id, "self": True},
            "iCalUID": f"{self.id}@google.com",
            "sequence": 0,
            "eventType": "default",
        }
        body.update(copy.deepcopy(self.fields))
        return body


@dataclass
class CalendarToken:
    """What a Calendar sync token stands for: the calendar's sequence at issue time."""

    seq: int
    expired: bool = False


@dataclass
class CalendarData:
    """The primary calendar of one user: events in change order, and its sync tokens.

    Held per user through ``EmulatorState.api_data("calendar", ...)``, so a replaced
    user starts with an empty calendar and none of the old tokens.
    """

    seq: int = 0
    events: dict[str, StoredEvent] = field(default_factory=dict)
    sync_tokens: dict[str, CalendarToken] = field(default_factory=dict)
    _allocated: int = 0

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _new_id(self, salt: str) -> str:
        """A deterministic id in Google's alphabet (base32hex: a–v, 0–9), 26 characters."""
        self._allocated += 1
        digest = hashlib.sha256(f"{salt}/{self._allocated}".encode()).digest()
        return base64.b32hexencode(digest).decode().lower()[:26]

    def add(self, event: Mapping[str, Any], now: float, salt: str) -> StoredEvent:
        """Store a new confirmed event; ``id`` in the body is honoured if new."""
        event_id = event.get("id") or self._new_id(salt)
        if not isinstance(event_id, str) or event_id in self.events:
            raise BadEventError(f"event id {event_id!r} is taken or not a string")
        stored = StoredEvent(event_id, _clean(event), 0, created=now, updated=now)
        stored.span()  # validates start and end
        _check_order(stored)
        stored.restamp(self._next_seq(), now)
        self.events[event_id] = stored
        return stored

    def get(self, event_id: str) -> StoredEvent:
        """The live event, or :class:`UnknownEventError`."""
        stored = self.events.get(event_id)
        if stored is None or stored.cancelled:
            raise UnknownEventError(event_id)
        return stored

    def update(self, event_id: str, changes: Mapping[str, Any], now: float) -> StoredEvent:
        """Replace the given fields (``None`` removes one); one change."""
        stored = self.get(event_id)
        fields = dict(stored.fields)
        for key, value in _clean(changes, allow_none=True).items():
            if value is None:
                fields.pop(key, None)
            else:
                fields[key] = value
        candidate = StoredEvent(event_id, fields, stored.seq, stored.created, stored.updated)
        candidate.span()
        _check_order(candidate)
        stored.fields = fields
        stored.restamp(self._next_seq(), now)
        return stored

    def cancel(self, event_id: str, now: float) -> StoredEvent:
        """Delete an event: it becomes a cancelled tombstone, stamped as a change."""
        stored = self.get(event_id)
        stored.status = "cancelled"
        stored.restamp(self._next_seq(), now)
        return stored

    def ordered(self) -> list[StoredEvent]:
        """Every event, tombstones included, oldest change first."""
        return sorted(self.events.values(), key=lambda e: e.seq)

    def changed(self, after: int, upto: int) -> list[StoredEvent]:
        """Events (tombstones included) whose last change falls in ``(after, upto]``."""
        return [e for e in self.ordered() if after < e.seq <= upto]

    def issue_token(self, seq: int) -> str:
        token = secrets.token_urlsafe(24)
        self.sync_tokens[token] = CalendarToken(seq)
        return token

    def token(self, token: str) -> CalendarToken | None:
        """The live record behind a sync token, or ``None`` if unknown or expired."""
        record = self.sync_tokens.get(token)
        return record if record is not None and not record.expired else None

    def expire_tokens(self) -> int:
        """Expire every sync token; returns how many were live."""
        live = [t for t in self.sync_tokens.values() if not t.expired]
        for record in live:
            record.expired = True
        return len(live)


def _clean(event: Mapping[str, Any], allow_none: bool = False) -> dict[str, Any]:
    """The settable fields of an admin body; unknown keys are refused, not ignored."""
    unknown = set(event) - EVENT_FIELDS - MANAGED_KEYS
    if unknown:
        raise BadEventError(f"unknown event fields: {sorted(unknown)}")
    kept = {k: copy.deepcopy(v) for k, v in event.items() if k in EVENT_FIELDS}
    if not allow_none and any(v is None for v in kept.values()):
        raise BadEventError("a new event cannot have null fields")
    return kept


def _check_order(event: StoredEvent) -> None:
    """Google refuses an event that ends before it starts (400 ``timeRangeEmpty``)."""
    start, end = event.span()
    if end < start:
        raise BadEventError("an event cannot end before it starts")
