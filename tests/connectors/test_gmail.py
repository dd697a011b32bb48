"""Gmail messages and history records, reduced to what the mail_activity feature stores."""

from __future__ import annotations

from typing import Any

import pytest

from gwsync.connectors.errors import UnknownGoogleError
from gwsync.connectors.gmail import KIND, history_ops, to_page, to_record
from gwsync.domain.features import FEATURES
from gwsync.domain.pages import Removal, Upsert


def message(mid: str = "18c0000000000001", **extra: Any) -> dict[str, Any]:
    """A metadata-format message with more headers than the feature keeps."""
    return {
        "id": mid, "threadId": mid, "labelIds": ["INBOX", "UNREAD"], "historyId": "1000042",
        "internalDate": "1780272000000", "sizeEstimate": 2048, "snippet": "private text",
        "payload": {"mimeType": "text/plain", "headers": [
            {"name": "Received", "value": "from mx.example.com"},
            {"name": "From", "value": "Ada <ada@example.com>"},
            {"name": "to", "value": "me@example.com"},
            {"name": "Subject", "value": "Numbers"},
            {"name": "Date", "value": "Mon, 01 Jun 2026 10:15:00 +0200"},
        ]},
        **extra,
    }


def test_a_message_maps_to_from_to_subject_and_date() -> None:
    """Headers are matched case-insensitively; the date is stored as RFC 3339 UTC."""
    assert to_record(message()) == Upsert(KIND, "18c0000000000001", {
        "from": "Ada <ada@example.com>", "to": "me@example.com", "subject": "Numbers",
        "date": "2026-06-01T08:15:00Z"})


def test_stored_fields_are_the_features_declared_fields() -> None:
    """The keys of a stored message are exactly the feature's declared fields."""
    record = to_record(message())
    assert isinstance(record, Upsert)
    assert tuple(record.content) == FEATURES["mail_activity"].fields[KIND]


def test_a_bad_date_header_falls_back_to_internal_date() -> None:
    """An unparseable Date header is replaced by Gmail's internalDate."""
    msg = message()
    msg["payload"]["headers"][-1]["value"] = "yesterday-ish"
    record = to_record(msg)
    assert isinstance(record, Upsert) and record.content["date"] == "2026-06-01T00:00:00Z"


def test_missing_headers_are_empty() -> None:
    """A message without payload headers stores empty strings, never other data."""
    record = to_record(message(payload={}))
    assert isinstance(record, Upsert)
    assert record.content["subject"] == "" and record.content["date"] == "2026-06-01T00:00:00Z"


@pytest.mark.parametrize("label", ["SPAM", "TRASH"])
def test_spam_and_trash_are_removals(label: str) -> None:
    """A message in spam or trash is not a conversation: it is removed."""
    assert to_record(message(labelIds=[label])) == Removal(KIND, "18c0000000000001")


def test_a_message_without_id_is_refused() -> None:
    """An answer without an id is an unknown Google error, not a stored record."""
    with pytest.raises(UnknownGoogleError):
        to_record({"payload": {}})


def test_history_ops_keep_the_last_change_per_message() -> None:
    """Adds fetch, deletes and moves to trash remove, moves out of trash fetch again."""
    records = [
        {"id": "5", "messagesAdded": [{"message": {"id": "a"}}]},
        {"id": "7", "messagesAdded": [{"message": {"id": "b"}}]},
        {"id": "9", "messagesDeleted": [{"message": {"id": "a"}}]},
        {"id": "12", "labelsAdded": [{"message": {"id": "c"}, "labelIds": ["TRASH"]}]},
        {"id": "13", "labelsRemoved": [{"message": {"id": "d"}, "labelIds": ["SPAM"]}]},
        {"id": "14", "labelsRemoved": [{"message": {"id": "e"}, "labelIds": ["UNREAD"]}]},
    ]
    assert history_ops(records) == {"a": False, "b": True, "c": False, "d": True}


def test_a_page_turns_gone_messages_into_removals() -> None:
    """A message Gmail no longer has (404 on get) and explicit deletions become removals."""
    page = to_page({"x": message("x"), "y": None}, removed=["z"])
    assert [u.external_id for u in page.upserts] == ["x"]
    assert [r.external_id for r in page.removals] == ["y", "z"]
