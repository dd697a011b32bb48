"""Drive API v3 routes (``www.googleapis.com/drive/v3``): files.list and the changes feed.

Served at Google's paths: ``GET /drive/v3/files``, ``GET /drive/v3/changes/startPageToken``
and ``GET /drive/v3/changes``. What a caller sees depends on its token: one whose only
Drive scopes are per-file ones (``drive.file`` and the like) sees the files opened with the
app; ``drive``, ``drive.readonly``, ``drive.metadata(.readonly)`` see every file
(`drive_data` explains the model). ``fields`` partial responses follow `partial`.

Drive answers errors in its older JSON shape, ``{"error": {"code", "message", "errors":
[{"domain", "reason", "message", "locationType", "location"}]}}`` (handle-errors guide).

Admin routes live under ``/_emulator/users/{user}/drive/`` and wrap the plain Python
functions at the end of this module, which in-process tests call directly.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from gwsync.core import discovery
from gwsync.emulator import partial
from gwsync.emulator.admin import PREFIX
from gwsync.emulator.auth import ApiMethod, google_api
from gwsync.emulator.clock import iso
from gwsync.emulator.drive_data import (
    DriveData,
    DriveFile,
    data,
    seed_drive,
)
from gwsync.emulator.errors import GoogleApiError, error_item
from gwsync.emulator.grants import BearerToken
from gwsync.emulator.state import STATE_KEY, EmulatorState

__all__ = ["seed_drive", "setup"]

# ``rpc`` names are not published for Drive; these follow Google's naming pattern [unconfirmed].
_SERVICE = "drive.googleapis.com"
FILES_LIST = ApiMethod("drive.files.list", "google.apps.drive.v3.DriveFiles.List", _SERVICE)
START_PAGE_TOKEN = ApiMethod("drive.changes.getStartPageToken",
                             "google.apps.drive.v3.DriveChanges.GetStartPageToken", _SERVICE)
CHANGES_LIST = ApiMethod("drive.changes.list", "google.apps.drive.v3.DriveChanges.List",
                         _SERVICE)

#: Scopes that see the whole Drive; any other Drive scope sees only the app's files.
#: (``drive.appdata``/``drive.photos.readonly``/``drive.meet.readonly`` really see other
#: narrow sets; the emulator treats them like ``drive.file``.)
WHOLE_DRIVE = frozenset("https://www.googleapis.com/auth/" + s for s in (
    "drive", "drive.readonly", "drive.metadata", "drive.metadata.readonly"))
MAX_PAGE_SIZE = 1000
DEFAULT_CHANGES_PAGE_SIZE = 100
#: Drive's default partial responses when ``fields`` is absent (v3 "returns a default set").
_DEFAULT_FILE = "kind,id,name,mimeType"
DEFAULT_FIELDS = {
    "FileList": f"kind,nextPageToken,incompleteSearch,files({_DEFAULT_FILE})",
    "ChangeList": ("kind,nextPageToken,newStartPageToken,"
                   f"changes(kind,changeType,time,removed,fileId,file({_DEFAULT_FILE}))"),
    "StartPageToken": "kind,startPageToken",
}
_TRASHED_QUERY = re.compile(r"^\s*trashed\s*=\s*(true|false)\s*$")


def drive_error(code: int, reason: str, message: str,
                location: str | None = None) -> GoogleApiError:
    """An error in Drive's ``errors[]`` shape, pointing at the offending parameter."""
    item = error_item(reason, message)
    if location:
        item |= {"locationType": "parameter", "location": location}
    return GoogleApiError(code, message, errors=[item], rpc_status=False)


def invalid(location: str, message: str = "Invalid Value") -> GoogleApiError:
    """400 ``invalid`` for a bad parameter value.

    Also Drive's answer to an unknown or expired ``pageToken`` — observed in the field,
    not documented (the reference says change page tokens don't expire) [unconfirmed].
    gwsync treats it as "cursor expired" and falls back to a full sync.
    """
    return drive_error(400, "invalid", message, location)


# -- query parameters ----------------------------------------------------------------------


def _flag(query: MultiMapping[str], name: str, default: bool) -> bool:
    raw = query.get(name, str(default)).lower()
    if raw not in {"true", "false"}:
        raise invalid(name, f"Invalid value '{raw}'. Values must be true or false.")
    return raw == "true"


def _page_size(query: MultiMapping[str], default: int | None) -> int | None:
    """1–1000; larger values are coerced to 1000 (discovery doc); below 1 is refused."""
    raw = query.get("pageSize", "")
    if raw == "":
        return default
    if not raw.lstrip("-").isdigit() or int(raw) < 1:
        raise invalid("pageSize", f"Invalid value '{raw}'. Values must be within the "
                                  f"range: [1, {MAX_PAGE_SIZE}]")
    return min(int(raw), MAX_PAGE_SIZE)


def _spaces(query: MultiMapping[str]) -> bool:
    """Whether ``spaces`` includes ``drive`` (the emulator has no appDataFolder files)."""
    spaces = {s.strip() for s in query.get("spaces", "drive").split(",") if s.strip()}
    if not spaces or spaces - {"drive", "appDataFolder"}:
        raise invalid("spaces")
    return "drive" in spaces


def _mask(query: MultiMapping[str], schema: str) -> partial.Mask:
    """The ``fields`` mask for a response of ``schema``, validated against discovery."""
    try:
        mask = partial.parse(query.get("fields") or DEFAULT_FIELDS[schema])
        partial.check(mask, schema, discovery.document("drive")["schemas"])
    except partial.InvalidMask as exc:
        raise drive_error(400, "invalidParameter", str(exc), "fields") from None
    return mask


def _app_only(token: BearerToken) -> bool:
    return not token.scopes & WHOLE_DRIVE


def _drive(request: web.Request, token: BearerToken) -> DriveData:
    return data(request.app[STATE_KEY], token.user)


def _reply(body: dict[str, Any], query: MultiMapping[str], schema: str) -> web.Response:
    return web.json_response(partial.apply(body, _mask(query, schema)))


# -- files.list ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FilesCursor:
    """Where a ``files.list`` listing stands: after the file created ``after``-th.

    Pointing at a creation number (not an offset) keeps paging exact while files are
    added or deleted between pages.
    """

    user: str
    query: tuple[Any, ...]
    after: int


def _files_query(query: MultiMapping[str], token: BearerToken) -> tuple[Any, ...]:
    """``q`` (only ``trashed = true|false``), ``corpora`` and ``spaces``, as a fingerprint."""
    q = query.get("q", "")
    match = _TRASHED_QUERY.match(q)
    if q.strip() and match is None:
        raise invalid("q", "Invalid Value (the emulator supports only 'trashed = true|false')")
    if query.get("corpora", "user") not in {"user", "allDrives"}:
        raise invalid("corpora")
    trashed = None if match is None else match.group(1) == "true"
    return (trashed, _spaces(query), _app_only(token), _all_drives(query))


def _all_drives(query: MultiMapping[str]) -> bool:
    """Shared-drive items are included only when the caller supports them and asks for
    them (`supportsAllDrives` and `includeItemsFromAllDrives`, docs/google.md §9.10)."""
    return (_flag(query, "supportsAllDrives", False)
            and _flag(query, "includeItemsFromAllDrives", False))


def _files_page(request: web.Request, token: BearerToken) -> dict[str, Any]:
    query = request.query
    fingerprint = _files_query(query, token)
    state = request.app[STATE_KEY]
    trashed, in_drive, app_only, all_drives = fingerprint
    files = _drive(request, token).listed(app_only, trashed, all_drives) if in_drive else []
    if query.get("pageToken"):
        cursor = state.page_cursor(query["pageToken"])
        if not (isinstance(cursor, FilesCursor) and cursor.user == token.user
                and cursor.query == fingerprint):
            raise invalid("pageToken")
        files = [f for f in files if f.serial > cursor.after]
    # "If unspecified … the entire list of files for non-shared drives" (discovery doc).
    size = _page_size(query, None) or len(files)
    body: dict[str, Any] = {"kind": "drive#fileList", "incompleteSearch": False,
                            "files": [f.render() for f in files[:size]]}
    if len(files) > size:
        body["nextPageToken"] = state.new_page_token(
            FilesCursor(token.user, fingerprint, files[size - 1].serial))
    return body


@google_api(FILES_LIST)
async def files_list(request: web.Request, token: BearerToken) -> web.Response:
    """``GET /drive/v3/files``."""
    return _reply(_files_page(request, token), request.query, "FileList")


# -- changes -------------------------------------------------------------------------------


@google_api(START_PAGE_TOKEN)
async def start_page_token(request: web.Request, token: BearerToken) -> web.Response:
    """``GET /drive/v3/changes/startPageToken``: the number of the next change."""
    body = {"kind": "drive#startPageToken",
            "startPageToken": str(_drive(request, token).start_page_token)}
    return _reply(body, request.query, "StartPageToken")


def _change_body(drive: DriveData, file_id: str, time: float, app_only: bool) -> dict[str, Any]:
    file: DriveFile | None = drive.visible(file_id, app_only)
    body: dict[str, Any] = {"kind": "drive#change", "changeType": "file", "time": iso(time),
                            "removed": file is None, "fileId": file_id}
    if file is not None:
        body["file"] = file.render()
    return body


def _page_token(query: MultiMapping[str], drive: DriveData) -> int:
    raw = query.get("pageToken", "")
    if not raw:
        raise drive_error(400, "required", "Required parameter: pageToken", "pageToken")
    if not raw.isdigit() or not drive.token_valid(int(raw)):
        raise invalid("pageToken")
    return int(raw)


def _changes_page(request: web.Request, token: BearerToken) -> dict[str, Any]:
    query, drive, app_only = request.query, _drive(request, token), _app_only(token)
    start = _page_token(query, drive)
    size = _page_size(query, DEFAULT_CHANGES_PAGE_SIZE) or DEFAULT_CHANGES_PAGE_SIZE
    include_removed = _flag(query, "includeRemoved", True)
    changes = drive.changes_since(start, app_only) if _spaces(query) else []
    if not _all_drives(query):
        changes = [c for c in changes if not drive.in_shared_drive(c.file_id)]
    bodies = [_change_body(drive, c.file_id, c.time, app_only) for c in changes]
    kept = [(c, b) for c, b in zip(changes, bodies, strict=True)
            if include_removed or not b["removed"]]
    body: dict[str, Any] = {"kind": "drive#changeList",
                            "changes": [b for _, b in kept[:size]]}
    if len(kept) > size:
        body["nextPageToken"] = str(kept[size][0].seq)
    else:
        body["newStartPageToken"] = str(drive.start_page_token)
    return body


@google_api(CHANGES_LIST)
async def changes_list(request: web.Request, token: BearerToken) -> web.Response:
    """``GET /drive/v3/changes``: changes from ``pageToken`` on, the latest per file."""
    return _reply(_changes_page(request, token), request.query, "ChangeList")


# -- plain Python administration (tests, demo) ---------------------------------------------


def add_file(state: EmulatorState, user_key: str, name: str,
             mime_type: str = "application/pdf", **extra: Any) -> str:
    """Create a file (``opened_by_app``, ``description``, ``size`` optional); returns its id."""
    return data(state, user_key).add(name, mime_type, state.now(), **extra)


def rename_file(state: EmulatorState, user_key: str, file_id: str, name: str) -> None:
    data(state, user_key).update(file_id, state.now(), name=name)


def trash_file(state: EmulatorState, user_key: str, file_id: str) -> None:
    data(state, user_key).update(file_id, state.now(), trashed=True)


def delete_file(state: EmulatorState, user_key: str, file_id: str) -> None:
    data(state, user_key).delete(file_id, state.now())


def unshare_file(state: EmulatorState, user_key: str, file_id: str) -> None:
    """The file is no longer available to the app (its ``drive.file`` access is gone)."""
    data(state, user_key).update(file_id, state.now(), opened_by_app=False)


def share_file(state: EmulatorState, user_key: str, file_id: str) -> None:
    """The user opens the file with the app (e.g. through the Picker)."""
    data(state, user_key).update(file_id, state.now(), opened_by_app=True)


def expire_page_tokens(state: EmulatorState, user_key: str) -> None:
    """Every change page token issued so far is refused with 400 ``invalid``."""
    data(state, user_key).expire_page_tokens()


def files(state: EmulatorState, user_key: str) -> list[dict[str, Any]]:
    """Every file of the user, full resources, with ``openedByApp`` (for assertions)."""
    return [f.render() | {"openedByApp": f.opened_by_app}
            for f in data(state, user_key).files.values()]


# -- admin routes --------------------------------------------------------------------------

AdminHandler = Callable[[web.Request, EmulatorState, str], Awaitable[Any]]


def _admin(handler: AdminHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """JSON in and out (an unknown file is `admin_errors`' 404 ``unknown_file``)."""

    @functools.wraps(handler)
    async def route(request: web.Request) -> web.Response:
        result = await handler(request, request.app[STATE_KEY], request.match_info["user"])
        status = 201 if request.method == "POST" and "id" in result else 200
        return web.json_response(result, status=status)

    return route


async def _body(request: web.Request, allowed: set[str]) -> dict[str, Any]:
    body = await request.json() if request.can_read_body else {}
    if not isinstance(body, dict) or set(body) - allowed:
        raise ValueError(f"body must be an object with keys among {sorted(allowed)}")
    return body


@_admin
async def _add(request: web.Request, state: EmulatorState, user: str) -> dict[str, Any]:
    """``POST …/drive/files`` ``{name, mimeType?, openedByApp?, description?, size?}``."""
    body = await _body(request, {"name", "mimeType", "openedByApp", "description", "size"})
    if not isinstance(body.get("name"), str) or not body["name"]:
        raise ValueError("name is required")
    if body.get("size") is not None and not isinstance(body["size"], int):
        raise ValueError("size must be an integer")
    file_id = add_file(state, user, body["name"], str(body.get("mimeType", "application/pdf")),
                       opened_by_app=bool(body.get("openedByApp", True)),
                       description=str(body.get("description", "")), size=body.get("size"))
    return {"id": file_id}


@_admin
async def _update(request: web.Request, state: EmulatorState, user: str) -> dict[str, Any]:
    """``PATCH …/drive/files/{id}`` ``{name?, description?, trashed?, openedByApp?}``."""
    body = await _body(request, {"name", "description", "trashed", "openedByApp"})
    changes = {("opened_by_app" if k == "openedByApp" else k): v for k, v in body.items()}
    data(state, user).update(request.match_info["id"], state.now(), **changes)
    return {}


@_admin
async def _delete(request: web.Request, state: EmulatorState, user: str) -> dict[str, Any]:
    """``DELETE …/drive/files/{id}``: deleted for good."""
    delete_file(state, user, request.match_info["id"])
    return {}


@_admin
async def _unshare(request: web.Request, state: EmulatorState, user: str) -> dict[str, Any]:
    """``POST …/drive/files/{id}/unshare``: the app loses access to the file."""
    unshare_file(state, user, request.match_info["id"])
    return {}


@_admin
async def _expire(request: web.Request, state: EmulatorState, user: str) -> dict[str, Any]:
    """``POST …/drive/expire-page-tokens``."""
    expire_page_tokens(state, user)
    return {"startPageToken": str(data(state, user).start_page_token)}


@_admin
async def _list(request: web.Request, state: EmulatorState, user: str) -> dict[str, Any]:
    """``GET …/drive/files``: every file, as the whole-Drive view renders it."""
    return {"files": files(state, user)}


def setup(app: web.Application) -> None:
    """Register the Drive API routes and their admin routes."""
    app.router.add_get("/drive/v3/files", files_list)
    app.router.add_get("/drive/v3/changes/startPageToken", start_page_token)
    app.router.add_get("/drive/v3/changes", changes_list)
    admin = PREFIX + "/users/{user}/drive"
    app.router.add_get(admin + "/files", _list)
    app.router.add_post(admin + "/files", _add)
    app.router.add_patch(admin + "/files/{id}", _update)
    app.router.add_delete(admin + "/files/{id}", _delete)
    app.router.add_post(admin + "/files/{id}/unshare", _unshare)
    app.router.add_post(admin + "/expire-page-tokens", _expire)
