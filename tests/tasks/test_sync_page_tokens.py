"""A full sync resumed from a page token Google has since refused, for every list API."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from gwsync.domain.features import FEATURES
from gwsync.emulator.calendar_events import calendar_of, seed_calendar
from gwsync.emulator.cursors import PAGE_TOKEN_TTL
from gwsync.emulator.drive_data import seed_drive
from gwsync.emulator.mailbox import mailbox, seed_gmail
from gwsync.emulator.seed import fake_contact
from gwsync.emulator.state import EmulatorState
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator, RunWorker
from tests.helpers import connect, sync_again, sync_state

EMAIL = "rae@example.com"


@dataclass(frozen=True)
class Listing:
    """How one feature's crawl is seeded, interrupted after its first page, and checked."""

    seed: Callable[[EmulatorState, str], Any]
    #: Google's items once the crawl is done; None: the ids `seed` returned.
    expected: Callable[[EmulatorState, str], set[str]] | None
    #: The list call's path, and how many requests under it the first page makes.
    path: str
    first_page_requests: int = 1


def _contacts(state: EmulatorState, user: str) -> None:
    state.add_contacts(user, [fake_contact(i) for i in range(8)])


LISTINGS = {
    "contacts": Listing(
        _contacts, lambda s, u: {c["resourceName"] for c in s.contacts(u)}, "/v1/people"),
    "meetings": Listing(
        lambda s, u: seed_calendar(s, u, 8),
        lambda s, u: {e.id for e in calendar_of(s, u).events.values() if not e.cancelled},
        "/calendar/v3/calendars/primary/events"),
    "shared_files": Listing(
        lambda s, u: seed_drive(s, u, 8, 2), None, "/drive/v3/files"),
    # messages.list and its batched gets share the path: 1 list + 3 parts per page.
    "mail_activity": Listing(
        lambda s, u: seed_gmail(s, u, 8), lambda s, u: set(mailbox(s, u).messages),
        "/gmail/v1/users/me/messages", first_page_requests=4),
}


async def _stored(deps: Deps, account_id: str, feature: str) -> set[str]:
    page = await deps.store.read(account_id, use=f"feature:{feature}", actor="test",
                                 feature=feature, limit=1000)
    assert page.next_cursor is None
    return {item["id"] for item in page.items}


@pytest.mark.parametrize("feature", sorted(LISTINGS))
async def test_a_resumed_crawl_whose_page_token_google_refuses_starts_again(
    api: Any, deps: Deps, emulator: Emulator, run_worker: RunWorker, feature: str
) -> None:
    """A crawl stopped after its first page resumes hours later from a page token
    Google now refuses (400): the run restarts the crawl from page one under a new
    epoch and ends with exactly Google's items, instead of failing on the dead token
    at every later run."""
    listing = LISTINGS[feature]
    issued = emulator.state.add_user(EMAIL, [], [FEATURES[feature].scope])
    seeded = listing.seed(emulator.state, issued.user)
    emulator.state.add_fault(listing.path, 404, after=listing.first_page_requests)
    account_id = await connect(api, issued.refresh_token)
    await run_worker()
    stopped = await sync_state(deps, account_id, feature)
    assert (stopped.stage, stopped.status) == ("full", "error") and stopped.page_token
    assert 0 < len(await _stored(deps, account_id, feature))

    emulator.state.advance(PAGE_TOKEN_TTL + 60)
    emulator.state.calls(clear=True)
    await sync_again(deps, account_id, feature, run_worker)

    expected = (listing.expected(emulator.state, issued.user) if listing.expected
                else set(seeded))
    assert await _stored(deps, account_id, feature) == expected
    state = await sync_state(deps, account_id, feature)
    assert (state.stage, state.status, state.page_token) == ("incremental", "ok", None)
    assert state.epoch == stopped.epoch + 1
    refused = [c for c in emulator.state.calls() if c["status"] == 400]
    assert len(refused) == 1  # the dead token was tried once, then dropped
