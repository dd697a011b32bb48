"""The shared_files sync through a real arq worker against the Drive emulator, on both databases."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from gwsync.domain.features import FEATURES
from gwsync.emulator import drive
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator, RunWorker
from tests.helpers import connect, sync_again, sync_state

FEATURE = FEATURES["shared_files"]
DRIVE_FILE = "https://www.googleapis.com/auth/drive.file"
EMAIL = "dana@example.com"


async def _connected(api: TestClient, emulator: Emulator, run_worker: RunWorker, n_files: int,
                     others: int = 2) -> tuple[str, list[str]]:
    """A drive.file user with ``n_files`` app files, connected and fully synced."""
    issued = emulator.state.add_user(EMAIL, [], [DRIVE_FILE])
    ids = drive.seed_drive(emulator.state, issued.user, n_files, others)
    account_id = await connect(api, issued.refresh_token)
    await run_worker()
    return account_id, ids


async def _stored(deps: Deps, account_id: str) -> dict[str, dict[str, Any]]:
    """Every stored file by id, read through the purpose-checked path."""
    page = await deps.store.read(account_id, use=FEATURE.data_use, actor="test", limit=1000)
    assert page.next_cursor is None
    return {item["id"]: item["content"] for item in page.items}






def _only_feature_scope(calls: list[dict[str, Any]]) -> bool:
    return bool(calls) and all(c["scopes"] == [FEATURE.scope] for c in calls)


async def test_full_sync_stores_the_apps_files_and_the_start_page_token(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """A full sync takes the start page token first, then pages files.list, under drive.file."""
    account_id, ids = await _connected(api, emulator, run_worker, 7)
    stored = await _stored(deps, account_id)
    assert sorted(stored) == sorted(ids)  # files the app never opened are not there
    state = await sync_state(deps, account_id, FEATURE.name)
    assert state.status == "ok" and state.stage == "incremental"
    assert state.cursor == str(drive.data(emulator.state, EMAIL).start_page_token)
    calls = emulator.state.calls()
    assert [c["method"] for c in calls] == ["drive.changes.getStartPageToken"] + [
        "drive.files.list"] * 3  # 7 files at 3 per page
    assert _only_feature_scope(calls)


async def test_only_declared_fields_are_stored(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """Stored files hold name, MIME type, modified time and link — no owners or descriptions."""
    account_id, ids = await _connected(api, emulator, run_worker, 4)
    stored = await _stored(deps, account_id)
    full = {f["id"]: f for f in drive.files(emulator.state, EMAIL)}
    assert stored and set(stored) <= set(full)
    assert EMAIL in repr(full) and "Private note" in repr(full)  # what must not be kept
    for file_id, content in stored.items():
        assert set(content) == set(FEATURE.fields["file"])
        assert content == {"name": full[file_id]["name"],
                           "mime_type": full[file_id]["mimeType"],
                           "modified_time": full[file_id]["modifiedTime"],
                           "link": full[file_id]["webViewLink"]}
    assert EMAIL not in repr(stored) and "Private note" not in repr(stored)


async def test_incremental_sync_applies_adds_renames_deletes_and_unshares(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """changes.list stores new and renamed files and drops deleted, trashed and unshared ones."""
    account_id, ids = await _connected(api, emulator, run_worker, 6)
    state = emulator.state
    added = drive.add_file(state, EMAIL, "Chat upload.pdf")
    drive.add_file(state, EMAIL, "Not for the app.pdf", opened_by_app=False)
    drive.rename_file(state, EMAIL, ids[0], "Renamed")
    drive.delete_file(state, EMAIL, ids[1])
    drive.unshare_file(state, EMAIL, ids[2])
    drive.trash_file(state, EMAIL, ids[3])
    state.calls(clear=True)
    await sync_again(deps, account_id, FEATURE.name, run_worker)

    stored = await _stored(deps, account_id)
    assert sorted(stored) == sorted([added, ids[0], ids[4], ids[5]])
    assert stored[ids[0]]["name"] == "Renamed"
    assert stored[added]["name"] == "Chat upload.pdf"
    calls = state.calls()
    assert [c["method"] for c in calls] == ["drive.changes.list"] * 2  # 5 changes, 3 a page
    assert _only_feature_scope(calls)
    synced = await sync_state(deps, account_id, FEATURE.name)
    assert synced.status == "ok"
    assert synced.cursor == str(drive.data(state, EMAIL).start_page_token)


async def test_an_incremental_run_without_changes_keeps_everything(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """With nothing changed, one changes.list call returns the same token and nothing moves."""
    account_id, ids = await _connected(api, emulator, run_worker, 3)
    cursor = (await sync_state(deps, account_id, FEATURE.name)).cursor
    emulator.state.calls(clear=True)
    await sync_again(deps, account_id, FEATURE.name, run_worker)
    assert sorted(await _stored(deps, account_id)) == sorted(ids)
    assert [c["method"] for c in emulator.state.calls()] == ["drive.changes.list"]
    assert (await sync_state(deps, account_id, FEATURE.name)).cursor == cursor


async def test_expired_page_token_falls_back_to_a_full_sync_that_deletes_missing(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """A refused page token leads to a full resync that removes files no longer there."""
    account_id, ids = await _connected(api, emulator, run_worker, 5)
    drive.expire_page_tokens(emulator.state, EMAIL)
    drive.delete_file(emulator.state, EMAIL, ids[2])
    drive.unshare_file(emulator.state, EMAIL, ids[3])
    epoch_before = (await sync_state(deps, account_id, FEATURE.name)).epoch
    emulator.state.calls(clear=True)
    await sync_again(deps, account_id, FEATURE.name, run_worker)

    assert sorted(await _stored(deps, account_id)) == sorted([ids[0], ids[1], ids[4]])
    state = await sync_state(deps, account_id, FEATURE.name)
    assert state.status == "ok" and state.stage == "incremental"
    assert state.epoch == epoch_before + 1
    assert state.cursor == str(drive.data(emulator.state, EMAIL).start_page_token)
    calls = emulator.state.calls()
    assert [(c["method"], c["status"]) for c in calls[:2]] == [
        ("drive.changes.list", 400), ("drive.changes.getStartPageToken", 200)]
    assert _only_feature_scope(calls)


async def test_a_shared_drive_file_opened_with_the_app_is_synced_and_its_removal_seen(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """A file in a shared drive that the user opened with the app is listed only for a
    caller that supports all drives; the sync is such a caller, and sees it go."""
    issued = emulator.state.add_user(EMAIL, [], [DRIVE_FILE])
    ids = drive.seed_drive(emulator.state, issued.user, 2, 1)
    shared = drive.add_file(emulator.state, issued.user, "Team plan", drive_id="0ATeamDrive")
    account_id = await connect(api, issued.refresh_token)
    await run_worker()
    assert sorted(await _stored(deps, account_id)) == sorted([*ids, shared])
    drive.delete_file(emulator.state, issued.user, shared)
    await sync_again(deps, account_id, FEATURE.name, run_worker)
    assert sorted(await _stored(deps, account_id)) == sorted(ids)
    assert "drive.changes.list" in [c["method"] for c in emulator.state.calls()]
