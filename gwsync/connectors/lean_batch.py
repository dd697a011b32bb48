"""google-api-python-client's batch request, written and split without the `email` package.

`BatchHttpRequest` writes every inner request, and the multipart body around them,
through `email.generator` (whose header folding and per-batch boundary regex cost more
worker CPU than everything else in a Gmail full sync), and splits the answer with
`email.feedparser` twice: once for the multipart envelope, once per part (profiled in
bench/ingest.py: together about three quarters of the sync's CPU). For what Gmail sends
and we ask — body-less GETs, short Content-IDs, a `multipart/mixed` answer of CRLF
lines — plain string work writes and reads the same bytes; anything else (a request
with a body, a header the generator would fold, an answer this reader is not sure of)
takes the library's own path, so the result is always the library's.

Only the envelope is ours. Each part's answer still goes through the library:
`BatchHttpRequest.execute` retries the parts answered 401, turns a status ≥ 300 into its
`HttpError` and hands the rest to the request's own `postproc` (the JSON model), as it
would. tests/connectors/test_lean_batch.py compares every step with the library's output
(the request body byte for byte, the parsed answers field for field), so an upgrade
that changes either fails there.
"""

from __future__ import annotations

import random
import re
import sys
import urllib.parse
from collections.abc import Callable
from email.feedparser import FeedParser
from typing import TYPE_CHECKING, Any

import httplib2
from googleapiclient import _auth
from googleapiclient.errors import BatchError, HttpError
from googleapiclient.http import BatchHttpRequest

if TYPE_CHECKING:  # the per-API resource types exist only in the stubs
    from googleapiclient._apis.gmail.v1 import GmailResource

#: The longest header line `email.generator` writes without folding it (RFC 5322's 78).
_FOLD_AT = 78
#: `email.generator.Generator._make_boundary`'s digits: those of sys.maxsize.
_BOUNDARY_DIGITS = len(repr(sys.maxsize - 1))
#: A header line `email.feedparser` reads as one header (no continuation, no "From ").
_HEADER_LINE = re.compile(r"[\041-\071\073-\176]+:")
#: The answer's content type, when it is one this reader splits itself.
_MULTIPART = re.compile(r'multipart/mixed;[ \t]*boundary=(?:"([^"\\\r\n]+)"|([^\s";]+))[ \t]*',
                        re.IGNORECASE)
#: (Content-ID, the part's payload: the inner HTTP answer as text).
RawPart = tuple[str, str]


def _boundary() -> str:
    """A boundary as `email.generator` makes them (15 `=`, 19 random digits, `==`)."""
    token = random.randrange(sys.maxsize)
    return "=" * 15 + f"{token:0{_BOUNDARY_DIGITS}d}" + "=="


def _headers(block: str) -> list[tuple[str, str]] | None:
    """CRLF header lines as `email.feedparser` reads them → [(name, value)], in order;
    None if any line is one it would read differently (folded, bare CR or LF, no name)."""
    found = []
    for line in block.split("\r\n"):
        if "\r" in line or "\n" in line or not _HEADER_LINE.match(line):
            return None
        name, _, value = line.partition(":")
        found.append((name, value.lstrip(" \t")))
    return found


def _strip_line_end(text: str) -> str:
    """Drop the one line ending before a boundary line: it belongs to the boundary."""
    for end in ("\r\n", "\n", "\r"):
        if text.endswith(end):
            return text[:-len(end)]
    return text


def split_answer(content_type: str, text: str) -> list[RawPart] | None:
    """The parts of a batch answer as the library's FeedParser would split it, or None
    when this reader cannot be sure it would (the caller then uses the library)."""
    match = _MULTIPART.fullmatch(content_type)
    if match is None:
        return None
    pieces = text.split("--" + (match.group(1) or match.group(2)))
    if len(pieces) < 3 or not (pieces[0] == "" or pieces[0].endswith(("\n", "\r"))):
        return None
    parts: list[RawPart] = []
    for piece in pieces[1:-1]:
        line_end = piece.lstrip(" \t")
        if not line_end.startswith("\r\n") or not piece.endswith(("\n", "\r")):
            return None
        part = _part(_strip_line_end(line_end[2:]))
        if part is None:
            return None
        parts.append(part)
    closing = pieces[-1]
    if not closing.startswith("--") or closing[2:].lstrip(" \t")[:1] not in ("", "\r", "\n"):
        return None
    return parts


def _part(text: str) -> RawPart | None:
    """One part: its headers, a blank line, its payload; only `application/…` parts."""
    head, sep, payload = text.partition("\r\n\r\n")
    headers = _headers(head) if sep else None
    if not headers:
        return None
    named: dict[str, str] = {}
    for name, value in headers:
        named.setdefault(name.lower(), value)  # Message.get: the first one wins
    kind = named.get("content-type", "text/plain").lower()
    if "content-id" not in named or kind.startswith(("multipart/", "message/")):
        return None
    return named["content-id"], payload


def read_response(payload: str) -> tuple[httplib2.Response, str] | None:
    """An inner answer as `BatchHttpRequest._deserialize_response` reads it, or None."""
    status_line, sep, rest = payload.partition("\n")
    head, blank, content = rest.partition("\r\n\r\n")
    fields = status_line.split(" ", 2)
    headers = _headers(head) if sep and blank and head else None
    if headers is None or len(fields) != 3:
        return None
    protocol, status, reason = fields
    info = {name.lower(): value for name, value in headers}  # httplib2: the last one wins
    info["status"] = status
    resp = httplib2.Response(info)
    resp.reason = reason
    resp.version = int(protocol.split("/", 1)[1].replace(".", ""))
    return resp, content


class LeanBatch(BatchHttpRequest):
    """A `BatchHttpRequest` whose envelope, parts and answers skip the `email` package."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: (connection, headers) → those headers with the credentials applied, for one POST.
        self._applied: dict[tuple[int, tuple[tuple[str, str], ...]], dict[str, str]] = {}

    def _serialize_request(self, request: Any) -> str:
        if request.body is not None:
            return str(super()._serialize_request(request))  # type: ignore[misc]  # not in stubs
        parsed = urllib.parse.urlparse(request.uri)
        target = urllib.parse.urlunparse(("", "", parsed.path, parsed.params, parsed.query, ""))
        headers = self._authorised(request)
        content_type = headers.pop("content-type", "application/json")
        lines = [f"{request.method} {target} HTTP/1.1", f"Content-Type: {content_type}",
                 "MIME-Version: 1.0"]
        lines += [f"{key}: {value}" for key, value in headers.items()]
        lines.append(f"Host: {parsed.netloc}")
        return "\n".join(lines) + "\n\n"

    def _authorised(self, request: Any) -> dict[str, str]:
        """The request's headers with its credentials applied, as the library applies them
        to each part; worked out once a POST for parts with the same headers and
        connection (google-auth's `apply` reads the environment and its access-boundary
        state each time: about a twentieth of the worker's CPU in a full sync, profiled)."""
        key = (id(request.http), tuple(request.headers.items()))
        cache = self._applied
        if key not in cache:
            headers = dict(request.headers)
            if request.http is not None:
                credentials = _auth.get_credentials_from_http(request.http)
                if credentials is not None:
                    _auth.apply_credentials(credentials, headers)
            cache[key] = headers
        return dict(cache[key])

    def _envelope(self, order: list[str], requests: dict[str, Any]) -> tuple[str, str] | None:
        """(boundary, the multipart body `email.generator` writes for these parts), or None
        when one of them needs what only it does (a folded header, a payload with CR)."""
        texts, library = [], _library(self)
        for request_id in order:
            content_id = f"Content-ID: {library._id_to_header(request_id)}"
            body = self._serialize_request(requests[request_id])
            if len(content_id) > _FOLD_AT or not content_id.isascii() or "\r" in body:
                return None
            texts.append("Content-Type: application/http\nMIME-Version: 1.0\n"
                         f"Content-Transfer-Encoding: binary\n{content_id}\n\n{body}")
        everything = "\n".join(texts)
        boundary = self._boundary()
        while f"--{boundary}" in everything:
            boundary = self._boundary()
        return boundary, (f"--{boundary}\n" + f"\n--{boundary}\n".join(texts)
                          + f"\n--{boundary}--\n")

    @staticmethod
    def _boundary() -> str:
        return _boundary()

    def _execute(self, http: Any, order: list[str], requests: dict[str, Any]) -> None:
        self._applied.clear()  # the credentials may have been refreshed since the last POST
        envelope = self._envelope(order, requests)
        if envelope is None:
            super()._execute(http, order, requests)  # type: ignore[misc]  # not in stubs
            return
        boundary, body = envelope
        library = _library(self)
        headers = {"content-type": f'multipart/mixed; boundary="{boundary}"'}
        resp, content = http.request(library._batch_uri, method="POST", body=body,
                                     headers=headers)
        if resp.status >= 300:
            raise HttpError(resp, content, uri=library._batch_uri)
        text = content.decode("utf-8")
        parts = split_answer(resp.get("content-type", ""), text)
        for content_id, payload in parts if parts is not None else _library_split(resp, text):
            request_id = library._header_to_id(content_id)
            response, part_content = (read_response(payload)
                                      or library._deserialize_response(payload))
            if isinstance(part_content, str):
                part_content = part_content.encode("utf-8")
            library._responses[request_id] = (response, part_content)


def _library(batch: BatchHttpRequest) -> Any:
    """The batch as the library sees it: its private helpers are not in the stubs."""
    return batch


def _library_split(resp: Any, text: str) -> list[RawPart]:
    """`BatchHttpRequest._execute`'s own reading of the answer (what `split_answer` is
    measured against, and where it is unsure)."""
    parser = FeedParser()
    parser.feed(f"content-type: {resp['content-type']}\r\n\r\n" + text)
    mime_response: Any = parser.close()
    if not mime_response.is_multipart():
        raise BatchError("Response not in multipart/mixed format.", resp=resp, content=text)
    return [(part["Content-ID"], part.get_payload()) for part in mime_response.get_payload()]


#: A path parameter the library writes unchanged (Gmail's message ids are hex).
_PLAIN_ID = re.compile(r"[0-9A-Za-z]{1,64}")
_SENTINEL = "gwsyncSameMethod0"


class SameMethod:
    """Requests of one method that differ only in one path parameter, copied from one the
    library built: `Resource.method` re-validates every parameter and re-expands the URI
    template for each call, which cost more than the batch part it fills (profiled).

    A copy differs from the library's own request only in its URI, where the sentinel
    stands; a value the library might escape differently (not plain alphanumerics), or a
    template in which the sentinel is not one path segment, is built by the library.
    """

    def __init__(self, build: Callable[[str], Any]) -> None:
        self._build = build
        self._template = build(_SENTINEL)
        head, sep, tail = self._template.uri.partition(f"/{_SENTINEL}")
        self._plain = bool(sep) and _SENTINEL not in tail and tail[:1] in ("?", "")
        self._head, self._tail = head + "/", tail

    def __call__(self, value: str) -> Any:
        if not (self._plain and _PLAIN_ID.fullmatch(value)):
            return self._build(value)
        # `copy.copy` without its generic protocol (`__reduce_ex__`): the same shallow copy
        # of a plain object, for a quarter of the CPU (timed).
        request = object.__new__(type(self._template))
        request.__dict__.update(self._template.__dict__)
        request.uri = self._head + value + self._tail
        request.headers = dict(self._template.headers)
        request.response_callbacks = []
        return request


def new_batch(service: GmailResource, callback: Any) -> LeanBatch:
    """A lean batch posting where `service.new_batch_http_request` would."""
    # the discovery document's batchPath; the stubs omit the private attribute
    uri = service.new_batch_http_request()._batch_uri  # type: ignore[attr-defined]
    return LeanBatch(callback=callback, batch_uri=uri)
