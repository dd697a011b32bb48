"""Google's batch endpoint: many API calls in one ``multipart/mixed`` POST.

Each part (``Content-Type: application/http``) holds one HTTP request with a path-only
target; the headers of the outer request apply to every part unless the part sets
them. Each inner request runs through this same application — routing, faults, the
``google_api`` bearer/scope check and the call log — so n batched calls count as n
calls, as they do in Google's quota. The answer is ``multipart/mixed`` with one
``application/http`` response per part, ``Content-ID: <response-…>``, in order; an
error inside a part never fails the batch (docs/google.md §5.6).

Served at ``/batch`` (the discovery ``batchPath`` of Gmail and People, posted to their
own hosts) and ``/batch/{api}/{version}`` (Calendar, Drive, and the documented Gmail form).
"""

from __future__ import annotations

import asyncio
import email.message
import email.parser
import email.policy
import json
import re
import secrets
from dataclasses import dataclass
from http import HTTPStatus

from aiohttp import web
from multidict import CIMultiDict

from gwsync.emulator.errors import GoogleApiError, invalid_argument

#: Per API, where its inner paths start and how many calls one batch may hold.
API_PREFIXES = {("gmail", "v1"): "/gmail/v1/", ("calendar", "v3"): "/calendar/v3/",
                ("drive", "v3"): "/drive/v3/", ("people", "v1"): "/v1/"}
LIMITS = {"calendar": 1000}
DEFAULT_LIMIT = 100
#: Outer headers that describe the envelope, not the calls, so parts do not inherit them.
_ENVELOPE = frozenset({"content-type", "content-length", "content-transfer-encoding",
                       "host", "transfer-encoding", "accept-encoding"})
_BLANK_LINE = re.compile(r"\r?\n\r?\n")


@dataclass(frozen=True)
class Part:
    """One inner request."""

    content_id: str | None
    method: str
    target: str
    headers: CIMultiDict[str]
    body: bytes


@dataclass(frozen=True)
class Answer:
    """One inner response."""

    status: int
    headers: CIMultiDict[str]
    body: bytes


def _parse_part(text: str, content_id: str | None) -> Part:
    """An ``application/http`` request: request line, headers, blank line, body."""
    head, *rest = _BLANK_LINE.split(text.lstrip("\r\n"), maxsplit=1)
    body = rest[0] if rest else ""
    lines = head.splitlines()
    request_line = lines[0].split(" ") if lines else []
    if len(request_line) < 2 or not request_line[1].startswith("/"):
        raise invalid_argument("Each batch part must hold an HTTP request with a path-only URL.")
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.add(name.strip(), value.strip())
    return Part(content_id, request_line[0].upper(), request_line[1], headers, body.encode())


def parse_batch(content_type: str, body: bytes) -> list[Part]:
    """The inner requests of a ``multipart/mixed`` body, in order."""
    if not content_type.lower().startswith("multipart/mixed"):
        raise invalid_argument("A batch request must be multipart/mixed.")
    # Bytes as the email package reads them, so both paths see the same text.
    text = body.decode("ascii", "surrogateescape")
    split = split_plain(content_type, text)
    if split is None:
        split = _split_by_email_package(content_type, text)
    parts = []
    for headers, payload in split:
        if _content_type(headers.get("content-type", "text/plain")) != "application/http":
            raise invalid_argument("Each batch part must be of type application/http.")
        try:
            decoded = payload.encode("ascii", "surrogateescape").decode("utf-8")
        except UnicodeDecodeError:
            raise invalid_argument("Each batch part must be UTF-8 text.") from None
        parts.append(_parse_part(decoded, headers.get("content-id")))
    return parts


#: Raw part headers (first value of each name, lower-cased) and the part's payload text.
SplitPart = tuple[dict[str, str], str]
_BOUNDARY_PARAM = re.compile(r';[ \t]*boundary=(?:"([^"\\\r\n]+)"|([^\s";]+))[ \t]*$', re.I)
_HEADER_LINE = re.compile(r"[\041-\071\073-\176]+:")
_IDENTITY = frozenset({"7bit", "8bit", "binary"})


def _content_type(value: str) -> str:
    """A Content-Type's type/subtype, lower-cased, as `email.message` reads it: its
    parameters dropped, and text/plain if it is not one type/subtype."""
    kind = value.split(";", 1)[0].strip().lower()
    return kind if kind.count("/") == 1 else "text/plain"


def split_plain(content_type: str, text: str) -> list[SplitPart] | None:
    """The parts of a batch body as the email package would read them, by string work.

    The email package compiles a regular expression for every boundary it meets, and
    every batch has a boundary of its own: a third of the emulator's CPU in a Gmail sync
    went there. This reads the shape clients send (a boundary alone on its line, LF or
    CRLF lines, unfolded headers, identity transfer encodings) and answers None for
    anything else, which `parse_batch` leaves to the email package.
    tests/emulator/test_emulator_batch_split.py holds the two to the same answers.
    """
    found = _BOUNDARY_PARAM.search(content_type)
    if found is None:
        return None
    pieces = text.split("--" + (found.group(1) or found.group(2)))
    closing = pieces[-1]
    if len(pieces) < 3 or pieces[0] or closing.rstrip("\r\n") != "--":
        return None
    parts = []
    for piece in pieces[1:-1]:
        part = _plain_part(piece)
        if part is None:
            return None
        parts.append(part)
    return parts


def _plain_part(piece: str) -> SplitPart | None:
    """One part between two boundary lines, or None if it is not the plain shape."""
    for end in ("\r\n", "\n"):
        if piece.startswith(end) and piece.endswith(end):
            inner = piece[len(end):-len(end)]
            head, blank, payload = inner.partition(end + end)
            if not blank:
                return None
            if (end == "\n" and piece.endswith("\r\n")) or "\r" in head.replace(end, ""):
                return None  # a line end the email package would read otherwise
            headers: dict[str, str] = {}
            for line in head.split(end):
                if "\n" in line or not _HEADER_LINE.match(line):
                    return None
                name, _, value = line.partition(":")
                headers.setdefault(name.lower(), value.lstrip(" \t"))
            encoding = headers.get("content-transfer-encoding", "7bit").strip().lower()
            return (headers, payload) if encoding in _IDENTITY else None
    return None


def _split_by_email_package(content_type: str, text: str) -> list[SplitPart]:
    """Any multipart body, through the email package (decoding transfer encodings)."""
    message = email.parser.Parser(policy=email.policy.compat32).parsestr(
        f"Content-Type: {content_type}\r\n\r\n" + text)
    if not message.is_multipart():
        raise invalid_argument("A batch request must be multipart/mixed with a boundary.")
    parts = []
    for sub in message.get_payload():
        if not isinstance(sub, email.message.Message):
            raise invalid_argument("Each batch part must be of type application/http.")
        headers: dict[str, str] = {}
        for name, value in sub.items():
            headers.setdefault(name.lower(), value)
        headers["content-type"] = sub.get_content_type()
        payload = sub.get_payload(decode=True)
        parts.append((headers, payload.decode("ascii", "surrogateescape")
                      if isinstance(payload, bytes) else ""))
    return parts


def _check_api(parts: list[Part], api: str | None, version: str | None) -> None:
    """All parts target one API, within its batch limit (Google's messages unknown)."""
    if api is not None:
        prefix = API_PREFIXES.get((api, version or ""))
        if prefix is None:
            raise GoogleApiError(404)
        if any(not p.target.startswith(prefix) for p in parts):
            raise invalid_argument(f"Every request in this batch must target {prefix}.")
    if any(p.target.startswith("/batch") for p in parts):
        raise invalid_argument("Batch requests cannot be nested.")
    name = api or next((a for (a, _), pre in API_PREFIXES.items()
                        if parts and parts[0].target.startswith(pre)), "")
    limit = LIMITS.get(name, DEFAULT_LIMIT)
    if len(parts) > limit:
        raise invalid_argument(f"Too many requests in batch: at most {limit} are allowed.")


async def _run(request: web.Request, part: Part) -> Answer:
    """One inner request through this application, as if it had come on its own.

    `request` is an unread clone of the batch POST (aiohttp clones only unread requests).
    """
    headers = CIMultiDict((k, v) for k, v in request.headers.items()
                          if k.lower() not in _ENVELOPE and k not in part.headers)
    headers.extend(part.headers)
    inner = request.clone(method=part.method, rel_url=part.target, headers=headers)
    inner._read_bytes = part.body  # noqa: SLF001 — aiohttp's clone keeps the outer body
    try:
        response = await request.app._handle(inner)  # noqa: SLF001 — routing + middlewares
    except web.HTTPException as exc:
        error = GoogleApiError(exc.status)
        return Answer(exc.status, CIMultiDict({"Content-Type": "application/json; "
                                               "charset=UTF-8"}),
                      json.dumps(error.body()).encode())
    if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
        raise GoogleApiError(500, "The emulator cannot batch a streamed response.")
    return Answer(response.status, CIMultiDict(response.headers), response.body)


def _render(boundary: str, parts: list[Part], answers: list[Answer]) -> bytes:
    """The multipart/mixed answer, CRLF line ends, a response per part in order."""
    out = []
    for part, answer in zip(parts, answers, strict=True):
        out.append(f"--{boundary}\r\nContent-Type: application/http\r\n")
        if part.content_id:
            out.append(f"Content-ID: <response-{part.content_id.strip().strip('<>')}>\r\n")
        out.append(f"\r\nHTTP/1.1 {answer.status} {HTTPStatus(answer.status).phrase}\r\n")
        for name, value in answer.headers.items():
            if name.lower() != "content-length":
                out.append(f"{name}: {value}\r\n")
        out.append(f"Content-Length: {len(answer.body)}\r\n\r\n")
        out.append(answer.body.decode("utf-8") + "\r\n")
    out.append(f"--{boundary}--\r\n")
    return "".join(out).encode("utf-8")


async def batch(request: web.Request) -> web.Response:
    """``POST /batch`` and ``POST /batch/{api}/{version}``."""
    template = request.clone()
    parts = parse_batch(request.headers.get("Content-Type", ""), await request.read())
    _check_api(parts, request.match_info.get("api"), request.match_info.get("version"))
    # Google runs the parts as individual calls, side by side (docs/google.md §9.4).
    answers = list(await asyncio.gather(*(_run(template, part) for part in parts)))
    boundary = "batch_" + secrets.token_urlsafe(12)
    return web.Response(body=_render(boundary, parts, answers),
                        headers={"Content-Type": f"multipart/mixed; boundary={boundary}"})


def setup(app: web.Application) -> None:
    """Register the batch routes."""
    app.router.add_post("/batch", batch)
    app.router.add_post("/batch/{api}/{version}", batch)
