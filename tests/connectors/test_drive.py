"""Drive files and changes, reduced to the fields the shared_files feature shows."""

from __future__ import annotations

from typing import Any

import pytest

from gwsync.connectors import client
from gwsync.connectors.drive import (
    KIND,
    SharedFilesConnector,
    change_to_record,
    pack_checkpoint,
    to_page,
    to_record,
    unpack_checkpoint,
)
from gwsync.connectors.endpoints import Endpoints
from gwsync.connectors.errors import UnknownGoogleError
from gwsync.domain.features import FEATURES
from gwsync.domain.pages import Page, Removal, Upsert
from gwsync.emulator import drive
from tests.conftest import Emulator

FILE_ID = "1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms"


def drive_file(**extra: Any) -> dict[str, Any]:
    """A full drive#file, with owners, a description and a size the feature must not keep."""
    return {
        "kind": "drive#file", "id": FILE_ID, "name": "Budget.xlsx",
        "mimeType": "application/vnd.google-apps.spreadsheet",
        "modifiedTime": "2024-01-08T09:00:00.000Z", "trashed": False,
        "webViewLink": f"https://docs.google.com/spreadsheets/d/{FILE_ID}/edit",
        "description": "Salaries of the whole team", "size": "48213",
        "owners": [{"displayName": "Dana", "emailAddress": "dana@example.com"}],
        **extra,
    }


def test_a_file_maps_to_name_type_time_and_link() -> None:
    """A file is stored as its name, MIME type, modified time and web link."""
    assert to_record(drive_file()) == Upsert(KIND, FILE_ID, {
        "name": "Budget.xlsx",
        "mime_type": "application/vnd.google-apps.spreadsheet",
        "modified_time": "2024-01-08T09:00:00.000Z",
        "link": f"https://docs.google.com/spreadsheets/d/{FILE_ID}/edit",
    })


def test_stored_fields_are_the_features_declared_fields() -> None:
    """The keys of a stored file are exactly the shared_files feature's declared fields."""
    record = to_record(drive_file())
    assert isinstance(record, Upsert) and record.kind == "file"
    assert tuple(record.content) == FEATURES["shared_files"].fields["file"]


def test_owners_descriptions_and_sizes_are_not_kept() -> None:
    """Owner emails, descriptions and sizes never reach the record."""
    raw, content = repr(drive_file()), repr(to_record(drive_file()))
    for absent in ("dana@example.com", "Salaries", "48213", "Dana"):
        assert absent in raw and absent not in content, absent


def test_a_trashed_file_is_a_removal() -> None:
    """A file in the trash is removed from the store."""
    assert to_record(drive_file(trashed=True)) == Removal(KIND, FILE_ID)


def test_a_file_without_id_is_unknown() -> None:
    """A file without an id is an answer we cannot use."""
    with pytest.raises(UnknownGoogleError):
        to_record({"name": "x"})


def test_a_removed_change_is_a_removal() -> None:
    """``removed: true`` (deleted or no longer available to the app) removes the file."""
    change = {"changeType": "file", "fileId": FILE_ID, "removed": True}
    assert change_to_record(change) == Removal(KIND, FILE_ID)


def test_a_changed_file_is_an_upsert_of_its_current_state() -> None:
    """A change with its file stores the file's current fields."""
    change = {"changeType": "file", "fileId": FILE_ID, "removed": False,
              "file": drive_file(name="Renamed")}
    record = change_to_record(change)
    assert isinstance(record, Upsert) and record.content["name"] == "Renamed"


def test_a_trashed_change_is_a_removal() -> None:
    """A change that moved the file to the trash removes it."""
    change = {"fileId": FILE_ID, "removed": False, "file": drive_file(trashed=True)}
    assert change_to_record(change) == Removal(KIND, FILE_ID)


def test_shared_drive_changes_are_ignored() -> None:
    """Changes of changeType ``drive`` (shared drives) carry no file and are skipped."""
    assert change_to_record({"changeType": "drive", "driveId": "0AB", "removed": False}) is None


@pytest.mark.parametrize("change", [
    {"changeType": "file", "removed": True},
    {"changeType": "file", "fileId": FILE_ID, "removed": False},
])
def test_malformed_changes_are_unknown(change: dict[str, Any]) -> None:
    """A change without fileId, or an unremoved one without its file, is refused."""
    with pytest.raises(UnknownGoogleError):
        change_to_record(change)


def test_pages_split_upserts_from_removals() -> None:
    """A page keeps upserts and removals apart and drops ignored changes."""
    page = to_page([to_record(drive_file()), Removal(KIND, "gone"), None])
    assert page == Page(upserts=[to_record(drive_file())], removals=[Removal(KIND, "gone")])


def test_checkpoints_round_trip_and_garbage_restarts() -> None:
    """A full sync's checkpoint keeps its start token; anything unreadable starts afresh."""
    assert unpack_checkpoint(pack_checkpoint("42", "tok")) == ("42", "tok")
    for garbage in (None, "", "not json", "[]", '{"start": 1, "files": "x"}'):
        assert unpack_checkpoint(garbage) is None


async def test_a_change_during_a_resumed_crawl_reaches_the_next_incremental_run(
    emulator: Emulator,
) -> None:
    """The start token is taken before the crawl and survives a resume, so no change is lost."""
    issued = emulator.state.add_user("dana@example.com", [], [FEATURES["shared_files"].scope])
    ids = drive.seed_drive(emulator.state, issued.user, 4)
    token = emulator.state.mint_access_token(issued.refresh_token)
    connector = SharedFilesConnector(
        client.service("drive", token, Endpoints.at(emulator.url), 5), page_size=2)
    try:
        first = await anext(connector.full(None))
        assert first.api_calls == 2 and first.next_cursor is None
        drive.rename_file(emulator.state, issued.user, ids[0], "Renamed mid-crawl")
        rest = [f async for f in connector.full(first.next_page_token)]
        cursor = rest[-1].next_cursor
        assert cursor is not None and rest[-1].next_page_token is None
        changes = [f async for f in connector.incremental(cursor)]
    finally:
        connector.close()
    assert [u.content["name"] for u in first.page.upserts][0] != "Renamed mid-crawl"
    assert [u.content["name"] for c in changes for u in c.page.upserts] == ["Renamed mid-crawl"]
    assert [c["method"] for c in emulator.state.calls()] == [
        "drive.changes.getStartPageToken", "drive.files.list", "drive.files.list",
        "drive.changes.list"]
