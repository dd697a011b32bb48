"""Deterministic fake contacts for the demo, tests and benchmarks.

The same ``n`` always yields the same people, so benchmarks compare like with like.
Each person carries more than gwsync's contacts feature stores (biographies,
organizations), so tests can show minimisation; an optional marker string lets a
test grep every store, log and backup for a value that must vanish on erasure.
"""

from __future__ import annotations

import hashlib
from typing import Any

from gwsync.emulator.grants import IssuedGrant
from gwsync.emulator.state import EmulatorState

CONTACTS_READONLY = "https://www.googleapis.com/auth/contacts.readonly"
#: What the demo user consents to: the narrowest scope of each gwsync feature.
DEMO_SCOPES = (
    CONTACTS_READONLY,
    "https://www.googleapis.com/auth/calendar.freebusy",
    "https://www.googleapis.com/auth/calendar.events.readonly",
    "https://www.googleapis.com/auth/drive.file",
    "https://www.googleapis.com/auth/gmail.metadata",
)
DEMO_EMAIL = "demo.user@example.com"

_FIRST = (
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "Ken",
    "Radia",
    "Tim",
    "Margaret",
    "John",
    "Hedy",
    "Claude",
    "Katherine",
    "Dennis",
)
_LAST = (
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Thompson",
    "Perlman",
    "Berners",
    "Hamilton",
    "Backus",
    "Lamarr",
    "Shannon",
    "Johnson",
    "Ritchie",
)
_ORGS = ("Example Corp", "Acme Ltd", "Globex", "Initech")


def _meta(kind: str, i: int) -> dict[str, Any]:
    """Per-field metadata in Google's shape (``primary``, ``source``)."""
    source_id = hashlib.sha1(f"{kind}{i}".encode(), usedforsecurity=False).hexdigest()[:16]
    return {"primary": True, "source": {"type": "CONTACT", "id": source_id}}


def fake_contact(i: int) -> dict[str, Any]:
    """The ``i``-th fake person: names, an email, usually a phone, a biography, sometimes an org."""
    given, family = _FIRST[i % len(_FIRST)], _LAST[(i // len(_FIRST)) % len(_LAST)]
    person: dict[str, Any] = {
        "names": [
            {
                "metadata": _meta("n", i),
                "displayName": f"{given} {family}",
                "givenName": given,
                "familyName": family,
                "displayNameLastFirst": f"{family}, {given}",
            }
        ],
        "emailAddresses": [
            {
                "metadata": _meta("e", i),
                "type": "work",
                "formattedType": "Work",
                "value": f"{given}.{family}.{i}@example.com".lower(),
            }
        ],
        "biographies": [
            {
                "metadata": _meta("b", i),
                "contentType": "TEXT_PLAIN",
                "value": f"Private note #{i}: met {given} at a conference.",
            }
        ],
    }
    if i % 5 != 4:  # every fifth contact has no phone, as real address books are patchy
        digits = f"{i % 10000:04d}"
        person["phoneNumbers"] = [
            {
                "metadata": _meta("p", i),
                "type": "mobile",
                "formattedType": "Mobile",
                "value": f"+1 555-01{digits}",
                "canonicalForm": f"+155501{digits}",
            }
        ]
    if i % 3 == 0:
        person["organizations"] = [
            {"metadata": _meta("o", i), "name": _ORGS[i % len(_ORGS)], "title": "Engineer"}
        ]
    return person


def _mark(person: dict[str, Any], marker: str) -> dict[str, Any]:
    """Put ``marker`` into the name, the email local part and the free-text fields."""
    name = person["names"][0]
    name.update(
        givenName=marker,
        displayName=f"{marker} {name['familyName']}",
        displayNameLastFirst=f"{name['familyName']}, {marker}",
    )
    person["emailAddresses"][0]["value"] = f"{marker}@example.com"
    person["biographies"][0]["value"] = f"Private note about {marker}."
    for org in person.get("organizations", []):
        org["title"] = f"{marker} engineer"
    return person


def seed_demo_user(
    state: EmulatorState,
    n_contacts: int,
    marker: str | None = None,
    email: str = DEMO_EMAIL,
    scopes: tuple[str, ...] = DEMO_SCOPES,
) -> IssuedGrant:
    """Create (or replace) a user with ``n_contacts`` deterministic contacts and one grant.

    With ``marker``, the first contact carries it; that needs at least one contact.
    """
    if marker is not None and n_contacts < 1:
        raise ValueError("a marker needs at least one contact to live in")
    contacts = [fake_contact(i) for i in range(n_contacts)]
    if marker is not None:
        _mark(contacts[0], marker)
    return state.add_user(email, contacts, scopes)
