"""Contacts from the People API: connections.list with sync tokens.

Only names, email addresses and phone numbers are requested (`personFields`, with
`metadata`, which is read but not stored), and only those are stored. Deleted contacts
arrive on incremental pages with `metadata.deleted`; a contact Google gave a new
resource name arrives under it, its old names in `metadata.previousResourceNames` —
removals, or the contact would be stored twice (docs/google.md §9.9).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from gwsync.connectors.base import Fetched
from gwsync.connectors.client import execute
from gwsync.connectors.errors import UnknownGoogleError
from gwsync.connectors.quota import UNMETERED, Budget
from gwsync.domain.features import FEATURES, Feature
from gwsync.domain.pages import Page, Removal, Upsert

if TYPE_CHECKING:  # the per-API resource types exist only in the stubs
    from googleapiclient._apis.people.v1 import PeopleServiceResource

KIND = "contact"


def to_upsert(person: dict[str, Any]) -> Upsert | Removal:
    resource = person.get("resourceName")
    if not isinstance(resource, str) or not resource:
        raise UnknownGoogleError("a person without resourceName")
    if person.get("metadata", {}).get("deleted"):
        return Removal(KIND, resource)
    names = person.get("names") or [{}]
    return Upsert(KIND, resource, {
        "name": names[0].get("displayName", ""),
        "emails": [e["value"] for e in person.get("emailAddresses", []) if e.get("value")],
        "phones": [p["value"] for p in person.get("phoneNumbers", []) if p.get("value")],
    })


def previous_names(person: dict[str, Any]) -> list[str]:
    """The names a person had before (only sync-token pages carry them), not its own."""
    names = (person.get("metadata") or {}).get("previousResourceNames") or []
    current = person.get("resourceName")
    return [n for n in names if isinstance(n, str) and n and n != current]


def to_page(people: list[dict[str, Any]]) -> Page:
    items = [to_upsert(p) for p in people]
    renamed = [Removal(KIND, name) for p in people for name in previous_names(p)]
    return Page(
        upserts=[i for i in items if isinstance(i, Upsert)],
        removals=[i for i in items if isinstance(i, Removal)] + renamed,
    )


class PeopleConnector:
    feature: Feature = FEATURES["contacts"]

    def __init__(self, service: PeopleServiceResource, page_size: int,
                 budget: Budget = UNMETERED) -> None:
        self._service = service
        self._budget = budget
        self._connections = service.people().connections()
        self._params = {
            "resourceName": "people/me",
            "personFields": self.feature.params["people.people.connections.list"]["personFields"],
            "pageSize": page_size,
        }

    async def _pages(self, **extra: Any) -> AsyncIterator[Fetched]:
        page_token = extra.pop("pageToken", None)
        while True:
            params = {**self._params, **extra}
            if page_token:
                params["pageToken"] = page_token
            body = await execute(self._connections.list(**params).execute, quota=self._budget)
            page_token = body.get("nextPageToken")
            yield Fetched(to_page(body.get("connections", [])), page_token,
                          None if page_token else body.get("nextSyncToken"))
            if not page_token:
                return

    def full(self, page_token: str | None) -> AsyncIterator[Fetched]:
        return self._pages(requestSyncToken=True, pageToken=page_token)

    def incremental(self, cursor: str) -> AsyncIterator[Fetched]:
        return self._pages(syncToken=cursor)

    def close(self) -> None:
        self._service.close()
