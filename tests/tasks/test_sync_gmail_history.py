"""Gmail cursors that outlive long syncs: a full sync never ends holding a dead history id."""

from __future__ import annotations

from typing import Any

from gwsync.emulator.mailbox import add_gmail_user, mailbox
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator, RunWorker
from tests.helpers import connect, sync_again, sync_state

FEATURE = "mail_activity"
EMAIL = "hal@example.com"
LIST_PATH = "/gmail/v1/users/me/messages"  # messages.list, and the batched gets' parts
HOUR = 3600


async def _stored(deps: Deps, account_id: str) -> set[str]:
    page = await deps.store.read(account_id, use=f"feature:{FEATURE}", actor="test",
                                 limit=1000)
    assert page.next_cursor is None
    return {item["id"] for item in page.items}


def _methods(emulator: Emulator) -> list[str]:
    return [c["method"] for c in emulator.state.calls(clear=True)]


async def _next_run_is_incremental(deps: Deps, account_id: str, emulator: Emulator,
                                   run_worker: RunWorker) -> None:
    """The cursor the full sync left is alive: the next run replays history only."""
    emulator.state.calls(clear=True)
    await sync_again(deps, account_id, FEATURE, run_worker)
    calls = emulator.state.calls()
    assert [(c["method"], c["status"]) for c in calls] == [("gmail.users.history.list", 200)]
    state = await sync_state(deps, account_id, FEATURE)
    assert (state.stage, state.status) == ("incremental", "ok")


async def test_a_quiet_mailbox_gets_a_cursor_that_is_still_alive(
    api: Any, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """The newest message is older than the history Gmail keeps, and an older one changed
    since: the newest message's historyId is dead from the start, so the cursor comes from
    the mailbox itself and the next run is an incremental one, not another full sync."""
    grant = add_gmail_user(emulator.state, EMAIL, 6)
    box = mailbox(emulator.state, EMAIL)
    box.retention_s = HOUR
    box.change_labels(next(iter(box.messages)), add=["STARRED"])  # the oldest message
    emulator.state.advance(HOUR + 1)
    account_id = await connect(api, grant.refresh_token)
    await run_worker()
    assert await _stored(deps, account_id) == set(box.messages)
    await _next_run_is_incremental(deps, account_id, emulator, run_worker)


async def test_a_crawl_longer_than_gmails_history_ends_with_a_live_cursor(
    api: Any, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """A crawl stopped twice for 40 minutes each (80 minutes, with history kept for an
    hour) catches up with the mailbox at each resumption: mail that arrived and mail
    deleted meanwhile are seen, and it ends on a cursor Gmail still replays."""
    grant = add_gmail_user(emulator.state, EMAIL, 12)  # 4 pages of 3
    box = mailbox(emulator.state, EMAIL)
    box.retention_s = HOUR
    emulator.state.add_fault(LIST_PATH, 404, after=4)  # page 1: 1 list + 3 parts
    account_id = await connect(api, grant.refresh_token)
    await run_worker()
    first_page = await _stored(deps, account_id)
    assert len(first_page) == 3

    arrived = box.add({"From": "new@example.com", "Subject": "While you waited"}, "x", 0).id
    box.delete(sorted(first_page)[0])
    emulator.state.advance(40 * 60)
    emulator.state.add_fault(LIST_PATH, 404, after=5)  # the new mail's part, then page 2
    await sync_again(deps, account_id, FEATURE, run_worker)
    assert (await sync_state(deps, account_id, FEATURE)).stage == "full"
    emulator.state.advance(40 * 60)
    await sync_again(deps, account_id, FEATURE, run_worker)

    assert await _stored(deps, account_id) == set(box.messages)
    assert arrived in box.messages
    await _next_run_is_incremental(deps, account_id, emulator, run_worker)
