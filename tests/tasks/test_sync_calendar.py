"""Availability and meetings, synced by a real arq worker from the emulator's Calendar API.

Each test runs on SQLite and PostgreSQL (`db_url`), against the emulator over HTTP,
through the real web API (connect) and the real worker (sync).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from gwsync.domain.features import FEATURES
from gwsync.emulator import calendar_events as cal
from gwsync.storage.models import Record, SyncState
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator, RunWorker
from tests.helpers import connect, sync_again, sync_state

FREEBUSY = FEATURES["availability"].scope
EVENTS_RO = FEATURES["meetings"].scope
EMAIL = "carol@example.com"


#: Where the availability window starts when these tests begin (the top of the hour).
#: Availability events start two hours later or more, so they stay inside the window
#: even when a test crosses into the next hour.
HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def _t(hours: float) -> str:
    return (HOUR + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _event(summary: str, start_h: float, end_h: float, **extra: Any) -> dict[str, Any]:
    """An event with more than either feature stores (description, location, attendees)."""
    return {"summary": summary, "start": {"dateTime": _t(start_h)},
            "end": {"dateTime": _t(end_h)}, "description": f"private {summary}",
            "location": "Room 7", "attendees": [{"email": "guest@example.com"}], **extra}


async def _connected(api: Any, emulator: Emulator, run_worker: RunWorker,
                     events: list[dict[str, Any]]) -> tuple[str, str, list[str]]:
    """A user with `events`, granted both Calendar scopes, connected and synced once."""
    user = emulator.state.add_user(EMAIL, [], [FREEBUSY, EVENTS_RO])
    ids = cal.add_events(emulator.state, user.user, events)
    account_id = await connect(api, user.refresh_token)
    await run_worker()
    return user.user, account_id, ids


async def _stored(deps: Deps, account_id: str, feature: str) -> dict[str, dict[str, Any]]:
    """Every stored record of `feature` by external id, read through the purpose check."""
    page = await deps.store.read(account_id, use=f"feature:{feature}", actor="test",
                                 feature=feature, limit=1000)
    assert page.next_cursor is None
    return {item["id"]: item["content"] for item in page.items}






def _span(start_h: float, end_h: float) -> str:
    return f"{_t(start_h)}/{_t(end_h)}"


def _assert_calls_used_only(emulator: Emulator, method: str, scope: str) -> None:
    calls = [c for c in emulator.state.calls() if c["method"] == method]
    assert calls and all(c["scopes"] == [scope] for c in calls)


async def test_availability_full_sync_stores_busy_intervals_only(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """The first run stores the window's merged busy intervals as start and end only."""
    _, account_id, _ = await _connected(api, emulator, run_worker, [
        _event("a", 2, 3), _event("b", 2.5, 4), _event("free", 5, 6, transparency="transparent"),
        _event("later", 30, 31), _event("beyond", 24 * 15, 24 * 15 + 1)])
    stored = await _stored(deps, account_id, "availability")
    assert stored == {
        _span(2, 4): {"start": _t(2), "end": _t(4)},
        _span(30, 31): {"start": _t(30), "end": _t(31)},
    }
    state = await sync_state(deps, account_id, "availability")
    assert (state.stage, state.cursor, state.status) == ("full", None, "ok")
    _assert_calls_used_only(emulator, "calendar.freebusy.query", FREEBUSY)


async def test_availability_next_run_adds_new_busy_time_and_drops_what_is_gone(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """A later run stores a new busy event, moves a changed one and forgets a cancelled one."""
    user, account_id, ids = await _connected(api, emulator, run_worker, [
        _event("keep", 2, 3), _event("move", 5, 6), _event("cancel", 8, 9)])
    epoch = (await sync_state(deps, account_id, "availability")).epoch
    cal.add_events(emulator.state, user, [_event("new", 11, 12)])
    cal.update_event(emulator.state, user, ids[1], {"start": {"dateTime": _t(6)},
                                                    "end": {"dateTime": _t(7)}})
    cal.cancel_event(emulator.state, user, ids[2])
    emulator.state.calls(clear=True)
    await sync_again(deps, account_id, "availability", run_worker)

    assert set(await _stored(deps, account_id, "availability")) == {
        _span(2, 3), _span(6, 7), _span(11, 12)}
    state = await sync_state(deps, account_id, "availability")
    assert (state.stage, state.cursor, state.status) == ("full", None, "ok")
    assert state.epoch == epoch + 1
    assert [c["method"] for c in emulator.state.calls()] == ["calendar.freebusy.query"]
    _assert_calls_used_only(emulator, "calendar.freebusy.query", FREEBUSY)


async def test_availability_with_a_stray_cursor_recovers_by_full_sync(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """If its state ever claims a cursor, availability resyncs in full and ends cursor-free."""
    user, account_id, _ = await _connected(api, emulator, run_worker, [_event("a", 2, 3)])
    async with deps.sessions.begin() as session:
        state = await session.get(SyncState, (account_id, "availability"))
        state.stage, state.cursor = "incremental", "stray"
    cal.add_events(emulator.state, user, [_event("b", 4, 5)])
    await sync_again(deps, account_id, "availability", run_worker)
    assert set(await _stored(deps, account_id, "availability")) == {_span(2, 3), _span(4, 5)}
    state = await sync_state(deps, account_id, "availability")
    assert (state.stage, state.cursor, state.status) == ("full", None, "ok")


async def test_meetings_full_sync_pages_and_stores_declared_fields_only(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """The first run pages through every event and stores summary, start, end and status only."""
    _, account_id, ids = await _connected(
        api, emulator, run_worker, [_event(f"m{i}", i, i + 1) for i in range(7)])
    stored = await _stored(deps, account_id, "meetings")
    assert sorted(stored) == sorted(ids)
    assert stored[ids[0]] == {"summary": "m0", "start": _t(0), "end": _t(1),
                              "status": "confirmed"}
    assert all(set(c) == set(FEATURES["meetings"].fields["event"]) for c in stored.values())
    state = await sync_state(deps, account_id, "meetings")
    assert state.stage == "incremental" and state.cursor and state.status == "ok"
    lists = [c for c in emulator.state.calls() if c["method"] == "calendar.events.list"]
    assert len(lists) == 3  # seven events at the test page size of three
    _assert_calls_used_only(emulator, "calendar.events.list", EVENTS_RO)
    async with deps.sessions() as session:
        rows = list(await session.scalars(select(Record).where(Record.feature == "meetings")))
    assert {(r.scope, r.source_method) for r in rows} == {(EVENTS_RO, "calendar.events.list")}


async def test_meetings_incremental_applies_adds_changes_and_cancellations(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """After a full sync, one incremental call stores an add and a change and drops a deletion."""
    user, account_id, ids = await _connected(
        api, emulator, run_worker, [_event(f"m{i}", i, i + 1) for i in range(4)])
    cursor = (await sync_state(deps, account_id, "meetings")).cursor
    [added] = cal.add_events(emulator.state, user, [_event("new", 9, 10)])
    cal.update_event(emulator.state, user, ids[0], {"summary": "renamed"})
    cal.cancel_event(emulator.state, user, ids[1])
    emulator.state.calls(clear=True)
    await sync_again(deps, account_id, "meetings", run_worker)

    stored = await _stored(deps, account_id, "meetings")
    assert sorted(stored) == sorted([ids[0], ids[2], ids[3], added])
    assert stored[ids[0]]["summary"] == "renamed"
    assert stored[added]["summary"] == "new"
    state = await sync_state(deps, account_id, "meetings")
    assert state.stage == "incremental" and state.cursor not in (None, cursor)
    calls = emulator.state.calls()
    assert [c["method"] for c in calls] == ["calendar.events.list"]  # three changes, one page
    _assert_calls_used_only(emulator, "calendar.events.list", EVENTS_RO)


async def test_meetings_expired_sync_token_resyncs_in_full_and_deletes_what_is_gone(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """A 410 on the sync token leads to a full sync that removes events no longer there."""
    user, account_id, ids = await _connected(
        api, emulator, run_worker, [_event(f"m{i}", i, i + 1) for i in range(5)])
    epoch = (await sync_state(deps, account_id, "meetings")).epoch
    cal.cancel_event(emulator.state, user, ids[2])
    cal.expire_calendar_sync_tokens(emulator.state, user)
    # Deleted while the token was dead and then gone from Google's tombstones entirely:
    # only the full resync's sweep can notice.
    del cal.calendar_of(emulator.state, user).events[ids[2]]
    emulator.state.calls(clear=True)
    await sync_again(deps, account_id, "meetings", run_worker)

    assert sorted(await _stored(deps, account_id, "meetings")) == sorted(
        i for i in ids if i != ids[2])
    state = await sync_state(deps, account_id, "meetings")
    assert state.epoch == epoch + 1 and state.stage == "incremental" and state.status == "ok"
    assert [c["status"] for c in emulator.state.calls()][0] == 410
    _assert_calls_used_only(emulator, "calendar.events.list", EVENTS_RO)
