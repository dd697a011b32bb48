"""Recurring meetings synced by a real arq worker from the emulator: bounded, no ghosts.

Each test runs on SQLite and PostgreSQL (`db_url`), against the emulator over HTTP.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gwsync.connectors.calendar import HORIZON, ROLL, Window
from gwsync.core.settings import Settings
from gwsync.domain.features import FEATURES
from gwsync.emulator import calendar_events as cal
from gwsync.storage.models import SyncState
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator, RunWorker
from tests.helpers import connect, sync_again, sync_state

EVENTS_RO = FEATURES["meetings"].scope
NOW = datetime.now(UTC)
#: Series start at 09:00 UTC today: inside the window, whatever the hour of the run.
DAY0 = NOW.replace(hour=9, minute=0, second=0, microsecond=0)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Pages of 500, so a series' hundreds of instances take a page or two."""
    return settings.model_copy(update={"sync_page_size": 500})


def _z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _series(rule: str, start: datetime = DAY0) -> dict[str, Any]:
    return {"summary": "standup", "description": "private",
            "start": {"dateTime": _z(start), "timeZone": "UTC"},
            "end": {"dateTime": _z(start + timedelta(minutes=15)), "timeZone": "UTC"},
            "recurrence": [rule]}


def _iid(series_id: str, day: int) -> str:
    return f"{series_id}_{DAY0 + timedelta(days=day):%Y%m%dT%H%M%SZ}"


async def _connected(api: Any, emulator: Emulator, run_worker: RunWorker,
                     events: list[dict[str, Any]]) -> tuple[str, str, list[str]]:
    user = emulator.state.add_user("dave@example.com", [], [EVENTS_RO])
    ids = cal.add_events(emulator.state, user.user, events)
    account_id = await connect(api, user.refresh_token)
    await run_worker()
    return user.user, account_id, ids


async def _stored(deps: Deps, account_id: str) -> dict[str, dict[str, Any]]:
    page = await deps.store.read(account_id, use="feature:meetings", actor="test",
                                 feature="meetings", limit=5000)
    assert page.next_cursor is None
    return {item["id"]: item["content"] for item in page.items}


def _statuses(emulator: Emulator) -> list[int]:
    return [c["status"] for c in emulator.state.calls() if c["method"] == "calendar.events.list"]


async def test_an_endless_series_stores_only_the_horizon(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """An endless daily series (730 instances at Google) is stored up to HORIZON ahead only."""
    _, account_id, [sid] = await _connected(api, emulator, run_worker,
                                            [_series("RRULE:FREQ=DAILY")])
    stored = await _stored(deps, account_id)
    assert len(stored) == HORIZON.days  # days 0 … 89 from today
    assert _iid(sid, 0) in stored and _iid(sid, HORIZON.days - 1) in stored
    assert stored[_iid(sid, 0)] == {"summary": "standup", "start": _z(DAY0),
                                    "end": _z(DAY0 + timedelta(minutes=15)),
                                    "status": "confirmed"}


async def test_incremental_calls_repeat_the_initial_parameters(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """The incremental call is accepted: it adds no showDeleted the full sync did not send."""
    user, account_id, ids = await _connected(
        api, emulator, run_worker, [_series("RRULE:FREQ=WEEKLY;COUNT=3")])
    cal.update_event(emulator.state, user, _iid(ids[0], 7), {"summary": "moved"})
    emulator.state.calls(clear=True)
    await sync_again(deps, account_id, "meetings", run_worker)
    assert _statuses(emulator) == [200]
    assert (await sync_state(deps, account_id, "meetings")).status == "ok"
    assert (await _stored(deps, account_id))[_iid(ids[0], 7)]["summary"] == "moved"


async def test_a_deleted_series_leaves_no_ghost_meetings(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """Deleting an endless series removes every stored instance on the next incremental run."""
    user, account_id, [sid, single] = await _connected(api, emulator, run_worker, [
        _series("RRULE:FREQ=DAILY"),
        {"summary": "1:1", "start": {"dateTime": _z(DAY0 + timedelta(hours=3))},
         "end": {"dateTime": _z(DAY0 + timedelta(hours=4))}}])
    cal.cancel_event(emulator.state, user, sid)
    await sync_again(deps, account_id, "meetings", run_worker)
    assert set(await _stored(deps, account_id)) == {single}
    assert (await sync_state(deps, account_id, "meetings")).status == "ok"


async def test_a_shortened_series_leaves_no_ghost_meetings(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """Giving an endless series an end keeps only the instances before it, and one deleted
    instance and one edited instance are applied too."""
    user, account_id, [sid] = await _connected(api, emulator, run_worker,
                                               [_series("RRULE:FREQ=DAILY")])
    until = DAY0 + timedelta(days=4)
    cal.update_event(emulator.state, user, sid,
                     {"recurrence": [f"RRULE:FREQ=DAILY;UNTIL={until:%Y%m%dT%H%M%SZ}"]})
    cal.cancel_event(emulator.state, user, _iid(sid, 1))
    cal.update_event(emulator.state, user, _iid(sid, 2), {"summary": "moved"})
    await sync_again(deps, account_id, "meetings", run_worker)
    stored = await _stored(deps, account_id)
    assert sorted(stored) == [_iid(sid, d) for d in (0, 2, 3, 4)]
    assert stored[_iid(sid, 2)]["summary"] == "moved"


async def _set_cursor(deps: Deps, account_id: str, cursor: str) -> None:
    async with deps.sessions.begin() as session:
        state = await session.get(SyncState, (account_id, "meetings"))
        assert state is not None
        state.cursor = cursor


async def _windowed_state(deps: Deps, account_id: str) -> tuple[SyncState, Any]:
    """The meetings sync state and the window and token its cursor carries."""
    state = await sync_state(deps, account_id, "meetings")
    found = Window.unwrap(state.cursor or "")
    assert found is not None
    return state, found


async def test_the_horizon_rolls_forward_with_a_full_crawl(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """When the stored window has fallen ROLL behind, the run crawls today's window in full."""
    _, account_id, _ = await _connected(api, emulator, run_worker,
                                               [_series("RRULE:FREQ=DAILY")])
    state, found = await _windowed_state(deps, account_id)
    late = ROLL + timedelta(days=1)
    old = Window(found[0].start - late, found[0].end - late)
    await _set_cursor(deps, account_id, old.wrap(found[1]) or "")
    emulator.state.calls(clear=True)
    await sync_again(deps, account_id, "meetings", run_worker)
    after = await sync_state(deps, account_id, "meetings")
    assert after.epoch == state.epoch + 1 and after.status == "ok"
    assert len(await _stored(deps, account_id)) == HORIZON.days
    assert _statuses(emulator) == [200]  # no incremental call on the stale window


async def test_a_cursor_without_a_window_starts_a_full_crawl(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """A cursor stored before windows existed (a bare sync token) leads to a full crawl."""
    _, account_id, _ = await _connected(api, emulator, run_worker,
                                        [_series("RRULE:FREQ=WEEKLY;COUNT=2")])
    state, found = await _windowed_state(deps, account_id)
    await _set_cursor(deps, account_id, found[1])
    await sync_again(deps, account_id, "meetings", run_worker)
    after = await sync_state(deps, account_id, "meetings")
    assert after.epoch == state.epoch + 1 and after.status == "ok"
    assert Window.unwrap(after.cursor or "") is not None
