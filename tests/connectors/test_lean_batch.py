"""LeanBatch writes and reads batches exactly as google-api-python-client does, only faster."""

from __future__ import annotations

import asyncio
import email.generator
import uuid
from typing import Any

import httplib2
import pytest
from google.oauth2.credentials import Credentials
from googleapiclient.http import BatchHttpRequest

from gwsync.connectors import client
from gwsync.connectors.endpoints import Endpoints
from gwsync.connectors.gmail import metadata_request
from gwsync.connectors.lean_batch import (
    LeanBatch,
    SameMethod,
    new_batch,
    read_response,
    split_answer,
)
from gwsync.emulator.mailbox import add_gmail_user
from tests.conftest import Emulator

IDS = ["18c0000000000001", "18c0000000000002", "18c0000000000003"]
BASE = uuid.UUID("12345678-1234-5678-1234-567812345678")
CT = 'multipart/mixed; boundary="batch_x"'
URI = "http://127.0.0.1:9/batch"


def _gmail(url: str = "http://127.0.0.1:9", token: str = "token-1") -> Any:
    return client.service("gmail", token, Endpoints.at(url) if url != "http://127.0.0.1:9"
                          else Endpoints.from_base(url), 5)


class _Canned:
    """An http that records what is posted and answers with a canned batch answer."""

    def __init__(self, content_type: str, content: bytes, status: int = 200) -> None:
        self.answer = httplib2.Response({"status": status, "content-type": content_type})
        self.content = content
        self.posted: list[tuple[str, dict[str, str]]] = []

    def request(self, uri: str, method: str, body: str, headers: dict[str, str]) -> Any:
        self.posted.append((body, headers))
        return self.answer, self.content


class _Recording:
    """A real http that keeps the answers it got, to replay them to the library."""

    def __init__(self, http: Any) -> None:
        self.http = http
        self.answers: list[tuple[Any, bytes]] = []

    def request(self, *args: Any, **kwargs: Any) -> Any:
        resp, content = self.http.request(*args, **kwargs)
        self.answers.append((resp, content))
        return resp, content


def _run(batch: BatchHttpRequest, service: Any, http: Any, ids: list[str]) -> list[Any]:
    """Execute a batch of metadata gets → what each callback was given, comparably."""
    seen: list[Any] = []

    def answer(request_id: str, response: Any, exc: Any) -> None:
        failure = None if exc is None else (exc.resp.status, exc.content, dict(exc.resp))
        seen.append((request_id, response, failure))

    batch._base_id = BASE  # type: ignore[attr-defined]
    messages = service.users().messages()
    for mid in ids:
        batch.add(metadata_request(messages, mid), callback=answer, request_id=mid)
    batch.execute(http=http)
    responses = {k: (dict(r), r.status, r.reason, r.version, c)
                 for k, (r, c) in batch._responses.items()}  # type: ignore[attr-defined]
    return [seen, responses]


def test_get_part_is_byte_for_byte_the_library_s() -> None:
    """A body-less GET part (with its bearer header) equals BatchHttpRequest's own."""
    service = _gmail()
    try:
        request = metadata_request(service.users().messages(), "18c0000000000001")
        library = BatchHttpRequest()._serialize_request(request)
        assert LeanBatch()._serialize_request(request) == library
        assert "authorization: Bearer token-1" in library
    finally:
        service.close()


def test_the_posted_envelope_is_byte_for_byte_the_library_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the same boundary and Content-ID base, the multipart body and its content type
    are the ones `email.generator` writes."""
    monkeypatch.setattr(email.generator.Generator, "_make_boundary",
                        classmethod(lambda cls, text=None: "===============42=="))
    monkeypatch.setattr(LeanBatch, "_boundary", staticmethod(lambda: "===============42=="))
    service = _gmail()
    try:
        answer = _answer([_part(i) for i in IDS])
        library, lean = _Canned(CT, answer), _Canned(CT, answer)
        assert _run(LeanBatch(batch_uri=URI), service, lean, IDS) == _run(
            BatchHttpRequest(batch_uri=URI), service, library, IDS)
        assert lean.posted == library.posted
        assert "--===============42==--\n" in lean.posted[0][0]
    finally:
        service.close()


async def test_an_answer_from_the_emulator_is_read_as_the_library_reads_it(
    emulator: Emulator,
) -> None:
    """A real batch answer (found messages and a 404) gives every callback and every
    stored response exactly what BatchHttpRequest gives, and took the lean reader."""
    grant = add_gmail_user(emulator.state, "lean@example.com", 3)
    service = _gmail(emulator.url, emulator.state.mint_access_token(grant.refresh_token))
    try:
        listed = await asyncio.to_thread(service.users().messages().list(userId="me").execute)
        ids = [m["id"] for m in listed["messages"]] + ["ffffffffffffffff"]
        recording = _Recording(service._http)
        lean = await asyncio.to_thread(_run, new_batch(service, None), service, recording, ids)
        resp, content = recording.answers[0]
        assert split_answer(resp["content-type"], content.decode()) is not None
        library = _run(BatchHttpRequest(batch_uri=new_batch(service, None)._batch_uri),
                       service, _Canned(resp["content-type"], content), ids)
        assert lean == library
        assert lean[0][-1][2][0] == 404 and all(r for _, r, _ in lean[0][:-1])
    finally:
        service.close()


def _answer(parts: list[str], nl: str = "\r\n", preamble: str = "",
            epilogue: str = "") -> bytes:
    out = preamble
    for part in parts:
        out += f"--batch_x{nl}{part}{nl}"
    return (out + f"--batch_x--{nl}{epilogue}").encode()


def _part(mid: str, nl: str = "\r\n", status: str = "200 OK", extra: str = "",
          body: str = '{"id": "%s"}') -> str:
    return (f"Content-Type: application/http{nl}Content-ID: <response-{BASE} + {mid}>{nl}"
            f"{nl}HTTP/1.1 {status}{nl}Content-Type: application/json; charset=UTF-8{nl}"
            f"{extra}{nl}{body % mid if '%s' in body else body}")


def _outcome(batch: BatchHttpRequest, service: Any, http: Any) -> Any:
    """What `_run` gives, or the name of what it raised."""
    try:
        return _run(batch, service, http, IDS)
    except Exception as exc:  # noqa: BLE001 - the library's own failure is the answer
        return type(exc).__name__


ODD = {
    "google's form": (CT, _answer([_part(i) for i in IDS]), True),
    "preamble, epilogue, duplicate headers": (
        "multipart/mixed; boundary=batch_x",
        _answer([_part(i, extra="ETag: a\r\nEtag: b\r\n") for i in IDS],
                preamble="ignored\r\n", epilogue="also ignored"), True),
    "an error part": (CT, _answer([_part(IDS[0]), _part(IDS[1], status="404 Not Found",
                                   body='{"error": {"code": 404}}'), _part(IDS[2])]), True),
    "LF line endings": (CT, _answer([_part(i, nl="\n") for i in IDS], nl="\n"), False),
    "a folded header": (CT, _answer([_part(i, extra="X-Long: a\r\n b\r\n") for i in IDS]),
                        False),
    "a folded part header": (CT, _answer([_part(i).replace("Content-ID:", "X: a\r\n b\r\n"
                                                           "Content-ID:") for i in IDS]), False),
    "parts out of order": (CT, _answer([_part(i) for i in reversed(IDS)]), True),
}


@pytest.mark.parametrize("name", list(ODD))
def test_odd_answers_are_read_as_the_library_reads_them(name: str) -> None:
    """Google's documented form and answers this reader leaves to the library (LF lines,
    which the library itself refuses; folded headers) all come out as BatchHttpRequest
    reads them."""
    content_type, content, lean_reads_it = ODD[name]
    parts = split_answer(content_type, content.decode())
    assert (parts is not None and all(read_response(p) for _, p in parts)) is lean_reads_it
    service = _gmail()
    try:
        lean = _outcome(LeanBatch(batch_uri=URI), service, _Canned(content_type, content))
        library = _outcome(BatchHttpRequest(batch_uri=URI), service,
                           _Canned(content_type, content))
        assert lean == library
    finally:
        service.close()


def test_new_batch_posts_where_the_service_would() -> None:
    """The lean batch goes to the batch URI the discovery document gives the service."""
    service = _gmail()
    try:
        expected = service.new_batch_http_request()._batch_uri
        assert new_batch(service, None)._batch_uri == expected == "http://127.0.0.1:9/batch"
    finally:
        service.close()


@pytest.mark.parametrize("mid", ["18c0000000000001", "ABCdef0123", "a/b c", "ü", ""])
def test_a_copied_request_is_the_one_the_library_builds(mid: str) -> None:
    """Every attribute of a SameMethod request equals the library's own for that id (the
    odd ids through the library itself), and copies share no mutable state."""
    service = _gmail()
    try:
        messages = service.users().messages()
        same = SameMethod(lambda m: metadata_request(messages, m))
        made, other = same(mid), same("18c00000000000ff")
        assert vars(made) == vars(metadata_request(messages, mid))
        assert made.headers is not other.headers
        assert made.response_callbacks is not other.response_callbacks
    finally:
        service.close()


class _Rotating(Credentials):
    """Credentials whose every refresh gives a new access token."""

    def refresh(self, request: Any) -> None:
        self.token = f"token-{int(str(self.token).rsplit('-', 1)[1]) + 1}"


class _Answers(_Canned):
    """A canned http that gives its answers in turn."""

    def __init__(self, answers: list[bytes]) -> None:
        super().__init__(CT, b"")
        self.answers = list(answers)

    def request(self, uri: str, method: str, body: str, headers: dict[str, str]) -> Any:
        self.content = self.answers.pop(0)
        return super().request(uri, method, body, headers)


def test_a_part_answered_401_is_sent_again_with_the_refreshed_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The library refreshes the credentials and sends the 401 parts again: the second POST
    carries the new token, not the one applied to the first (the header is worked out once
    a POST, not once a batch)."""
    monkeypatch.setattr(LeanBatch, "_boundary", staticmethod(lambda: "===============42=="))
    monkeypatch.setattr(email.generator.Generator, "_make_boundary",
                        classmethod(lambda cls, text=None: "===============42=="))
    first = _answer([_part(IDS[0], status="401 Unauthorized"), *map(_part, IDS[1:])])
    posted = []
    for batch in (LeanBatch(batch_uri=URI), BatchHttpRequest(batch_uri=URI)):
        service = _gmail()
        service._http.credentials = _Rotating(token="token-1")  # type: ignore[attr-defined]
        http = _Answers([first, _answer([_part(IDS[0])])])
        try:
            _run(batch, service, http, IDS)
        finally:
            service.close()
        posted.append([body for body, _ in http.posted])
    assert posted[0] == posted[1]
    assert "Bearer token-1" in posted[0][0] and "Bearer token-2" in posted[0][1]
