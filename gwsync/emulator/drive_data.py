"""One user's Drive in the emulator: files, the change log, and what an app may see.

Drive numbers a user's changes; a page token of ``changes.list`` is the number of the
first change it has not seen yet (which is why Google can say "the page token doesn't
expire"). The emulator does the same, with decimal strings as Google's look.

``drive.file`` visibility: an app holding only the per-file scope sees the files the user
created with or opened in the app, nothing else (docs/google.md §4.3, "[inference; verify]"
for listings). Each file carries ``opened_by_app``; a file that stops being visible to
the app (unshared, deleted) shows up in that app's change list as ``removed``, and changes
to files the app never saw are not shown to it at all.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gwsync.emulator.clock import iso
from gwsync.emulator.errors import NotFoundError
from gwsync.emulator.state import EmulatorState

API = "drive"
GOOGLE_DOC = "application/vnd.google-apps.document"
GOOGLE_SHEET = "application/vnd.google-apps.spreadsheet"
#: Seeded files are dated from here on, one hour apart, so seeds are reproducible.
_SEED_EPOCH = datetime(2024, 1, 8, 9, 0, tzinfo=UTC).timestamp()
_LINKS = {
    GOOGLE_DOC: "https://docs.google.com/document/d/{id}/edit?usp=drivesdk",
    GOOGLE_SHEET: "https://docs.google.com/spreadsheets/d/{id}/edit?usp=drivesdk",
}
_FILE_LINK = "https://drive.google.com/file/d/{id}/view?usp=drivesdk"


@dataclass
class DriveFile:
    """A file's metadata; ``description``, ``owners`` and ``size`` exist to test minimisation."""

    id: str
    name: str
    mime_type: str
    created_time: float
    modified_time: float
    owner_email: str
    #: Creation number: listings are in this order and page tokens point into it.
    serial: int = 0
    opened_by_app: bool = True
    trashed: bool = False
    description: str = ""
    size: int | None = None
    version: int = 1
    #: The shared drive holding the file; None for My Drive. Shared-drive items are left
    #: out of listings and changes unless the caller asks for all drives (§9.10).
    drive_id: str | None = None

    def render(self) -> dict[str, Any]:
        """The full ``drive#file`` resource (before any ``fields`` mask)."""
        body: dict[str, Any] = {
            "kind": "drive#file",
            "id": self.id,
            "name": self.name,
            "mimeType": self.mime_type,
            "starred": False,
            "trashed": self.trashed,
            "explicitlyTrashed": self.trashed,
            "version": str(self.version),
            "webViewLink": _LINKS.get(self.mime_type, _FILE_LINK).format(id=self.id),
            "createdTime": iso(self.created_time),
            "modifiedTime": iso(self.modified_time),
            "ownedByMe": True,
            "isAppAuthorized": self.opened_by_app,
            "owners": [{
                "kind": "drive#user",
                "displayName": self.owner_email.split("@")[0],
                "emailAddress": self.owner_email,
                "me": True,
                "permissionId": hashlib.sha1(self.owner_email.encode(),
                                             usedforsecurity=False).hexdigest()[:20],
            }],
        }
        if self.description:
            body["description"] = self.description
        if self.size is not None:  # Google Docs have no size (no blob content)
            body["size"] = str(self.size)
        if self.drive_id is not None:  # a shared drive owns its files: no owners, a driveId
            body.update(driveId=self.drive_id, ownedByMe=False)
            del body["owners"]
        return body


@dataclass(frozen=True)
class Change:
    """One entry of the change log: which file, when, and who could see it either side."""

    seq: int
    file_id: str
    time: float
    app_visible_before: bool
    app_visible_after: bool


@dataclass
class DriveData:
    """One user's files and change log (kept via ``EmulatorState.api_data``)."""

    owner_email: str
    id_salt: str
    files: dict[str, DriveFile] = field(default_factory=dict)
    log: list[Change] = field(default_factory=list)
    #: Number of the last change; the start page token is the next one.
    seq: int = 0
    #: Page tokens below this are refused (see :meth:`expire_page_tokens`).
    first_valid_token: int = 1
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    # -- change numbering ------------------------------------------------------------

    @property
    def start_page_token(self) -> int:
        return self.seq + 1

    def token_valid(self, token: int) -> bool:
        return self.first_valid_token <= token <= self.start_page_token

    def expire_page_tokens(self) -> None:
        """Make every token issued so far invalid; tokens issued afterwards work."""
        self.seq += 1
        self.first_valid_token = self.start_page_token

    # -- mutations -------------------------------------------------------------------

    def _new_id(self) -> tuple[str, int]:
        serial = next(self._ids)
        digest = hashlib.sha256(f"{self.id_salt}:{serial}".encode()).digest()
        return "1" + base64.urlsafe_b64encode(digest).decode()[:32], serial

    def _record(self, file_id: str, now: float, before: bool, after: bool) -> None:
        self.seq += 1
        self.log.append(Change(self.seq, file_id, now, before, after))

    def get(self, file_id: str) -> DriveFile:
        try:
            return self.files[file_id]
        except KeyError:
            raise NotFoundError("file", file_id) from None

    def add(self, name: str, mime_type: str, now: float, *, opened_by_app: bool = True,
            description: str = "", size: int | None = None,
            created_time: float | None = None, drive_id: str | None = None) -> str:
        """Create a file (in the shared drive `drive_id`, if given); returns its id."""
        file_id, serial = self._new_id()
        file = DriveFile(file_id, name, mime_type, created_time or now, created_time or now,
                         self.owner_email, serial, opened_by_app, description=description,
                         size=size, drive_id=drive_id)
        self.files[file.id] = file
        self._record(file.id, now, False, opened_by_app)
        return file.id

    def update(self, file_id: str, now: float, **changes: Any) -> None:
        """Change ``name``, ``description``, ``trashed`` or ``opened_by_app`` of a file."""
        allowed = {"name", "description", "trashed", "opened_by_app"}
        if not changes or set(changes) - allowed:
            raise ValueError(f"changes must be some of {sorted(allowed)}")
        file = self.get(file_id)
        before = file.opened_by_app
        for key, value in changes.items():
            setattr(file, key, value)
        if {"name", "description", "trashed"} & set(changes):
            file.modified_time, file.version = now, file.version + 1
        self._record(file_id, now, before, file.opened_by_app)

    def delete(self, file_id: str, now: float) -> None:
        """Delete a file for good (not to the trash)."""
        file = self.get(file_id)
        del self.files[file_id]
        self._record(file_id, now, file.opened_by_app, False)

    # -- what an app sees ------------------------------------------------------------

    def listed(self, app_only: bool, trashed: bool | None,
               all_drives: bool = False) -> list[DriveFile]:
        """Files the caller may see, in creation order, optionally by trashed state;
        shared-drive files only when the caller asked for all drives."""
        return [f for f in self.files.values()
                if (f.opened_by_app or not app_only)
                and (all_drives or f.drive_id is None)
                and (trashed is None or f.trashed == trashed)]

    def in_shared_drive(self, file_id: str) -> bool:
        """Whether the file (or what is left of it) lives in a shared drive."""
        file = self.files.get(file_id)
        return file is not None and file.drive_id is not None

    def changes_since(self, token: int, app_only: bool) -> list[Change]:
        """The caller's changes from ``token`` on: the latest per file, in change order.

        An app with only ``drive.file`` gets a file's changes while it could see the file,
        including the one that took the file away from it.
        """
        latest: dict[str, Change] = {}
        for change in self.log:
            if change.seq < token:
                continue
            if not app_only or change.app_visible_before or change.app_visible_after:
                latest.pop(change.file_id, None)
                latest[change.file_id] = change
        return list(latest.values())

    def visible(self, file_id: str, app_only: bool) -> DriveFile | None:
        """The file if it exists and the caller may see it now."""
        file = self.files.get(file_id)
        return file if file is not None and (file.opened_by_app or not app_only) else None


def data(state: EmulatorState, user_key: str) -> DriveData:
    """The user's Drive, created empty on first use."""
    factory: Callable[[], DriveData] = lambda: DriveData(  # noqa: E731
        owner_email=state.user(user_key).email, id_salt=user_key)
    return state.api_data(API, user_key, factory)


_NAMES = ("Quarterly plan", "Design notes", "Budget", "Team photo", "Contract draft",
          "Meeting minutes", "Roadmap", "Invoice")
_KINDS = ((GOOGLE_DOC, "", None), (GOOGLE_SHEET, "", None),
          ("application/pdf", ".pdf", 48_213), ("image/png", ".png", 1_204_113))


def seed_drive(state: EmulatorState, user_key: str, n_files: int, others: int = 0) -> list[str]:
    """Add ``n_files`` files opened with the app and ``others`` it never saw; returns the former.

    The same arguments always give the same names, types, times and ids (for a user key).
    Every file has a private description, an owner email and (for blobs) a size, none of
    which the shared_files feature may store.
    """
    drive, ids = data(state, user_key), []
    for i in range(n_files + others):
        mime, ext, size = _KINDS[i % len(_KINDS)]
        created = _SEED_EPOCH + i * 3600
        file_id = drive.add(f"{_NAMES[i % len(_NAMES)]} {i}{ext}", mime, state.now(),
                            opened_by_app=i < n_files, description=f"Private note #{i}",
                            size=size, created_time=created)
        if i < n_files:
            ids.append(file_id)
    return ids
