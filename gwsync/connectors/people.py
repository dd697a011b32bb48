"""Contacts from the People API: connections.list with sync tokens.

Only names, email addresses and phone numbers are requested (`personFields`), and only
those are stored. Deleted contacts arrive on incremental pages with `metadata.deleted`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from googleapiclient.discovery import Resource

from gwsync.connectors.base import Fetched
from gwsync.connectors.client import execute
from gwsync.connectors.errors import UnknownGoogleError
from gwsync.connectors.features import FEATURES, Feature
from gwsync.connectors.quota import UNMETERED, Budget
from gwsync.storage.records import Page, Removal, Upsert

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


def to_page(people: list[dict[str, Any]]) -> Page:
    items = [to_upsert(p) for p in people]
    return Page(
        upserts=[i for i in items if isinstance(i, Upsert)],
        removals=[i for i in items if isinstance(i, Removal)],
    )


class PeopleConnector:
    feature: Feature = FEATURES["contacts"]

    def __init__(self, service: Resource, page_size: int, budget: Budget = UNMETERED) -> None:
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
