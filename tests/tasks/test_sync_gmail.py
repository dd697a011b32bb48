"""The mail_activity sync through a real arq worker against the emulator's Gmail."""

from __future__ import annotations

import json
from typing import Any

from gwsync.core.settings import Settings
from gwsync.emulator.mailbox import METADATA_SCOPE, Mailbox, add_gmail_user, mailbox
from gwsync.emulator.realism import Realism
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator, RunWorker
from tests.helpers import connect, sync_again, sync_state

FEATURE = "mail_activity"
EMAIL = "mia@example.com"


async def _stored(deps: Deps, account_id: str) -> dict[str, dict[str, Any]]:
    """Every stored message by Gmail id, read through the purpose-checked path."""
    page = await deps.store.read(account_id, use=f"feature:{FEATURE}", actor="test",
                                 limit=1000)
    assert page.next_cursor is None
    return {item["id"]: item["content"] for item in page.items}




async def _synced(api: Any, emulator: Emulator, run_worker: RunWorker,
                  n: int) -> tuple[Mailbox, str]:
    """A gmail.metadata-only user with `n` messages, connected and fully synced."""
    grant = add_gmail_user(emulator.state, EMAIL, n)
    account_id = await connect(api, grant.refresh_token)
    await run_worker()
    return mailbox(emulator.state, EMAIL), account_id




async def test_full_sync_stores_only_the_declared_headers(
    api: Any, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """A full sync takes the mailbox's history id, lists and batch-fetches every message
    and keeps from/to/subject/date only."""
    box, account_id = await _synced(api, emulator, run_worker, 7)
    stored = await _stored(deps, account_id)
    assert sorted(stored) == sorted(box.messages)
    assert all(set(c) == {"from", "to", "subject", "date"} for c in stored.values())
    some = box.messages[next(iter(box.messages))]
    assert stored[some.id]["subject"] == dict(some.headers)["Subject"]
    assert "Confidential" not in json.dumps(stored)  # bodies never arrive, never stored
    state = await sync_state(deps, account_id, FEATURE)
    assert state.stage == "incremental" and state.status == "ok"
    assert state.cursor == str(box.history_id)  # the mailbox's, from getProfile
    calls = emulator.state.calls()
    assert [c["method"] for c in calls].count("gmail.users.messages.get") == 7
    assert {c["method"] for c in calls} == {"gmail.users.getProfile",
                                            "gmail.users.messages.list",
                                            "gmail.users.messages.get"}
    assert all(c["scopes"] == [METADATA_SCOPE] for c in calls)


async def test_incremental_sync_applies_adds_deletes_and_trash(
    api: Any, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """history.list brings new messages in, drops deleted and trashed ones, ignores stars."""
    box, account_id = await _synced(api, emulator, run_worker, 5)
    before = await _stored(deps, account_id)
    old = list(box.messages)
    added = [box.add({"From": f"n{i}@example.com", "Subject": f"New {i}"}, "body", 0).id
             for i in range(2)]
    box.delete(old[0])
    box.change_labels(old[1], add=["TRASH"], remove=["INBOX"])
    box.change_labels(old[2], add=["STARRED"], remove=["UNREAD"])
    emulator.state.calls(clear=True)
    await sync_again(deps, account_id, FEATURE, run_worker)

    after = await _stored(deps, account_id)
    assert sorted(after) == sorted(added + old[2:])
    assert after[old[2]] == before[old[2]]
    assert after[added[1]]["subject"] == "New 1"
    calls = emulator.state.calls()
    methods = [c["method"] for c in calls]
    assert set(methods) == {"gmail.users.history.list", "gmail.users.messages.get"}
    assert methods.count("gmail.users.messages.get") == 2  # label-only changes fetch nothing
    assert all(c["scopes"] == [METADATA_SCOPE] for c in calls)
    assert (await sync_state(deps, account_id, FEATURE)).cursor == str(box.history_id)


async def test_message_untrashed_comes_back(
    api: Any, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """A message moved out of trash is fetched and stored again."""
    box, account_id = await _synced(api, emulator, run_worker, 3)
    mid = next(iter(box.messages))
    box.change_labels(mid, add=["TRASH"])
    await sync_again(deps, account_id, FEATURE, run_worker)
    assert mid not in await _stored(deps, account_id)
    box.change_labels(mid, remove=["TRASH"])
    await sync_again(deps, account_id, FEATURE, run_worker)
    assert mid in await _stored(deps, account_id)


async def test_expired_history_id_leads_to_a_full_sync_that_deletes_missing(
    api: Any, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """A 404 from history.list starts a full resync, which removes what Gmail no longer has."""
    box, account_id = await _synced(api, emulator, run_worker, 5)
    gone = list(box.messages)[2]
    box.delete(gone)
    box.truncate_history()
    epoch_before = (await sync_state(deps, account_id, FEATURE)).epoch
    emulator.state.calls(clear=True)
    await sync_again(deps, account_id, FEATURE, run_worker)

    assert sorted(await _stored(deps, account_id)) == sorted(box.messages)
    state = await sync_state(deps, account_id, FEATURE)
    assert state.epoch == epoch_before + 1
    assert state.stage == "incremental" and state.status == "ok"
    calls = emulator.state.calls()
    assert (calls[0]["method"], calls[0]["status"]) == ("gmail.users.history.list", 404)
    assert all(c["scopes"] == [METADATA_SCOPE] for c in calls)


async def test_a_transient_batch_part_error_keeps_the_data(
    api: Any, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """503s on batched gets are retried as temporary; the data ends complete."""
    box, account_id = await _synced(api, emulator, run_worker, 3)
    box.add({"From": "late@example.com", "Subject": "Late"}, "body", 0)
    emulator.state.add_fault("/gmail/v1/users/me/messages/", 503, count=1)
    await sync_again(deps, account_id, FEATURE, run_worker)
    assert emulator.state.faults == []  # the batched get met the fault, and was retried
    assert sorted(await _stored(deps, account_id)) == sorted(box.messages)
    assert (await sync_state(deps, account_id, FEATURE)).status == "ok"


async def test_failed_batch_parts_are_retried_alone_and_the_rest_is_kept(
    api: Any, deps: Deps, emulator: Emulator, run_worker: RunWorker, settings: Settings
) -> None:
    """Parts of a batch that fail are fetched again on their own and the parts that
    succeeded are kept: each message is fetched successfully exactly once."""
    settings.sync_page_size = 40  # one listing page, so one page holds every part
    grant = add_gmail_user(emulator.state, EMAIL, 40)
    emulator.state.add_fault("/gmail/v1/users/me/messages/", 503, count=6)
    account_id = await connect(api, grant.refresh_token)
    await run_worker()
    box = mailbox(emulator.state, EMAIL)
    assert emulator.state.faults == []  # all six faults were met
    assert sorted(await _stored(deps, account_id)) == sorted(box.messages)
    gets = [c for c in emulator.state.calls() if c["method"] == "gmail.users.messages.get"]
    assert len(gets) == 40
    assert (await sync_state(deps, account_id, FEATURE)).status == "ok"


async def test_a_first_sync_completes_when_a_fifth_of_googles_calls_fail(
    api: Any, deps: Deps, emulator: Emulator, run_worker: RunWorker, settings: Settings
) -> None:
    """With 20 % of calls answered 500/503, each part on its own, and Gmail's per-user
    concurrency limit, a 300-message mailbox in pages of 100 ends with exactly Gmail's
    messages (one failed part no longer throws its page away)."""
    settings.sync_page_size = 100
    emulator.state.realism = Realism(max_concurrent_per_user=25, fault_rate=0.2, seed=3)
    grant = add_gmail_user(emulator.state, EMAIL, 300)
    account_id = await connect(api, grant.refresh_token)
    await run_worker()
    assert emulator.state.realism.failed > 50  # the faults were really met
    box = mailbox(emulator.state, EMAIL)
    assert sorted(await _stored(deps, account_id)) == sorted(box.messages)
    assert (await sync_state(deps, account_id, FEATURE)).status == "ok"
