"""Every feature of a big user synced while a fifth of Google's calls fail, then kept in step.

Small enough for the normal suite (one database, a few tens of seconds): 3,000 messages,
500 contacts, events and recurring series, and shared-drive files, with 20 % of calls
answered 500/503 and Gmail batch parts refused 429 past a per-user concurrency below
gwsync's own.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from gwsync.connectors.calendar import HORIZON
from gwsync.core.settings import Settings
from gwsync.domain.features import FEATURES
from gwsync.emulator import calendar as cal_api
from gwsync.emulator.calendar_events import calendar_of, seed_calendar
from gwsync.emulator.calendar_recurrence import is_series
from gwsync.emulator.drive import add_file, files
from gwsync.emulator.drive_data import seed_drive
from gwsync.emulator.mailbox import mailbox, seed_gmail
from gwsync.emulator.realism import Realism
from gwsync.emulator.seed import fake_contact, seed_demo_user
from gwsync.emulator.state import EmulatorState
from gwsync.storage.models import SyncState
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator, RunWorker
from tests.helpers import connect, sync_again

MESSAGES, CONTACTS, EVENTS, SERIES, FILES, SHARED = 3000, 500, 40, 6, 30, 10


def _seed(state: EmulatorState) -> str:
    """The user, with every feature's data and every feature's scope; its refresh token."""
    grant = seed_demo_user(state, CONTACTS)
    seed_gmail(state, grant.user, MESSAGES)
    seed_calendar(state, grant.user, EVENTS, n_series=SERIES)  # weekly and daily series
    seed_drive(state, grant.user, FILES, 5)
    for i in range(SHARED):
        add_file(state, grant.user, f"Team plan {i}.pdf", drive_id="0ATeamDrive")
    return grant.refresh_token


def _googles_counts(state: EmulatorState, user: str) -> dict[str, int]:
    """What each feature should hold, read from the emulator itself."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    window = {"timeMin": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
              "timeMax": (start + timedelta(days=14)).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "items": [{"id": "primary"}]}
    busy = cal_api.freebusy(state, user, window)["calendars"]["primary"]["busy"]
    return {
        "contacts": len(state.contacts(user)),
        "mail_activity": len(mailbox(state, user).messages),
        "meetings": _meetings(state, user),
        "shared_files": sum(f["openedByApp"] and not f["trashed"] for f in files(state, user)),
        "availability": len({(b["start"], b["end"]) for b in busy}),
    }


def _meetings(state: EmulatorState, user: str) -> int:
    """Plain events, and each series' instances within the meetings window (today … +90
    days, gwsync/connectors/calendar.py), as Google expands them."""
    cal = calendar_of(state, user)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    live = [e for e in cal.events.values() if not e.cancelled]
    series = [len(cal.instances(e, today, today + HORIZON)) for e in live if is_series(e.fields)]
    assert len(series) == SERIES and sum(series) > SERIES
    return sum(series) + sum(not is_series(e.fields) for e in live)


async def _stored_counts(deps: Deps, account_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, feature in FEATURES.items():
        kind = next(k for k in feature.fields if not k.startswith("derived:"))
        seen, cursor = 0, None
        while True:
            page = await deps.store.read(account_id, use=feature.data_use, actor="test",
                                         feature=name, kind=kind, cursor=cursor, limit=1000)
            seen += len(page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        counts[name] = seen
    return counts


async def _statuses(deps: Deps, account_id: str) -> dict[str, tuple[str, str]]:
    async with deps.sessions() as session:
        states = (await session.scalars(select(SyncState).where(
            SyncState.account_id == account_id))).all()
    return {s.feature: (s.stage, s.status) for s in states}


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_every_feature_completes_exactly_under_failing_calls_and_stays_cheap(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker,
    settings: Settings,
) -> None:
    """With 20 % of calls failing (500/503, each batch part on its own) and Gmail parts
    refused 429 beyond 4 in flight, a first sync of all five features ends with exactly
    Google's counts; after a few changes, a second run makes only the calls the changes
    need."""
    settings.sync_page_size = 500
    settings.quota_gmail_user_per_min = 600_000  # pacing on, but not the subject here
    state = emulator.state
    refresh_token = _seed(state)
    user = "demo.user@example.com"
    state.realism = Realism(max_concurrent_per_user=4, fault_rate=0.2, seed=7)
    account_id = await connect(api, refresh_token)
    await run_worker()

    assert state.realism.failed > 100 and state.realism.refused_concurrency > 0
    assert await _stored_counts(deps, account_id) == _googles_counts(state, user)
    statuses = await _statuses(deps, account_id)
    assert statuses.pop("availability") == ("full", "ok")  # a snapshot: always full
    assert set(statuses.values()) == {("incremental", "ok")}

    state.realism = None
    box = mailbox(state, user)
    box.add({"From": "new@example.com", "Subject": "Hello"}, "body", 0)
    box.delete(next(iter(box.messages)))
    state.add_contacts(user, [fake_contact(CONTACTS + 1)])
    state.calls(clear=True)
    for feature in FEATURES:
        await sync_again(deps, account_id, feature, run_worker)

    assert await _stored_counts(deps, account_id) == _googles_counts(state, user)
    calls = Counter(c["method"] for c in state.calls())
    assert calls == Counter({
        "people.people.connections.list": 1, "gmail.users.history.list": 1,
        "gmail.users.messages.get": 1, "calendar.events.list": 1,
        "calendar.freebusy.query": 1, "drive.changes.list": 1,
    })
    assert all(c["status"] == 200 for c in state.calls())
