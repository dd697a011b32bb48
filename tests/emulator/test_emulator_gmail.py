"""The emulator's Gmail API and batch endpoint, driven by google-api-python-client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from googleapiclient.errors import HttpError

from gwsync.connectors import client
from gwsync.connectors.endpoints import Endpoints
from gwsync.emulator.mailbox import METADATA_SCOPE, add_gmail_user, mailbox
from tests.emulator.support import Emulator

READONLY = "https://www.googleapis.com/auth/gmail.readonly"
HEADERS = ["From", "To", "Subject", "Date"]


@pytest.fixture
def gmail(emulator: Emulator) -> Iterator[Any]:
    """A Gmail service (metadata-scoped token) over a mailbox of 7 seeded messages."""
    grant = add_gmail_user(emulator.state, "alice@example.com", 7)
    token = emulator.state.mint_access_token(grant.refresh_token)
    service = client.service("gmail", token, Endpoints.at(emulator.url), 5)
    yield service
    service.close()


def _call(request: Any) -> Any:
    return asyncio.to_thread(request.execute)


def _box(emulator: Emulator) -> Any:
    return mailbox(emulator.state, "alice@example.com")


async def test_get_profile_reports_address_totals_and_history_id(
    gmail: Any, emulator: Emulator
) -> None:
    """getProfile answers the address, message and thread totals and the current history id."""
    body = await _call(gmail.users().getProfile(userId="me"))
    assert body == {"emailAddress": "alice@example.com", "messagesTotal": 7, "threadsTotal": 7,
                    "historyId": str(_box(emulator).history_id)}


async def test_messages_list_pages_ids_newest_first(gmail: Any, emulator: Emulator) -> None:
    """messages.list pages {id, threadId} items newest first and estimates the total."""
    seen, token, pages = [], None, 0
    while True:
        body = await _call(gmail.users().messages().list(userId="me", maxResults=3,
                                                         pageToken=token))
        pages += 1
        assert body["resultSizeEstimate"] == 7
        assert all(set(m) == {"id", "threadId"} for m in body["messages"])
        seen += [m["id"] for m in body["messages"]]
        token = body.get("nextPageToken")
        if not token:
            break
    assert pages == 3
    assert seen == list(reversed(_box(emulator).messages))


async def test_messages_list_leaves_out_spam_and_trash_unless_asked(
    gmail: Any, emulator: Emulator
) -> None:
    """Trashed messages are listed only with includeSpamTrash=true; labelIds filters."""
    first = next(iter(_box(emulator).messages))
    _box(emulator).change_labels(first, add=["TRASH"], remove=["INBOX"])
    plain = await _call(gmail.users().messages().list(userId="me"))
    both = await _call(gmail.users().messages().list(userId="me", includeSpamTrash=True))
    trash = await _call(gmail.users().messages().list(userId="me", labelIds=["TRASH"],
                                                      includeSpamTrash=True))
    assert first not in [m["id"] for m in plain["messages"]] and len(plain["messages"]) == 6
    assert len(both["messages"]) == 7
    assert [m["id"] for m in trash["messages"]] == [first]


async def test_search_query_is_refused_for_a_metadata_token(gmail: Any) -> None:
    """q with a gmail.metadata token is Google's 403 'Metadata scope does not support q'."""
    with pytest.raises(HttpError) as caught:
        await _call(gmail.users().messages().list(userId="me", q="from:ada"))
    assert caught.value.status_code == 403
    assert caught.value.reason == "Metadata scope does not support 'q' parameter"
    assert caught.value.error_details[0]["reason"] == "forbidden"


async def test_metadata_format_returns_only_the_asked_headers(
    gmail: Any, emulator: Emulator
) -> None:
    """format=metadata returns ids, labels and the named headers; no body, raw or snippet."""
    mid = next(iter(_box(emulator).messages))
    body = await _call(gmail.users().messages().get(userId="me", id=mid, format="metadata",
                                                    metadataHeaders=HEADERS))
    assert {h["name"] for h in body["payload"]["headers"]} == set(HEADERS)
    assert set(body) == {"id", "threadId", "labelIds", "sizeEstimate", "historyId",
                         "internalDate", "payload"}
    assert "Confidential" not in json.dumps(body)


async def test_full_and_raw_are_refused_for_a_metadata_token(
    gmail: Any, emulator: Emulator
) -> None:
    """format=full or raw with a gmail.metadata token is a 403 naming the format."""
    mid = next(iter(_box(emulator).messages))
    for fmt in ("full", "raw"):
        with pytest.raises(HttpError) as caught:
            await _call(gmail.users().messages().get(userId="me", id=mid, format=fmt))
        assert caught.value.status_code == 403
        assert caught.value.reason == f"Metadata scope doesn't allow format {fmt.upper()}"


async def test_full_format_carries_the_body_for_a_readonly_token(emulator: Emulator) -> None:
    """With gmail.readonly, format=full returns the body (so the metadata limit is real)."""
    grant = add_gmail_user(emulator.state, "bob@example.com", 1, scopes=(READONLY,))
    token = emulator.state.mint_access_token(grant.refresh_token)
    service = client.service("gmail", token, Endpoints.at(emulator.url), 5)
    try:
        mid = next(iter(mailbox(emulator.state, "bob@example.com").messages))
        body = await _call(service.users().messages().get(userId="me", id=mid))
    finally:
        service.close()
    assert "snippet" in body and body["payload"]["body"]["data"]


async def test_unknown_message_is_gmails_404(gmail: Any) -> None:
    """messages.get of an unknown id is a 404 with reason notFound."""
    with pytest.raises(HttpError) as caught:
        await _call(gmail.users().messages().get(userId="me", id="0" * 16,
                                                         format="metadata"))
    assert caught.value.status_code == 404
    assert caught.value.error_details[0]["reason"] == "notFound"


async def test_history_lists_adds_deletes_and_label_changes(
    gmail: Any, emulator: Emulator
) -> None:
    """history.list pages the changes after a start id, with increasing ids and a new cursor."""
    box = _box(emulator)
    start = box.history_id
    first, second = list(box.messages)[:2]
    box.delete(first)
    box.change_labels(second, add=["STARRED"])
    added = box.add({"From": "x@example.com"}, "hi", 0).id
    records, token = [], None
    while True:
        body = await _call(gmail.users().history().list(
            userId="me", startHistoryId=str(start), maxResults=2, pageToken=token))
        records += body["history"]
        token = body.get("nextPageToken")
        if not token:
            break
    assert body["historyId"] == str(box.history_id)
    ids = [int(r["id"]) for r in records]
    assert ids == sorted(ids) and ids[0] > start
    assert [next(k for k in r if k not in ("id", "messages")) for r in records] == [
        "messagesDeleted", "labelsAdded", "messagesAdded"]
    assert records[1]["labelsAdded"][0]["labelIds"] == ["STARRED"]
    assert records[2]["messagesAdded"][0]["message"]["id"] == added


async def test_history_types_filter_the_records(gmail: Any, emulator: Emulator) -> None:
    """historyTypes=messageDeleted leaves label changes out."""
    box = _box(emulator)
    start = box.history_id
    first, second = list(box.messages)[:2]
    box.change_labels(second, remove=["UNREAD"])
    box.delete(first)
    body = await _call(gmail.users().history().list(
        userId="me", startHistoryId=str(start), historyTypes=["messageDeleted"]))
    assert [list(r)[2] for r in body["history"]] == ["messagesDeleted"]


async def test_a_start_id_older_than_the_kept_history_is_404(
    gmail: Any, emulator: Emulator
) -> None:
    """After the log is truncated, an older startHistoryId answers Gmail's 404 body."""
    start = _box(emulator).history_id
    _box(emulator).truncate_history()
    _box(emulator).add({"From": "x@example.com"}, "hi", 0)
    with pytest.raises(HttpError) as caught:
        await _call(gmail.users().history().list(userId="me", startHistoryId=str(start - 1)))
    assert caught.value.status_code == 404
    assert json.loads(caught.value.content) == {"error": {
        "code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND",
        "errors": [{"message": "Requested entity was not found.", "domain": "global",
                    "reason": "notFound"}]}}
    ok = await _call(gmail.users().history().list(userId="me", startHistoryId=str(start)))
    assert len(ok["history"]) == 1


async def test_batch_runs_each_call_with_its_own_answer(gmail: Any, emulator: Emulator) -> None:
    """A client batch gets parsed answers per part, and per-part 404 and 403 errors."""
    ids = list(_box(emulator).messages)[:3]
    answers: dict[str, tuple[Any, Any]] = {}
    batch = gmail.new_batch_http_request(
        callback=lambda rid, resp, exc: answers.__setitem__(rid, (resp, exc)))
    for mid in ids:
        batch.add(gmail.users().messages().get(userId="me", id=mid, format="metadata",
                                               metadataHeaders=["Subject"]), request_id=mid)
    batch.add(gmail.users().messages().get(userId="me", id="0" * 16, format="minimal"),
              request_id="gone")
    batch.add(gmail.users().messages().get(userId="me", id=ids[0], format="raw"),
              request_id="raw")
    emulator.state.calls(clear=True)
    await asyncio.to_thread(batch.execute)
    for mid in ids:
        resp, exc = answers[mid]
        assert exc is None and resp["id"] == mid
        assert [h["name"] for h in resp["payload"]["headers"]] == ["Subject"]
    assert answers["gone"][1].status_code == 404
    assert answers["raw"][1].status_code == 403
    calls = emulator.state.calls()
    assert [c["status"] for c in calls] == [200, 200, 200, 404, 403]
    assert all(c["scopes"] == [METADATA_SCOPE] for c in calls)


async def test_batch_of_more_than_100_calls_is_refused(gmail: Any, emulator: Emulator) -> None:
    """Gmail takes at most 100 calls per batch; 101 is a 400 and runs none of them."""
    batch = gmail.new_batch_http_request()
    for _ in range(101):
        batch.add(gmail.users().getProfile(userId="me"))
    emulator.state.calls(clear=True)
    with pytest.raises(HttpError) as caught:
        await asyncio.to_thread(batch.execute)
    assert caught.value.status_code == 400
    assert emulator.state.calls() == []


async def test_batch_parts_are_authorised_one_by_one(
    emulator: Emulator, http: aiohttp.ClientSession, gmail: Any
) -> None:
    """A part without a bearer token gets its own 401; the documented path works too."""
    token = emulator.state.mint_access_token(
        next(iter(emulator.state.grants.values())).refresh_token)
    body = ("--b\r\nContent-Type: application/http\r\nContent-ID: <a+1>\r\n\r\n"
            f"GET /gmail/v1/users/me/profile\r\nAuthorization: Bearer {token}\r\n\r\n"
            "--b\r\nContent-Type: application/http\r\nContent-ID: <a+2>\r\n\r\n"
            "GET /gmail/v1/users/me/profile\r\n\r\n--b--\r\n")
    async with http.post(emulator.url + "/batch/gmail/v1", data=body,
                         headers={"Content-Type": "multipart/mixed; boundary=b"}) as resp:
        assert resp.status == 200
        text = await resp.text()
    assert "Content-ID: <response-a+1>" in text and "HTTP/1.1 200 OK" in text
    assert "Content-ID: <response-a+2>" in text and "HTTP/1.1 401 Unauthorized" in text


async def test_batch_must_be_multipart(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    """A batch POST that is not multipart/mixed is a 400."""
    async with http.post(emulator.url + "/batch", json={}) as resp:
        assert resp.status == 400


async def test_admin_routes_deliver_relabel_delete_and_truncate(
    gmail: Any, emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """The /_emulator gmail routes change the mailbox as the API then reports it."""
    base = emulator.url + "/_emulator/users/alice@example.com/gmail"
    async with http.post(base + "/messages", json={"from": "a@x.org", "subject": "Hi",
                                                   "body": "secret"}) as resp:
        assert resp.status == 201
        [mid] = (await resp.json())["ids"]
    async with http.post(f"{base}/messages/{mid}/labels", json={"add": ["SPAM"]}) as resp:
        assert "SPAM" in (await resp.json())["labelIds"]
    async with http.delete(f"{base}/messages/{mid}") as resp:
        assert resp.status == 200
    async with http.delete(f"{base}/messages/{mid}") as resp:
        assert resp.status == 404 and (await resp.json())["error"] == "unknown_message"
    async with http.post(base + "/truncate-history") as resp:
        assert (await resp.json())["floor"] == str(_box(emulator).history_id)
    assert mid not in _box(emulator).messages
