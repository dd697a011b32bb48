"""Recurring series: RRULE expansion and instance identity, as Calendar v3 presents them.

A series is an event whose ``recurrence`` lists RFC 5545 lines (``RRULE``, ``EXRULE``,
``RDATE``, ``EXDATE``); python-dateutil's ``rrule`` expands them, in the series' own
``start.timeZone`` so a weekly 09:00 meeting stays at 09:00 across DST, as Google does.
Each instance has the id ``{seriesId}_{YYYYMMDDTHHMMSSZ}`` (its original start in UTC)
or ``{seriesId}_{YYYYMMDD}`` for all-day series — the form Google's instance ids take —
plus ``recurringEventId`` and ``originalStartTime``.

Two limits come from Google's behaviour rather than its reference, so their exact values
are our reading, not documented figures:

- `INSTANCE_CAP`: ``singleEvents=true`` expands an endless series into a bounded number
  of instances; an endless daily series yields about 730. Whether Google counts from the
  series' start or from the query's ``timeMin`` is not documented; here the count starts
  at the later of the two.
- `CANCELLED_WINDOW`: when a series is deleted or shortened, incremental syncs report
  cancelled instances only for roughly the next six months (docs/google.md §9.3; reported
  in googleapis/google-api-ruby-client#860); instances further out simply stop existing,
  unreported. The past side of the window is our guess (the same span).

Nothing here knows about stored events: it works on the field dicts of `calendar_events`,
which also takes its time helpers (`parse_time`, `when`, ...) from here.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil import rrule

INSTANCE_CAP = 730
CANCELLED_WINDOW = timedelta(days=183)
#: The recurrence lines Calendar accepts (events resource, ``recurrence`` field).
LINE_KINDS = ("RRULE", "EXRULE", "RDATE", "EXDATE")


class BadEventError(ValueError):
    """An event body the emulator cannot store (missing or malformed start, end or recurrence)."""


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


def is_series(fields: Mapping[str, Any]) -> bool:
    """Whether an event is the master of a recurring series."""
    return bool(fields.get("recurrence"))


def _zone(slot: Mapping[str, Any]) -> tzinfo:
    name = slot.get("timeZone")
    if not name:
        return UTC
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise BadEventError(f"unknown time zone {name!r}") from None


def _all_day(fields: Mapping[str, Any]) -> bool:
    start = fields.get("start")
    return isinstance(start, Mapping) and "date" in start and "dateTime" not in start


def _dtstart(fields: Mapping[str, Any]) -> datetime:
    """The first start, naive for all-day series (dates have no zone), else aware local."""
    start = fields["start"]
    if _all_day(fields):
        return datetime.fromisoformat(start["date"])
    moment = datetime.fromisoformat(start["dateTime"])
    if moment.tzinfo is None:
        raise BadEventError("a recurring event's start needs an offset")
    return moment.astimezone(_zone(start))


def _rules(fields: Mapping[str, Any]) -> rrule.rruleset:
    """The series' rule set; parsed once per rule and start, as listings ask often."""
    lines = fields.get("recurrence")
    if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
        raise BadEventError("recurrence must be a list of RFC 5545 lines")
    return _parsed(json.dumps([lines, fields.get("start")], sort_keys=True))


@functools.lru_cache(maxsize=256)
def _parsed(key: str) -> rrule.rruleset:
    lines, start = json.loads(key)
    fields = {"recurrence": lines, "start": start}
    for line in lines:
        if line.split(":", 1)[0].split(";", 1)[0].upper() not in LINE_KINDS:
            raise BadEventError(f"not a recurrence line: {line!r}")
    try:
        found = rrule.rrulestr("\n".join(lines), dtstart=_dtstart(fields), forceset=True,
                               cache=True, unfold=True)
    except (ValueError, TypeError, KeyError) as exc:
        raise BadEventError(f"unreadable recurrence: {exc}") from None
    assert isinstance(found, rrule.rruleset)
    return found


def _to_utc(fields: Mapping[str, Any], moment: datetime) -> datetime:
    """An occurrence as an aware UTC instant (all-day dates at midnight UTC, as `when` does)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _to_rule(fields: Mapping[str, Any], moment: datetime) -> datetime:
    """An aware instant in the rule's own terms (naive for all-day series)."""
    return moment.astimezone(UTC).replace(tzinfo=None) if _all_day(fields) else moment


def validate(fields: Mapping[str, Any]) -> None:
    """Refuse a recurrence dateutil cannot expand (e.g. an UNTIL without ``Z``)."""
    try:
        next(iter(_rules(fields)), None)
    except TypeError as exc:  # naive and aware times mixed in RDATE/EXDATE/UNTIL
        raise BadEventError(f"unreadable recurrence: {exc}") from None


def occurrences(fields: Mapping[str, Any], lo: datetime | None = None,
                hi: datetime | None = None, cap: int = INSTANCE_CAP) -> list[datetime]:
    """Original starts (aware UTC) in ``[lo, hi)``, at most `cap`, counted from `lo`."""
    rules = _rules(fields)
    found: Iterator[datetime] = (iter(rules) if lo is None
                                 else rules.xafter(_to_rule(fields, lo), inc=True))
    out: list[datetime] = []
    for moment in itertools.islice(found, cap):
        instant = _to_utc(fields, moment)
        if hi is not None and instant >= hi:
            break
        out.append(instant)
    return out


def is_occurrence(fields: Mapping[str, Any], original: datetime) -> bool:
    """Whether `original` (aware UTC) is an instance of the series."""
    found = _rules(fields).after(_to_rule(fields, original), inc=True)
    return found is not None and _to_utc(fields, found) == original


def instance_id(series_id: str, fields: Mapping[str, Any], original: datetime) -> str:
    stamp = original.strftime("%Y%m%d" if _all_day(fields) else "%Y%m%dT%H%M%SZ")
    return f"{series_id}_{stamp}"


def parse_instance_id(event_id: str) -> tuple[str, datetime] | None:
    """The series id and original start (aware UTC) an instance id names, if it is one."""
    series_id, sep, stamp = event_id.rpartition("_")
    if not sep or not series_id:
        return None
    for fmt in ("%Y%m%dT%H%M%SZ", "%Y%m%d"):
        try:
            return series_id, datetime.strptime(stamp, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def _slot(fields: Mapping[str, Any], moment: datetime, template: Mapping[str, Any]) -> dict[
        str, Any]:
    """``start``/``end``/``originalStartTime`` in the series' own form (date, or zone)."""
    if _all_day(fields):
        return {"date": moment.date().isoformat()}
    slot: dict[str, Any] = {}
    if template.get("timeZone"):
        slot["dateTime"] = moment.astimezone(_zone(template)).isoformat().replace(
            "+00:00", "Z")
        slot["timeZone"] = template["timeZone"]
    else:
        slot["dateTime"] = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return slot


def _duration(fields: Mapping[str, Any]) -> timedelta:
    start, end = fields["start"], fields["end"]
    if _all_day(fields):
        return date.fromisoformat(end["date"]) - date.fromisoformat(start["date"])
    return datetime.fromisoformat(end["dateTime"]) - datetime.fromisoformat(start["dateTime"])


def instance_fields(series_id: str, fields: Mapping[str, Any],
                    original: datetime) -> dict[str, Any]:
    """The fields of one instance: the series' fields at its time, without ``recurrence``."""
    out = {k: copy.deepcopy(v) for k, v in fields.items() if k != "recurrence"}
    out["start"] = _slot(fields, original, fields["start"])
    out["end"] = _slot(fields, original + _duration(fields), fields["end"])
    out["recurringEventId"] = series_id
    out["originalStartTime"] = _slot(fields, original, fields["start"])
    return out


def cancellation_window(now: datetime) -> tuple[datetime, datetime]:
    """Original starts whose cancellation an incremental sync still reports."""
    return now - CANCELLED_WINDOW, now + CANCELLED_WINDOW
