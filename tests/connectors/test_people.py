"""Contacts from the People API, reduced to the fields the feature shows."""

from __future__ import annotations

from typing import Any

import pytest

from gwsync.connectors.errors import UnknownGoogleError
from gwsync.connectors.people import KIND, to_page, to_upsert
from gwsync.domain.features import FEATURES
from gwsync.domain.pages import Page, Removal, Upsert


def person(resource: str = "people/c7100000000000000001", **extra: Any) -> dict[str, Any]:
    """A full People-API person: name, emails, phones, and fields the feature must not keep."""
    return {
        "resourceName": resource,
        "etag": "%EgUBAi43PRoEAQIFByIMbW9yZQ==",
        "names": [{"displayName": "Ada Lovelace", "givenName": "Ada", "familyName": "Lovelace",
                   "metadata": {"primary": True}}],
        "emailAddresses": [{"value": "ada@example.com", "type": "work"},
                           {"value": "ada.home@example.org"}],
        "phoneNumbers": [{"value": "+44 20 7946 0000", "canonicalForm": "+442079460000"}],
        "biographies": [{"value": "Met at the Analytical Society", "contentType": "TEXT_PLAIN"}],
        "addresses": [{"formattedValue": "12 St James's Square, London"}],
        "photos": [{"url": "https://lh3.googleusercontent.com/a/photo"}],
        **extra,
    }


def test_a_person_maps_to_an_upsert_of_name_emails_and_phones() -> None:
    """A full person is stored as its display name, email values and phone values, nothing more."""
    record = to_upsert(person())
    assert record == Upsert(KIND, "people/c7100000000000000001", {
        "name": "Ada Lovelace",
        "emails": ["ada@example.com", "ada.home@example.org"],
        "phones": ["+44 20 7946 0000"],
    })


def test_stored_fields_are_the_features_declared_fields() -> None:
    """The keys of a stored contact are exactly the contacts feature's declared fields."""
    record = to_upsert(person())
    assert isinstance(record, Upsert)
    assert record.kind == "contact"
    assert tuple(record.content) == FEATURES["contacts"].fields["contact"]


def test_nothing_beyond_the_shown_fields_is_kept() -> None:
    """Biographies, addresses, photos, etags and sub-field metadata do not reach the record."""
    raw, content = repr(person()), repr(to_upsert(person()))
    for absent in ("Analytical Society", "St James", "googleusercontent", "EgUBAi43",
                   "canonicalForm", "work", "givenName"):
        assert absent in raw and absent not in content, absent


def test_a_person_with_only_some_fields_gets_empty_ones() -> None:
    """A person without a name, email or phone still maps, with empty values."""
    record = to_upsert({"resourceName": "people/c2"})
    assert record == Upsert(KIND, "people/c2", {"name": "", "emails": [], "phones": []})


def test_entries_without_a_value_are_skipped() -> None:
    """Email or phone entries without a value are left out rather than stored as blanks."""
    record = to_upsert(person(emailAddresses=[{"type": "home"}, {"value": "a@example.com"}],
                              phoneNumbers=[{"value": ""}]))
    assert isinstance(record, Upsert)
    assert record.content["emails"] == ["a@example.com"]
    assert record.content["phones"] == []


def test_a_deleted_person_is_a_removal() -> None:
    """`metadata.deleted` on an incremental page means the contact is removed."""
    deleted = {"resourceName": "people/c9", "etag": "x", "metadata": {"deleted": True}}
    assert to_upsert(deleted) == Removal(KIND, "people/c9")


def test_a_deleted_person_with_stale_fields_is_still_a_removal() -> None:
    """Even if Google sends fields alongside `deleted`, nothing of them is stored."""
    assert to_upsert(person("people/c9", metadata={"deleted": True})) == Removal(KIND, "people/c9")


def test_metadata_without_deleted_is_an_upsert() -> None:
    """Ordinary metadata (sources, objectType) does not make a person deleted."""
    record = to_upsert(person(metadata={"sources": [{"type": "CONTACT"}],
                                        "objectType": "PERSON"}))
    assert isinstance(record, Upsert)


@pytest.mark.parametrize(
    "broken",
    [{"names": [{"displayName": "Ada Lovelace"}], "emailAddresses": [{"value": "ada@example.com"}]},
     {"resourceName": "", "emailAddresses": [{"value": "ada@example.com"}]},
     {"resourceName": None, "names": [{"displayName": "Ada Lovelace"}]}],
    ids=["absent", "empty", "null"],
)
def test_a_person_without_resource_name_is_an_unknown_answer(broken: dict[str, Any]) -> None:
    """Without a resourceName a person cannot be stored: UnknownGoogleError, no personal data."""
    with pytest.raises(UnknownGoogleError) as raised:
        to_upsert(broken)
    assert "ada" not in raised.value.detail.lower()


def test_to_page_splits_upserts_and_removals_in_order() -> None:
    """A page's people become its upserts and removals, each in the order Google sent them."""
    page = to_page([
        person("people/c1"),
        {"resourceName": "people/c2", "metadata": {"deleted": True}},
        person("people/c3"),
        {"resourceName": "people/c4", "metadata": {"deleted": True}},
    ])
    assert [u.external_id for u in page.upserts] == ["people/c1", "people/c3"]
    assert list(page.removals) == [Removal(KIND, "people/c2"), Removal(KIND, "people/c4")]


def test_an_empty_page_changes_nothing() -> None:
    """No people on a page means no upserts and no removals."""
    assert to_page([]) == Page(upserts=[], removals=[])


def test_one_bad_person_fails_the_whole_page() -> None:
    """A page with a person lacking resourceName is refused as a whole, not partly applied."""
    with pytest.raises(UnknownGoogleError):
        to_page([person("people/c1"), {"names": [{"displayName": "X"}]}])


def test_previous_resource_names_are_removals_beside_the_person() -> None:
    """A person Google renamed is upserted under its new name and its previous names are
    removed; its own name among them is not; metadata itself is never stored."""
    renamed = person("people/c9", metadata={
        "sources": [{"type": "CONTACT", "id": "9"}],
        "previousResourceNames": ["people/c1", "people/c2", "people/c9"]})
    page = to_page([renamed])
    assert [u.external_id for u in page.upserts] == ["people/c9"]
    assert page.removals == [Removal(KIND, "people/c1"), Removal(KIND, "people/c2")]
    assert "CONTACT" not in repr(page.upserts)


def test_the_feature_asks_for_metadata() -> None:
    """`metadata` is requested, or Google sends no previous names (nor deletions' flag)."""
    fields = FEATURES["contacts"].params["people.people.connections.list"]["personFields"]
    assert "metadata" in fields.split(",")
