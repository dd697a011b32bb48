"""A user's primary calendar, with the change sequence that Calendar sync tokens need.

As for contacts (`contacts.py`), every add, change and cancellation stamps the event
with the next value of a per-calendar sequence; a sync token remembers the sequence at
issue time, so "changed since" is a filter. Cancelled events stay as tombstones, which
is how Google reports deletions on incremental syncs (``status: "cancelled"``).

Recurring series are stored once, as their master event with its ``recurrence``; their
instances are computed when listed (`calendar_recurrence`), except the ones that differ:
a modified or deleted instance is stored as an exception under the instance's own id,
with ``recurringEventId`` and ``originalStartTime``. Shortening or deleting a series
leaves cancelled tombstones (``dropped``) for the instances that stopped existing —
only those within Google's cancellation window; further ones vanish unreported.

The in-process helpers at the end (add, change, cancel, seed) are what tests, the seed
and the admin routes (`calendar_admin`) call, as for `mailbox` and `drive_data`.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gwsync.emulator.calendar_recurrence import (
    BadEventError,
    cancellation_window,
    format_time,
    instance_fields,
    instance_id,
    is_occurrence,
    is_series,
    occurrences,
    parse_instance_id,
    parse_time,
    validate,
    when,
)
from gwsync.emulator.errors import NotFoundError
from gwsync.emulator.state import EmulatorState

#: Keys the emulator manages itself; an admin call cannot set them as event fields.
MANAGED_KEYS = frozenset({"id", "etag", "status", "created", "updated", "kind", "iCalUID",
                          "recurringEventId", "originalStartTime"})
#: Every field an admin call may set, each with Google's JSON shape.
EVENT_FIELDS = frozenset({
    "summary", "description", "location", "start", "end", "attendees", "transparency",
    "organizer", "creator", "visibility", "htmlLink", "eventType", "conferenceData",
    "recurrence",
})
#: Re-exported for `calendar` and the tests, which know these helpers from this module.
__all__ = ["BadEventError", "format_time", "parse_time", "when"]


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
    #: A tombstone of an instance that stopped existing (its series shortened or deleted).
    dropped: bool = False

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"

    @property
    def series_id(self) -> str | None:
        """The series an instance or exception belongs to (``None`` for others)."""
        found = self.fields.get("recurringEventId")
        return found if isinstance(found, str) else None

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
        and status, and for a cancelled instance its ``recurringEventId`` and
        ``originalStartTime``, as cancelled exceptions carry them.
        """
        head = {"kind": "calendar#event", "etag": self.etag, "id": self.id, "status": self.status}
        if self.cancelled:
            for key in ("recurringEventId", "originalStartTime"):
                if key in self.fields:
                    head[key] = copy.deepcopy(self.fields[key])
            return head
        body = {
            **head,
            "htmlLink": f"https://www.google.com/calendar/event?eid={self.id}",
            "created": _rfc3339_ms(self.created),
            "updated": _rfc3339_ms(self.updated),
            "creator": {"email": calendar_id, "self": True},
            "organizer": {"email": calendar_id, "self": True},
            "iCalUID": f"{self.series_id or self.id}@google.com",
            "sequence": 0,
            "eventType": "default",
        }
        body.update(copy.deepcopy(self.fields))
        return body


@dataclass
class CalendarToken:
    """What a Calendar sync token stands for: the calendar's sequence at issue time, and
    the parameters of the listing that issued it (which later calls must repeat)."""

    seq: int
    params: tuple[Any, ...] = ()
    time_min: datetime | None = None
    expired: bool = False


def _utc(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


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
        """Store a new confirmed event or series; ``id`` in the body is honoured if new."""
        event_id = event.get("id") or self._new_id(salt)
        if not isinstance(event_id, str) or event_id in self.events or "_" in event_id:
            raise BadEventError(f"event id {event_id!r} is taken or not a base32hex string")
        stored = StoredEvent(event_id, _clean(event), 0, created=now, updated=now)
        _check(stored)
        stored.restamp(self._next_seq(), now)
        self.events[event_id] = stored
        return stored

    def _series_at(self, event_id: str) -> tuple[StoredEvent, datetime] | None:
        """The live series and original start an instance id names, if it is one of them."""
        parsed = parse_instance_id(event_id)
        master = self.events.get(parsed[0]) if parsed else None
        if (parsed is None or master is None or master.cancelled
                or not is_series(master.fields) or not is_occurrence(master.fields, parsed[1])):
            return None
        return master, parsed[1]

    def _instance(self, master: StoredEvent, original: datetime) -> StoredEvent:
        """An instance as its series makes it: the exception stored under its id, if any."""
        iid = instance_id(master.id, master.fields, original)
        stored = self.events.get(iid)
        if stored is not None:
            return stored
        made = StoredEvent(iid, instance_fields(master.id, master.fields, original), 0,
                           master.created, master.updated)
        made.restamp(master.seq, master.updated)
        return made

    def resolve(self, event_id: str) -> StoredEvent | None:
        """A stored event, exception or tombstone, or a live instance of a series."""
        stored = self.events.get(event_id)
        if stored is not None:
            return stored
        found = self._series_at(event_id)
        return None if found is None else self._instance(*found)

    def instances(self, master: StoredEvent, lo: datetime | None = None,
                  hi: datetime | None = None) -> list[StoredEvent]:
        """A live series' instances starting in ``[lo, hi)`` (capped, see the module)."""
        if master.cancelled or not is_series(master.fields):
            return []
        return [self._instance(master, o) for o in occurrences(master.fields, lo, hi)]

    def get(self, event_id: str) -> StoredEvent:
        """The live event, or :class:`NotFoundError`.

        A live instance not yet stored becomes an exception here, since it is about to
        be changed or cancelled on its own.
        """
        stored = self.events.get(event_id)
        if stored is None:
            found = self._series_at(event_id)
            if found is not None:
                stored = self.events[event_id] = self._instance(*found)
        if stored is None or stored.cancelled:
            raise NotFoundError("event", event_id)
        return stored

    def update(self, event_id: str, changes: Mapping[str, Any], now: float) -> StoredEvent:
        """Replace the given fields (``None`` removes one); one change.

        Changing a series' rule or start may end instances: see `_reconcile`.
        """
        stored = self.get(event_id)
        fields = dict(stored.fields)
        for key, value in _clean(changes, allow_none=True).items():
            if value is None:
                fields.pop(key, None)
            else:
                fields[key] = value
        if stored.series_id and is_series(fields):
            raise BadEventError("an instance of a series cannot recur itself")
        _check(StoredEvent(event_id, fields, stored.seq, stored.created, stored.updated))
        before = self._reportable(stored, now)
        stored.fields = fields
        stored.restamp(self._next_seq(), now)
        self._reconcile(stored, before, now)
        return stored

    def cancel(self, event_id: str, now: float) -> StoredEvent:
        """Delete an event, a series or one instance: a cancelled tombstone, stamped."""
        stored = self.get(event_id)
        before = self._reportable(stored, now)
        stored.status = "cancelled"
        stored.restamp(self._next_seq(), now)
        self._reconcile(stored, before, now)
        return stored

    def _reportable(self, master: StoredEvent, now: float) -> dict[str, StoredEvent]:
        """A series' instances inside Google's cancellation window, by id."""
        lo, hi = cancellation_window(_utc(now))
        return {e.id: e for e in self.instances(master, lo, hi)}

    def _reconcile(self, master: StoredEvent, before: dict[str, StoredEvent],
                   now: float) -> None:
        """After a series changed: tombstones for the instances it lost within the window,
        and silence for those beyond it (their exceptions vanish unreported, as in Google).
        """
        if not before and not is_series(master.fields):
            return  # not a series, and not one before this change
        after = self._reportable(master, now)
        for iid in after:
            if iid in self.events and self.events[iid].dropped:
                del self.events[iid]  # the instance exists again: the series re-sends it
        for iid, gone in before.items():
            if iid in after:
                continue
            if not gone.cancelled:  # a cancelled exception was reported already
                gone.status = "cancelled"
                gone.restamp(self._next_seq(), now)
            gone.dropped = True
            self.events[iid] = gone
        for orphan in [e for e in self.events.values() if e.series_id == master.id
                       and e.id not in before and e.id not in after and not e.cancelled]:
            if self._series_at(orphan.id) is None:
                del self.events[orphan.id]

    def listable(self, single_events: bool, lo: datetime | None = None,
                 hi: datetime | None = None) -> list[StoredEvent]:
        """What a full listing chooses from, tombstones included, in change order.

        With ``singleEvents`` each series is its instances (from a day before `lo`, so a
        running instance is kept) and no master; without, masters and their exceptions
        are listed as stored, without the tombstones of dropped instances.
        """
        if not single_events:
            return [e for e in self.ordered() if not e.dropped]
        chosen = {e.id: e for e in self.ordered() if not is_series(e.fields)}
        start = lo - timedelta(days=1) if lo is not None else None
        for master in self.ordered():
            chosen.update((i.id, i) for i in self.instances(master, start, hi))
        return sorted(chosen.values(), key=lambda e: e.seq)

    def ordered(self) -> list[StoredEvent]:
        """Every stored event, tombstones included, oldest change first."""
        return sorted(self.events.values(), key=lambda e: e.seq)

    def changed(self, after: int, upto: int, single_events: bool = False,
                lo: datetime | None = None) -> list[StoredEvent]:
        """What changed in ``(after, upto]``; with ``singleEvents``, a changed series is
        every one of its instances (from `lo`, the issuing listing's ``timeMin``)."""
        if not single_events:
            return [e for e in self.ordered() if after < e.seq <= upto and not e.dropped]
        chosen: dict[str, StoredEvent] = {}
        for event in self.ordered():
            if not after < event.seq <= upto:
                continue
            if not is_series(event.fields):
                chosen[event.id] = event
            else:
                chosen.update((i.id, i) for i in self.instances(event, lo))
        return sorted(chosen.values(), key=lambda e: e.seq)

    def issue_token(self, seq: int, params: tuple[Any, ...] = (),
                    time_min: datetime | None = None) -> str:
        token = secrets.token_urlsafe(24)
        self.sync_tokens[token] = CalendarToken(seq, params, time_min)
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


def _check(event: StoredEvent) -> None:
    """Readable start, end and recurrence; Google refuses an event that ends before it
    starts (400 ``timeRangeEmpty``)."""
    start, end = event.span()
    if end < start:
        raise BadEventError("an event cannot end before it starts")
    if is_series(event.fields):
        validate(event.fields)


# -- in-process helpers (tests, seed, admin routes) ------------------------------------


def calendar_of(state: EmulatorState, user_key: str) -> CalendarData:
    """The user's primary calendar (created empty on first use)."""
    return state.api_data("calendar", user_key, CalendarData)


def add_events(state: EmulatorState, user_key: str,
               events: Sequence[Mapping[str, Any]]) -> list[str]:
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


def fake_event(i: int, base: datetime) -> dict[str, Any]:
    """The ``i``-th fake event: three a day from ``base``, with more than gwsync stores."""
    start = base + timedelta(days=i // 3, hours=9 + 3 * (i % 3))
    end = start + timedelta(minutes=30 if i % 2 else 60)
    event: dict[str, Any] = {
        "summary": f"Meeting #{i}",
        "description": f"Private agenda #{i}: budget figures.",
        "location": f"Room {100 + i % 7}",
        "start": {"dateTime": format_time(start), "timeZone": "UTC"},
        "end": {"dateTime": format_time(end), "timeZone": "UTC"},
        "attendees": [
            {"email": f"guest.{i}@example.com", "responseStatus": "accepted"},
            {"email": f"other.{i}@example.com", "responseStatus": "needsAction"},
        ],
    }
    if i % 7 == 6:  # a few events are marked "free" and block no time
        event["transparency"] = "transparent"
    return event


def fake_series(i: int, base: datetime) -> dict[str, Any]:
    """The ``i``-th fake series: endless weekly ones and ten-day dailies, alternately."""
    rule = "RRULE:FREQ=WEEKLY" if i % 2 == 0 else "RRULE:FREQ=DAILY;COUNT=10"
    return {**fake_event(i, base), "summary": f"Series #{i}", "recurrence": [rule]}


def seed_calendar(state: EmulatorState, user_key: str, n_events: int,
                  base: datetime | None = None, n_series: int = 0) -> list[str]:
    """Give the user ``n_events`` deterministic events and ``n_series`` recurring series
    from ``base`` (default: tomorrow 00:00 UTC); the same arguments give the same ids."""
    if base is None:
        today = datetime.fromtimestamp(state.now(), UTC).replace(
            hour=0, minute=0, second=0, microsecond=0)
        base = today + timedelta(days=1)
    return add_events(state, user_key, [fake_event(i, base) for i in range(n_events)]
                      + [fake_series(i, base) for i in range(n_series)])
