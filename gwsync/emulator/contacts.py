"""A user's contact book, with the change sequence that sync tokens need.

People API sync tokens mean "everything that changed after this point". Rather
than diffing snapshots, every add/change/delete stamps the person with the next
value of a per-user monotonically increasing sequence number; a sync token
remembers the sequence at issue time, so "changed since" is a simple filter.
Deleted people stay as tombstones so incremental syncs can report them.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from gwsync.emulator.errors import NotFoundError

#: Keys of a person dict that the emulator manages itself; callers cannot set them as fields.
MANAGED_KEYS = frozenset({"resourceName", "etag"})


@dataclass
class StoredPerson:
    """One contact: its resource name, its full field dict and its change stamp."""

    resource_name: str
    fields: dict[str, Any]
    seq: int
    etag: str = ""
    deleted: bool = False
    #: Names this person had before (`PersonMetadata.previousResourceNames`), oldest first.
    previous_names: list[str] = field(default_factory=list)

    def restamp(self, seq: int) -> None:
        """Record a change: new sequence number and a new etag, as Google changes etags."""
        self.seq = seq
        digest = hashlib.sha256(
            json.dumps([self.resource_name, seq, self.fields], sort_keys=True).encode()
        ).digest()
        # Google's person etags are opaque strings starting with "%"; the rest is ours.
        self.etag = "%" + base64.urlsafe_b64encode(digest[:18]).decode()

    def render(self, mask: Iterable[str], incremental: bool = False) -> dict[str, Any]:
        """The person as the API returns it: only the masked fields, always name and etag.

        A deleted person renders as a bare tombstone whatever the mask, which is what
        incremental sync pages carry for deletions. ``metadata`` in the mask adds the
        person's metadata; its ``previousResourceNames`` is "populated only for
        connections.list requests that include a sync token" (PersonMetadata reference).
        """
        out: dict[str, Any] = {"resourceName": self.resource_name, "etag": self.etag}
        if self.deleted:
            out["metadata"] = {"deleted": True}
            return out
        for name in mask:
            if name == "metadata":
                out["metadata"] = self._metadata(incremental)
            elif name in self.fields:
                out[name] = copy.deepcopy(self.fields[name])
        return out

    def _metadata(self, incremental: bool) -> dict[str, Any]:
        """`PersonMetadata`: one CONTACT source (the contact's id and etag), the object
        type, and on sync-token pages the names the person had before."""
        source = {"type": "CONTACT", "id": self.resource_name.removeprefix("people/c"),
                  "etag": self.etag}
        meta: dict[str, Any] = {"sources": [source], "objectType": "PERSON"}
        if incremental and self.previous_names:
            meta["previousResourceNames"] = list(self.previous_names)
        return meta


def normalise_resource_name(contact_id: str) -> str:
    """Accept ``people/c123``, ``c123`` or ``123`` (admin URLs cannot hold a slash)."""
    ident = contact_id.removeprefix("people/")
    return "people/" + (ident if ident.startswith("c") else f"c{ident}")


class ContactBook:
    """The contacts of one user, live and deleted, in change order."""

    def __init__(self, ids: Iterator[int]) -> None:
        self._ids = ids
        self.seq = 0
        self._people: dict[str, StoredPerson] = {}

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def add(self, person: Mapping[str, Any]) -> str:
        """Store a new contact (a People-API-shaped dict) and return its resource name.

        A ``resourceName`` in the dict is honoured (re-adding a deleted one revives it);
        otherwise one is allocated.
        """
        name = person.get("resourceName") or f"people/c{next(self._ids)}"
        existing = self._people.get(name)
        if existing is not None and not existing.deleted:
            raise ValueError(f"contact {name} already exists")
        fields = {k: copy.deepcopy(v) for k, v in person.items() if k not in MANAGED_KEYS}
        stored = StoredPerson(resource_name=name, fields=fields, seq=0)
        stored.restamp(self._next_seq())
        self._people[name] = stored
        return name

    def get(self, contact_id: str) -> StoredPerson:
        """The live contact, or :class:`NotFoundError`."""
        stored = self._people.get(normalise_resource_name(contact_id))
        if stored is None or stored.deleted:
            raise NotFoundError("contact", contact_id)
        return stored

    def update(self, contact_id: str, changes: Mapping[str, Any]) -> StoredPerson:
        """Replace the given fields (``None`` removes one); counts as one change."""
        stored = self.get(contact_id)
        for key, value in changes.items():
            if key in MANAGED_KEYS:
                continue
            if value is None:
                stored.fields.pop(key, None)
            else:
                stored.fields[key] = copy.deepcopy(value)
        stored.restamp(self._next_seq())
        return stored

    def rename(self, contact_id: str) -> StoredPerson:
        """Give a contact a new resource name, as Google does "when adding or removing
        fields that link a contact and profile" (PersonMetadata reference).

        The old name simply stops existing — no tombstone is kept for it: incremental
        pages name it only in the person's ``previousResourceNames``. Whether Google
        also sends a deleted person for the old name is undocumented; a client that
        needs that to avoid a duplicate is the one this models.
        """
        stored = self.get(contact_id)
        del self._people[stored.resource_name]
        stored.previous_names.append(stored.resource_name)
        stored.resource_name = f"people/c{next(self._ids)}"
        self._people[stored.resource_name] = stored
        stored.restamp(self._next_seq())
        return stored

    def delete(self, contact_id: str) -> StoredPerson:
        """Turn a contact into a tombstone (fields dropped), stamped as a change."""
        stored = self.get(contact_id)
        stored.deleted = True
        stored.fields = {}
        stored.restamp(self._next_seq())
        return stored

    def live(self) -> list[StoredPerson]:
        """Contacts that exist now, oldest change first."""
        return sorted((p for p in self._people.values() if not p.deleted), key=lambda p: p.seq)

    def changed(self, after: int, upto: int) -> list[StoredPerson]:
        """Contacts (including tombstones) whose last change falls in ``(after, upto]``."""
        return sorted(
            (p for p in self._people.values() if after < p.seq <= upto), key=lambda p: p.seq
        )

    def lookup(self, resource_name: str) -> StoredPerson | None:
        """Any stored person, tombstones included; used when rendering later pages."""
        return self._people.get(resource_name)
