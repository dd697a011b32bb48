"""The Drive emulator driven by google-api-python-client, as the shared_files connector does."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import google.oauth2.credentials
import google_auth_httplib2
import httplib2
import pytest
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from gwsync.emulator import drive
from gwsync.emulator.partial import InvalidMask, parse
from tests.emulator.support import CONTACTS_RO, Emulator

DRIVE_FILE = "https://www.googleapis.com/auth/drive.file"
DRIVE_RO = "https://www.googleapis.com/auth/drive.readonly"
FILE_FIELDS = "id,name,mimeType,modifiedTime,webViewLink"


def _drive(url: str, access_token: str, sync_http: httplib2.Http) -> Any:
    """A Drive v3 service aimed at the emulator, built from the bundled discovery document."""
    creds = google.oauth2.credentials.Credentials(token=access_token)
    return build("drive", "v3", http=google_auth_httplib2.AuthorizedHttp(creds, http=sync_http),
                 client_options={"api_endpoint": f"{url}/drive/v3/"},
                 static_discovery=True, cache_discovery=False)


def _user(emulator: Emulator, scopes: list[str], n_files: int = 0,
          others: int = 0) -> tuple[str, str, list[str]]:
    """A user with ``n_files`` app files and ``others`` files; returns (user, token, app ids)."""
    issued = emulator.state.add_user("dana@example.com", [], scopes)
    ids = drive.seed_drive(emulator.state, issued.user, n_files, others)
    return issued.user, emulator.state.mint_access_token(issued.refresh_token), ids


def _list_all(service: Any, **params: Any) -> tuple[list[dict[str, Any]], int]:
    files: list[dict[str, Any]] = []
    pages, token = 0, None
    while True:
        body = service.files().list(**params, **({"pageToken": token} if token else {})).execute()
        pages += 1
        files += body.get("files", [])
        token = body.get("nextPageToken")
        if not token:
            return files, pages


def _changes(service: Any, token: str, **params: Any) -> tuple[list[dict[str, Any]], str, int]:
    """Every change from ``token``; returns them, the new start page token and page count."""
    changes: list[dict[str, Any]] = []
    pages = 0
    while True:
        body = service.changes().list(pageToken=token, **params).execute()
        pages += 1
        changes += body.get("changes", [])
        if "newStartPageToken" in body:
            return changes, body["newStartPageToken"], pages
        token = body["nextPageToken"]


async def test_files_list_pages_with_a_fields_mask(
    emulator: Emulator, sync_http: httplib2.Http
) -> None:
    """files.list pages by pageSize and returns exactly the fields the mask selects."""
    _, token, ids = _user(emulator, [DRIVE_FILE], 7)
    service = _drive(emulator.url, token, sync_http)
    files, pages = await asyncio.to_thread(
        _list_all, service, pageSize=3, fields=f"nextPageToken,files({FILE_FIELDS})")
    assert pages == 3
    assert [f["id"] for f in files] == ids
    assert all(set(f) == set(FILE_FIELDS.split(",")) for f in files)
    assert files[0]["webViewLink"].startswith("https://docs.google.com/document/d/")


async def test_default_fields_and_star(emulator: Emulator, sync_http: httplib2.Http) -> None:
    """Without fields Drive's default set comes back; fields=* returns owners and descriptions."""
    _, token, _ = _user(emulator, [DRIVE_FILE], 3)
    service = _drive(emulator.url, token, sync_http)
    default = await asyncio.to_thread(service.files().list().execute)
    assert set(default) == {"kind", "incompleteSearch", "files"}  # all 3 on one page
    assert set(default["files"][0]) == {"kind", "id", "name", "mimeType"}
    full = await asyncio.to_thread(service.files().list(fields="*").execute)
    assert full["files"][2]["owners"][0]["emailAddress"] == "dana@example.com"
    assert full["files"][2]["description"] == "Private note #2"


async def test_an_unknown_field_is_refused(emulator: Emulator, sync_http: httplib2.Http) -> None:
    """A mask naming a field the File schema lacks is a 400 pointing at ``fields``."""
    _, token, _ = _user(emulator, [DRIVE_FILE], 1)
    service = _drive(emulator.url, token, sync_http)
    with pytest.raises(HttpError) as caught:
        await asyncio.to_thread(service.files().list(fields="files(id,colour)").execute)
    error = json.loads(caught.value.content)["error"]
    assert caught.value.resp.status == 400
    assert error["errors"][0]["location"] == "fields"
    assert error["errors"][0]["reason"] == "invalidParameter"


async def test_an_unsupported_query_is_refused(
    emulator: Emulator, sync_http: httplib2.Http
) -> None:
    """q is limited to ``trashed = true|false``; anything else is a 400 on ``q``."""
    _, token, _ = _user(emulator, [DRIVE_FILE], 1)
    service = _drive(emulator.url, token, sync_http)
    with pytest.raises(HttpError) as caught:
        await asyncio.to_thread(service.files().list(q="name contains 'x'").execute)
    assert caught.value.resp.status == 400
    assert json.loads(caught.value.content)["error"]["errors"][0]["location"] == "q"


async def test_trashed_files_are_filtered_by_q(
    emulator: Emulator, sync_http: httplib2.Http
) -> None:
    """``q=trashed = false`` leaves out trashed files; ``trashed = true`` lists only them."""
    user, token, ids = _user(emulator, [DRIVE_FILE], 3)
    drive.trash_file(emulator.state, user, ids[1])
    service = _drive(emulator.url, token, sync_http)
    live, _ = await asyncio.to_thread(_list_all, service, q="trashed = false")
    trashed, _ = await asyncio.to_thread(_list_all, service, q="trashed = true")
    assert [f["id"] for f in live] == [ids[0], ids[2]]
    assert [f["id"] for f in trashed] == [ids[1]]


async def test_drive_file_sees_only_the_apps_files(
    emulator: Emulator, sync_http: httplib2.Http
) -> None:
    """With drive.file only the files opened with the app are listed; drive.readonly sees all."""
    user, token, ids = _user(emulator, [DRIVE_FILE, DRIVE_RO], 2, others=3)
    issued = emulator.state.issue_grant(user, [DRIVE_FILE])
    narrow = emulator.state.mint_access_token(issued.refresh_token)
    narrow_files, _ = await asyncio.to_thread(
        _list_all, _drive(emulator.url, narrow, sync_http))
    wide_files, _ = await asyncio.to_thread(_list_all, _drive(emulator.url, token, sync_http))
    assert [f["id"] for f in narrow_files] == ids
    assert len(wide_files) == 5


async def test_start_page_token_then_changes_to_new_start_page_token(
    emulator: Emulator, sync_http: httplib2.Http
) -> None:
    """Changes after getStartPageToken arrive paged, the latest per file, ending in a new token."""
    user, token, ids = _user(emulator, [DRIVE_FILE], 3)
    service = _drive(emulator.url, token, sync_http)
    start = await asyncio.to_thread(service.changes().getStartPageToken().execute)
    assert start["kind"] == "drive#startPageToken"
    drive.rename_file(emulator.state, user, ids[0], "First")
    drive.rename_file(emulator.state, user, ids[0], "Second")
    drive.delete_file(emulator.state, user, ids[1])
    added = drive.add_file(emulator.state, user, "New.pdf")
    changes, new_start, pages = await asyncio.to_thread(
        _changes, service, start["startPageToken"], pageSize=2,
        fields=f"nextPageToken,newStartPageToken,changes(fileId,removed,time,file({FILE_FIELDS}))")
    assert pages == 2
    assert [(c["fileId"], c["removed"]) for c in changes] == [
        (ids[0], False), (ids[1], True), (added, False)]
    assert changes[0]["file"]["name"] == "Second" and "file" not in changes[1]
    again, newer, _ = await asyncio.to_thread(_changes, service, new_start)
    assert again == [] and newer == new_start


async def test_unsharing_appears_as_removed_to_drive_file_only(
    emulator: Emulator, sync_http: httplib2.Http
) -> None:
    """A file the app loses access to is removed for drive.file, still present for readonly."""
    user, wide, ids = _user(emulator, [DRIVE_FILE, DRIVE_RO], 2, others=1)
    narrow = emulator.state.mint_access_token(
        emulator.state.issue_grant(user, [DRIVE_FILE]).refresh_token)
    token = str(drive.data(emulator.state, user).start_page_token)
    drive.unshare_file(emulator.state, user, ids[0])
    other = next(f["id"] for f in drive.files(emulator.state, user) if not f["openedByApp"]
                 and f["id"] != ids[0])
    drive.rename_file(emulator.state, user, other, "Never seen by the app")
    narrow_changes, _, _ = await asyncio.to_thread(
        _changes, _drive(emulator.url, narrow, sync_http), token)
    wide_changes, _, _ = await asyncio.to_thread(
        _changes, _drive(emulator.url, wide, sync_http), token)
    assert [(c["fileId"], c["removed"]) for c in narrow_changes] == [(ids[0], True)]
    assert [(c["fileId"], c["removed"]) for c in wide_changes] == [
        (ids[0], False), (other, False)]


async def test_include_removed_false_hides_removals(
    emulator: Emulator, sync_http: httplib2.Http
) -> None:
    """includeRemoved=false leaves removed changes out."""
    user, token, ids = _user(emulator, [DRIVE_FILE], 2)
    service = _drive(emulator.url, token, sync_http)
    start = drive.data(emulator.state, user).start_page_token
    drive.delete_file(emulator.state, user, ids[0])
    drive.rename_file(emulator.state, user, ids[1], "Kept")
    changes, _, _ = await asyncio.to_thread(_changes, service, str(start), includeRemoved=False)
    assert [c["fileId"] for c in changes] == [ids[1]]


async def test_expired_page_token_is_a_400_on_page_token(
    emulator: Emulator, sync_http: httplib2.Http
) -> None:
    """After expiry an old page token gets 400 ``invalid`` at ``pageToken``; a new one works."""
    user, token, _ = _user(emulator, [DRIVE_FILE], 1)
    service = _drive(emulator.url, token, sync_http)
    old = (await asyncio.to_thread(service.changes().getStartPageToken().execute))[
        "startPageToken"]
    drive.expire_page_tokens(emulator.state, user)
    with pytest.raises(HttpError) as caught:
        await asyncio.to_thread(service.changes().list(pageToken=old).execute)
    assert caught.value.resp.status == 400
    assert json.loads(caught.value.content)["error"]["errors"][0] == {
        "domain": "global", "reason": "invalid", "message": "Invalid Value",
        "locationType": "parameter", "location": "pageToken"}
    new = (await asyncio.to_thread(service.changes().getStartPageToken().execute))[
        "startPageToken"]
    assert (await asyncio.to_thread(service.changes().list(pageToken=new).execute))[
        "newStartPageToken"] == new


async def test_a_foreign_files_page_token_is_refused(
    emulator: Emulator, sync_http: httplib2.Http
) -> None:
    """A files.list page token used with a different query is a 400 on ``pageToken``."""
    _, token, _ = _user(emulator, [DRIVE_FILE], 3)
    service = _drive(emulator.url, token, sync_http)
    first = await asyncio.to_thread(service.files().list(pageSize=1).execute)
    with pytest.raises(HttpError) as caught:
        await asyncio.to_thread(service.files().list(
            pageSize=1, q="trashed = true", pageToken=first["nextPageToken"]).execute)
    assert caught.value.resp.status == 400


async def test_a_token_without_a_drive_scope_gets_403(
    emulator: Emulator, sync_http: httplib2.Http
) -> None:
    """A contacts-only token is refused on every Drive method with insufficient scopes."""
    _, token, _ = _user(emulator, [CONTACTS_RO], 1)
    service = _drive(emulator.url, token, sync_http)
    for request in (service.files().list(), service.changes().getStartPageToken(),
                    service.changes().list(pageToken="1")):
        with pytest.raises(HttpError) as caught:
            await asyncio.to_thread(request.execute)
        assert caught.value.resp.status == 403
    assert [c["status"] for c in emulator.state.calls()] == []  # refused before the handler


async def test_every_call_is_logged_with_its_scopes(
    emulator: Emulator, sync_http: httplib2.Http
) -> None:
    """The call log names each Drive method and the scopes its token carried."""
    _, token, _ = _user(emulator, [DRIVE_FILE], 1)
    service = _drive(emulator.url, token, sync_http)
    start = await asyncio.to_thread(service.changes().getStartPageToken().execute)
    await asyncio.to_thread(service.files().list().execute)
    await asyncio.to_thread(service.changes().list(pageToken=start["startPageToken"]).execute)
    assert [(c["method"], c["scopes"]) for c in emulator.state.calls()] == [
        ("drive.changes.getStartPageToken", [DRIVE_FILE]),
        ("drive.files.list", [DRIVE_FILE]),
        ("drive.changes.list", [DRIVE_FILE])]


async def test_admin_routes_drive_the_world(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Admin routes add, rename, unshare and delete files, and expire page tokens."""
    user, _, _ = _user(emulator, [DRIVE_FILE])
    base = f"{emulator.url}/_emulator/users/{user}/drive"
    async with http.post(f"{base}/files", json={"name": "a.pdf", "size": 10}) as resp:
        assert resp.status == 201
        file_id = (await resp.json())["id"]
    async with http.patch(f"{base}/files/{file_id}", json={"name": "b.pdf"}) as resp:
        assert resp.status == 200
    async with http.post(f"{base}/files/{file_id}/unshare") as resp:
        assert resp.status == 200
    [file] = drive.files(emulator.state, user)
    assert file["name"] == "b.pdf" and file["openedByApp"] is False
    async with http.post(f"{base}/expire-page-tokens") as resp:
        assert (await resp.json())["startPageToken"] == "5"  # 3 changes, then a skip
    async with http.delete(f"{base}/files/{file_id}") as resp:
        assert resp.status == 200
    async with http.delete(f"{base}/files/{file_id}") as resp:
        assert resp.status == 404 and (await resp.json())["error"] == "unknown_file"
    async with http.patch(f"{base}/files/x", json={"colour": "red"}) as resp:
        assert resp.status == 400


def test_seed_is_deterministic() -> None:
    """The same seed gives the same files, ids included."""
    from gwsync.emulator.state import EmulatorState

    def seeded() -> list[dict[str, Any]]:
        state = EmulatorState(clock=lambda: 1_700_000_000.0)
        state.add_user("dana@example.com")
        drive.seed_drive(state, "dana@example.com", 4, others=2)
        return drive.files(state, "dana@example.com")

    assert seeded() == seeded()
    assert [f["openedByApp"] for f in seeded()] == [True] * 4 + [False] * 2


@pytest.mark.parametrize("mask", ["", "files(", "files)", "a,,b", "files(id))"])
def test_malformed_masks_do_not_parse(mask: str) -> None:
    """Unbalanced parentheses and empty names are refused by the fields parser."""
    with pytest.raises(InvalidMask):
        parse(mask)


def test_masks_merge_paths_and_groups() -> None:
    """``a/b`` and ``a(c)`` select both sub-fields of ``a``."""
    assert parse("a/b,a(c),d") == {"a": {"b": None, "c": None}, "d": None}


async def test_shared_drive_items_need_all_drives_support_to_be_listed(
    emulator: Emulator, sync_http: httplib2.Http
) -> None:
    """A shared-drive file the app opened is left out of files.list and changes.list
    unless the caller sets supportsAllDrives and includeItemsFromAllDrives; then it comes
    with its driveId and no owners, as a shared drive owns it."""
    user, token, ids = _user(emulator, [DRIVE_FILE], 1)
    service = _drive(emulator.url, token, sync_http)
    start = await asyncio.to_thread(
        service.changes().getStartPageToken(supportsAllDrives=True).execute)
    shared = drive.add_file(emulator.state, user, "Team plan", drive_id="0ATeamDrive")
    plain, _ = await asyncio.to_thread(_list_all, service, fields="files(id,driveId)")
    assert [f["id"] for f in plain] == ids
    every, _ = await asyncio.to_thread(_list_all, service, supportsAllDrives=True,
                                       includeItemsFromAllDrives=True,
                                       fields="files(id,driveId,owners)")
    assert {f["id"]: f.get("driveId") for f in every} == {ids[0]: None, shared: "0ATeamDrive"}
    assert "owners" not in next(f for f in every if f["id"] == shared)
    hidden, _, _ = await asyncio.to_thread(_changes, service, start["startPageToken"])
    seen, _, _ = await asyncio.to_thread(_changes, service, start["startPageToken"],
                                         supportsAllDrives=True, includeItemsFromAllDrives=True)
    assert hidden == [] and [c["fileId"] for c in seen] == [shared]
