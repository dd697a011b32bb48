"""Files shared into chats, from Drive v3 under ``drive.file``: files.list and changes.

A full sync asks for the start page token *before* listing, so whatever changes during
the crawl is replayed by the next incremental run instead of being lost. Incremental
runs read ``changes.list`` from the stored token; ``removed`` (deleted, or no longer
available to the app) and trashed files are removals. Only name, MIME type, modified
time and link are requested (``fields``) and stored — never contents, owners or sizes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from gwsync.connectors.base import Fetched
from gwsync.connectors.client import execute
from gwsync.connectors.errors import UnknownGoogleError
from gwsync.connectors.quota import UNMETERED, Budget
from gwsync.domain.features import FEATURES, Feature
from gwsync.domain.pages import Page, Removal, Upsert

if TYPE_CHECKING:  # the per-API resource types exist only in the stubs
    from googleapiclient._apis.drive.v3 import DriveResource

KIND = "file"
FILE_FIELDS = "id,name,mimeType,modifiedTime,webViewLink,trashed"
LIST_FIELDS = f"nextPageToken,files({FILE_FIELDS})"
CHANGE_FIELDS = ("nextPageToken,newStartPageToken,"
                 f"changes(changeType,fileId,removed,file({FILE_FIELDS}))")

#: Every Drive call supports shared drives, and every listing includes their items: a
#: shared-drive file opened with the app is otherwise invisible, and so is its removal
#: (docs/google.md §9.10).
SUPPORTS_ALL_DRIVES: dict[str, Any] = {"supportsAllDrives": True}
ALL_DRIVES: dict[str, Any] = {**SUPPORTS_ALL_DRIVES, "includeItemsFromAllDrives": True}


def to_record(file: dict[str, Any]) -> Upsert | Removal:
    """A file resource as the stored fields, or a removal when it is in the trash."""
    file_id = file.get("id")
    if not isinstance(file_id, str) or not file_id:
        raise UnknownGoogleError("a file without id")
    if file.get("trashed"):
        return Removal(KIND, file_id)
    return Upsert(KIND, file_id, {
        "name": file.get("name", ""),
        "mime_type": file.get("mimeType", ""),
        "modified_time": file.get("modifiedTime", ""),
        "link": file.get("webViewLink", ""),
    })


def change_to_record(change: dict[str, Any]) -> Upsert | Removal | None:
    """A ``drive#change``: removed → Removal; a shared-drive change (no file) → ignored."""
    if change.get("changeType", "file") != "file":
        return None
    file_id = change.get("fileId")
    if not isinstance(file_id, str) or not file_id:
        raise UnknownGoogleError("a file change without fileId")
    if change.get("removed"):
        return Removal(KIND, file_id)
    if not isinstance(change.get("file"), dict):
        raise UnknownGoogleError("a file change without its file")
    return to_record({**change["file"], "id": file_id})


def to_page(records: list[Upsert | Removal | None]) -> Page:
    return Page(
        upserts=[r for r in records if isinstance(r, Upsert)],
        removals=[r for r in records if isinstance(r, Removal)],
    )


def pack_checkpoint(start_page_token: str, files_page_token: str) -> str:
    """A full sync's checkpoint carries the start token, so a resumed crawl keeps it."""
    return json.dumps({"start": start_page_token, "files": files_page_token})


def unpack_checkpoint(checkpoint: str | None) -> tuple[str, str] | None:
    """The (start token, files.list token) pair, or None to begin the crawl afresh."""
    try:
        value = json.loads(checkpoint or "")
        start, files = value["start"], value["files"]
    except (ValueError, TypeError, KeyError):
        return None
    return (start, files) if isinstance(start, str) and isinstance(files, str) else None


class SharedFilesConnector:
    feature: Feature = FEATURES["shared_files"]

    def __init__(self, service: DriveResource, page_size: int, budget: Budget = UNMETERED) -> None:
        self._service = service
        self._page_size = page_size
        self._budget = budget

    async def _start_page_token(self) -> str:
        body = await execute(self._service.changes().getStartPageToken(
            **SUPPORTS_ALL_DRIVES).execute, quota=self._budget)
        token = body.get("startPageToken")
        if not isinstance(token, str) or not token:
            raise UnknownGoogleError("getStartPageToken without startPageToken")
        return token

    async def full(self, page_token: str | None) -> AsyncIterator[Fetched]:
        """Every file the app may see; the last page carries the start page token."""
        resumed = unpack_checkpoint(page_token)
        start, files_token = resumed if resumed else (await self._start_page_token(), None)
        calls = 0 if resumed else 1
        while True:
            params: dict[str, Any] = {"pageSize": self._page_size, "q": "trashed = false",
                                      "spaces": "drive", "fields": LIST_FIELDS,
                                      **ALL_DRIVES}
            if files_token:
                params["pageToken"] = files_token
            body = await execute(self._service.files().list(**params).execute,
                                 quota=self._budget)
            files_token = body.get("nextPageToken")
            page = to_page([to_record(f) for f in body.get("files", [])])
            checkpoint = pack_checkpoint(start, files_token) if files_token else None
            yield Fetched(page, checkpoint, None if files_token else start, calls + 1)
            calls = 0
            if not files_token:
                return

    async def incremental(self, cursor: str) -> AsyncIterator[Fetched]:
        """Changes since ``cursor``.

        Every page's ``nextPageToken`` is itself a valid cursor (Drive change tokens are
        positions in the user's change log), so each page checkpoints progress.
        """
        token = cursor
        while True:
            body = await execute(self._service.changes().list(
                pageToken=token, pageSize=self._page_size, includeRemoved=True,
                spaces="drive", fields=CHANGE_FIELDS, **ALL_DRIVES).execute,
                quota=self._budget)
            next_token = body.get("nextPageToken")
            new_start = body.get("newStartPageToken")
            if not next_token and not new_start:
                raise UnknownGoogleError("changes.list without a next or new start token")
            page = to_page([change_to_record(c) for c in body.get("changes", [])])
            yield Fetched(page, None, next_token or new_start)
            if not next_token:
                return
            token = next_token

    def close(self) -> None:
        self._service.close()
