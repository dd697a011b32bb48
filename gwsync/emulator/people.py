"""People API routes (``people.googleapis.com``): ``people.connections.list``.

Served at Google's own path ``/v1/people/me/connections``. Paging and sync follow
the documented contract: a full sync with ``requestSyncToken=true`` carries
``nextSyncToken`` on its last page; ``syncToken`` returns everything added, changed
or deleted since (deletions as ``metadata.deleted``); tokens expire 7 days after the
full sync with reason ``EXPIRED_SYNC_TOKEN``.

A listing is snapshotted when its first page is requested (which people, in what
order, up to which change sequence); later pages render the current data of that
snapshot. Changes made while paging therefore show up in the next incremental sync
instead of being lost, which is the guarantee clients rely on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from gwsync.emulator.auth import ApiMethod, google_api
from gwsync.emulator.contacts import StoredPerson
from gwsync.emulator.errors import GoogleApiError, invalid_argument
from gwsync.emulator.grants import BearerToken
from gwsync.emulator.state import STATE_KEY, EmulatorState

LIST_CONNECTIONS = ApiMethod(
    id="people.people.connections.list",
    rpc="google.people.v1.PeopleService.ListConnections",
    service="people.googleapis.com",
)

#: The valid ``personFields`` paths, as listed in the discovery document.
PERSON_FIELDS = frozenset(
    "addresses ageRanges biographies birthdays calendarUrls clientData coverPhotos "
    "emailAddresses events externalIds genders imClients interests locales locations "
    "memberships metadata miscKeywords names nicknames occupations organizations "
    "phoneNumbers photos relations sipAddresses skills urls userDefined".split()
)
SORT_ORDERS = frozenset(
    {
        "LAST_MODIFIED_ASCENDING",
        "LAST_MODIFIED_DESCENDING",
        "FIRST_NAME_ASCENDING",
        "LAST_NAME_ASCENDING",
    }
)
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_FIELDS_DOC = "https://developers.google.com/people/api/rest/v1/people.connections/list"


def expired_sync_token(with_details: bool = True) -> GoogleApiError:
    """Google's answer to an expired sync token.

    HTTP 400 and the message are observed; the gRPC status ``FAILED_PRECONDITION`` is
    likely but unconfirmed; the reason ``EXPIRED_SYNC_TOKEN`` is documented, inside an
    ErrorInfo in ``details`` — which clients report missing from real answers
    (docs/google.md §9.9), so ``with_details=False`` leaves it out. Unknown sync tokens
    get the same answer here (Google's reply to those is unconfirmed), which leads a
    client to the one safe recovery: a full sync.
    """
    details = [{
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "EXPIRED_SYNC_TOKEN",
        "domain": "people.googleapis.com",
    }]
    return GoogleApiError(
        400,
        "Sync token is expired. Clear local cache and retry call without the sync token.",
        "FAILED_PRECONDITION",
        details=details if with_details else None,
    )


@dataclass(frozen=True)
class ListQuery:
    """The validated query parameters of one ``connections.list`` call."""

    fields: tuple[str, ...]
    page_size: int
    page_token: str | None
    sync_token: str | None
    request_sync_token: bool
    sort_order: str
    sources: tuple[str, ...]

    def fingerprint(self) -> tuple[Any, ...]:
        """What must equal the first call's parameters when paging (pageSize may vary)."""
        return (
            frozenset(self.fields),
            self.sync_token,
            self.request_sync_token,
            self.sort_order,
            frozenset(self.sources),
        )


@dataclass(frozen=True)
class Cursor:
    """A listing's snapshot, shared by all its page tokens."""

    user: str
    incarnation: str
    items: tuple[str, ...]
    fingerprint: tuple[Any, ...]
    upto_seq: int
    incremental: bool
    #: Time of the full sync the next sync token descends from; ``None`` = issue none.
    full_sync_at: float | None


def _person_fields(query: Mapping[str, str]) -> tuple[str, ...]:
    """``personFields`` (or the legacy ``requestMask.includeField``), validated."""
    raw = query.get("personFields") or query.get("requestMask.includeField") or ""
    paths = [p.strip().removeprefix("person.") for p in raw.split(",") if p.strip()]
    if not paths:
        raise invalid_argument(
            "personFields mask is required. Please specify one or more valid paths. "
            f"Valid paths are documented at {_FIELDS_DOC}."
        )
    for path in paths:
        if path not in PERSON_FIELDS:
            raise invalid_argument(
                f'Invalid personFields mask path: "{path}". '
                f"Valid paths are documented at {_FIELDS_DOC}."
            )
    return tuple(dict.fromkeys(paths))


def _page_size(query: Mapping[str, str]) -> int:
    """``pageSize``: 1–1000; unset or 0 means 100 (per the discovery document).

    Google's message for an out-of-range value is not documented; ours says what is wrong.
    """
    raw = query.get("pageSize", "")
    if raw == "":
        return DEFAULT_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        raise invalid_argument(f"Invalid value at 'page_size' (TYPE_INT32), \"{raw}\"") from None
    if size == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise invalid_argument(f"pageSize must be between 1 and {MAX_PAGE_SIZE}, got {size}.")
    return size


def _flag(query: Mapping[str, str], name: str) -> bool:
    """A boolean query parameter as Google's JSON/proto mapping accepts it."""
    raw = query.get(name, "false").lower()
    if raw not in {"true", "false", "1", "0"}:
        raise invalid_argument(f"Invalid value at '{name}' (TYPE_BOOL), \"{raw}\"")
    return raw in {"true", "1"}


def parse_query(query: MultiMapping[str]) -> ListQuery:
    """Validate a ``connections.list`` query string (standard params such as ``alt`` ignored)."""
    sort_order = query.get("sortOrder", "LAST_MODIFIED_ASCENDING")
    if sort_order not in SORT_ORDERS:
        raise invalid_argument(f"Invalid value at 'sort_order', \"{sort_order}\"")
    return ListQuery(
        fields=_person_fields(query),
        page_size=_page_size(query),
        page_token=query.get("pageToken") or None,
        sync_token=query.get("syncToken") or None,
        request_sync_token=_flag(query, "requestSyncToken"),
        sort_order=sort_order,
        sources=tuple(query.getall("sources", ())),
    )


def _sorted(people: list[StoredPerson], order: str) -> list[StoredPerson]:
    """Full-sync order; the default (last modified ascending) is the change order."""

    def name_part(person: StoredPerson, part: str) -> str:
        names = person.fields.get("names") or [{}]
        return str(names[0].get(part, "")).casefold()

    if order == "LAST_MODIFIED_DESCENDING":
        return people[::-1]
    if order == "FIRST_NAME_ASCENDING":
        return sorted(people, key=lambda p: name_part(p, "givenName"))
    if order == "LAST_NAME_ASCENDING":
        return sorted(people, key=lambda p: name_part(p, "familyName"))
    return people


def _start(state: EmulatorState, user_key: str, q: ListQuery) -> Cursor:
    """Snapshot a new listing: a full one, or the changes since a sync token."""
    user = state.user(user_key)
    book = user.contacts
    full_sync_at: float | None
    if q.sync_token:
        record = state.sync_token(user_key, q.sync_token)
        if record is None:
            raise expired_sync_token(state.cursors.expired_sync_token_details)
        people = book.changed(record.seq, book.seq)
        full_sync_at = record.full_sync_at
    else:
        people = _sorted(book.live(), q.sort_order)
        full_sync_at = state.now() if q.request_sync_token else None
    return Cursor(
        user=user_key,
        incarnation=user.incarnation,
        items=tuple(p.resource_name for p in people),
        fingerprint=q.fingerprint(),
        upto_seq=book.seq,
        incremental=q.sync_token is not None,
        full_sync_at=full_sync_at,
    )


def _resume(state: EmulatorState, user_key: str, q: ListQuery) -> tuple[Cursor, int]:
    """The snapshot and offset behind a page token, if it belongs to this call.

    Google's messages for a bad or mismatched page token are not documented.
    """
    entry = state.page_cursor(q.page_token or "")
    user = state.user(user_key)
    if not isinstance(entry, tuple) or not isinstance(entry[0], Cursor):
        raise invalid_argument("Page token is not valid.")
    cursor, offset = entry
    if cursor.user != user_key or cursor.incarnation != user.incarnation:
        raise invalid_argument("Page token is not valid.")
    if cursor.fingerprint != q.fingerprint():
        raise invalid_argument(
            "Parameters provided to connections.list must match the first call "
            "that provided the page token."
        )
    return cursor, offset


def _render_page(
    state: EmulatorState, cursor: Cursor, names: tuple[str, ...], fields: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Current data of a page of the snapshot.

    On a full sync, people deleted since the snapshot are skipped (the next incremental
    sync reports them); on an incremental one they appear as deleted.
    """
    book = state.user(cursor.user).contacts
    rendered = []
    for name in names:
        person = book.lookup(name)
        if person is None or (person.deleted and not cursor.incremental):
            continue
        rendered.append(person.render(fields, incremental=cursor.incremental))
    return rendered


def list_connections(state: EmulatorState, user_key: str, q: ListQuery) -> dict[str, Any]:
    """One page of ``people.connections.list`` for ``user_key``.

    Zero totals and empty lists are omitted, as proto3 JSON (and so Google) omits
    default values. ``totalPeople``/``totalItems`` on incremental pages count the
    changes; what Google reports there is not documented.
    """
    cursor, offset = (
        _resume(state, user_key, q) if q.page_token else (_start(state, user_key, q), 0)
    )
    end = offset + q.page_size
    body: dict[str, Any] = {}
    people = _render_page(state, cursor, cursor.items[offset:end], q.fields)
    if people:
        body["connections"] = people
    if end < len(cursor.items):
        body["nextPageToken"] = state.new_page_token((cursor, end))
    elif cursor.full_sync_at is not None:
        body["nextSyncToken"] = state.issue_sync_token(
            user_key, cursor.upto_seq, cursor.full_sync_at
        )
    if cursor.items:
        body["totalPeople"] = body["totalItems"] = len(cursor.items)
    return body


@google_api(LIST_CONNECTIONS)
async def connections_list(request: web.Request, token: BearerToken) -> web.Response:
    """``GET /v1/people/{person}/connections`` — only ``people/me`` is valid.

    Google's reply for another resource name is not documented; 400 is our guess.
    """
    if request.match_info["person"] != "me":
        raise invalid_argument("Only people/me is supported for connections.list.")
    query = parse_query(request.query)
    return web.json_response(list_connections(request.app[STATE_KEY], token.user, query))


def setup(app: web.Application) -> None:
    """Register the People routes."""
    app.router.add_get("/v1/people/{person}/connections", connections_list)
