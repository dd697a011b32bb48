"""Every answer Google gives maps to one named error category, and the error's detail
never carries what Google's message said."""

from __future__ import annotations

import json
from typing import Any

import httplib2
import pytest
from googleapiclient.errors import HttpError

from gwsync.connectors.client import classify_http_error
from gwsync.connectors.errors import (
    Category,
    CursorExpiredError,
    GoogleError,
    PageTokenRefusedError,
    PermissionLostError,
    TemporaryError,
    UnknownGoogleError,
)

#: Text a Google error message could hold; it must never reach an error's detail.
PRIVATE = "ada.lovelace@example.com"


PEOPLE = "https://people.googleapis.com/v1/people/me/connections?personFields=names"


def http_error(status: int, body: Any, *, retry_after: str | None = "7",
               uri: str = PEOPLE) -> HttpError:
    headers: dict[str, Any] = {"status": status, "content-type": "application/json"}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpError(httplib2.Response(headers), content, uri=uri)


def rpc_error(code: int, status: str, reason: str | None = None) -> dict[str, Any]:
    """A `google.rpc.Status` body (People, newer APIs), with an ErrorInfo reason."""
    error: dict[str, Any] = {"code": code, "message": f"Problem with {PRIVATE}",
                             "status": status}
    if reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                             "reason": reason, "domain": "googleapis.com"}]
    return {"error": error}


def legacy_error(code: int, reason: str, domain: str = "usageLimits") -> dict[str, Any]:
    """An `errors[]` body (Gmail, Calendar, Drive)."""
    return {"error": {"code": code, "message": f"Problem with {PRIVATE}",
                      "errors": [{"domain": domain, "reason": reason,
                                  "message": f"Problem with {PRIVATE}"}]}}


CASES: list[tuple[str, int, Any, type[GoogleError]]] = [
    ("people-expired-sync-token", 400,
     rpc_error(400, "FAILED_PRECONDITION", "EXPIRED_SYNC_TOKEN"), CursorExpiredError),
    ("calendar-full-sync-required", 410,
     legacy_error(410, "fullSyncRequired", "calendar"), CursorExpiredError),
    ("410-without-reason", 410, {}, CursorExpiredError),
    ("429", 429, rpc_error(429, "RESOURCE_EXHAUSTED", "RATE_LIMIT_EXCEEDED"), TemporaryError),
    ("503", 503, rpc_error(503, "UNAVAILABLE"), TemporaryError),
    ("500", 500, legacy_error(500, "backendError", "global"), TemporaryError),
    ("403-user-rate-limit", 403, legacy_error(403, "userRateLimitExceeded"), TemporaryError),
    ("403-rate-limit", 403, legacy_error(403, "rateLimitExceeded"), TemporaryError),
    ("403-scope-insufficient", 403,
     rpc_error(403, "PERMISSION_DENIED", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"), PermissionLostError),
    ("403-insufficient-permissions", 403,
     legacy_error(403, "insufficientPermissions", "global"), PermissionLostError),
    ("401", 401, rpc_error(401, "UNAUTHENTICATED"), PermissionLostError),
    ("404", 404, rpc_error(404, "NOT_FOUND"), UnknownGoogleError),
    ("400-bad-argument", 400, rpc_error(400, "INVALID_ARGUMENT"), UnknownGoogleError),
]


@pytest.mark.parametrize(("status", "body", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_each_answer_maps_to_its_category(
    status: int, body: Any, expected: type[GoogleError]
) -> None:
    """An HTTP error from Google becomes the named error its status and reason mean."""
    error = classify_http_error(http_error(status, body))
    assert type(error) is expected
    assert error.status == status


@pytest.mark.parametrize(("status", "body"), [c[1:3] for c in CASES], ids=[c[0] for c in CASES])
def test_detail_never_repeats_googles_message(status: int, body: Any) -> None:
    """The detail names status and reasons only, never the body's message text."""
    error = classify_http_error(http_error(status, body))
    assert error.detail.startswith(f"HTTP {status}")
    assert PRIVATE not in error.detail
    assert "Problem with" not in error.detail
    assert PRIVATE not in str(error)


#: A 400 to a paged call, in each API's words (Drive's is documented, Gmail's observed,
#: Calendar's and People's are the emulator's guesses).
PAGED = [
    ("drive", "https://www.googleapis.com/drive/v3/files?pageSize=3&pageToken=x",
     {"error": {"code": 400, "message": "Invalid Value", "errors": [
         {"domain": "global", "reason": "invalid", "message": "Invalid Value",
          "locationType": "parameter", "location": "pageToken"}]}}),
    ("gmail", "https://gmail.googleapis.com/gmail/v1/users/me/messages?pageToken=x",
     legacy_error(400, "invalidArgument", "global")),
    ("calendar", "https://www.googleapis.com/calendar/v3/calendars/primary/events?pageToken=x",
     legacy_error(400, "invalid", "global")),
    ("people", PEOPLE + "&pageToken=x", rpc_error(400, "INVALID_ARGUMENT")),
]


@pytest.mark.parametrize(("uri", "body"), [p[1:] for p in PAGED], ids=[p[0] for p in PAGED])
def test_a_400_to_a_paged_call_is_a_refused_page_token(uri: str, body: Any) -> None:
    """Whatever the API's words, a 400 to a call carrying a page token means the token
    is refused — a cursor to drop, so the crawl lists again from its first page."""
    error = classify_http_error(http_error(400, body, uri=uri))
    assert type(error) is PageTokenRefusedError
    assert error.category is Category.CURSOR_EXPIRED


@pytest.mark.parametrize("error", [
    {"code": 400, "message": "Sync token is expired. Clear local cache and retry call "
     "without the sync token.", "status": "INVALID_ARGUMENT"},
    {"code": 400, "message": "Request contains an invalid argument.",
     "status": "FAILED_PRECONDITION"},
], ids=["message", "status"])
def test_an_expired_sync_token_is_recognised_without_details(error: dict[str, Any]) -> None:
    """People's expired sync token is a cursor to drop even when the body carries no
    ErrorInfo `details` naming EXPIRED_SYNC_TOKEN."""
    found = classify_http_error(http_error(400, {"error": error},
                                           uri=PEOPLE + "&syncToken=abc"))
    assert type(found) is CursorExpiredError
    plain = classify_http_error(http_error(400, {"error": error}))  # no sync token sent
    assert type(plain) is UnknownGoogleError


def test_the_reason_is_named_in_the_detail() -> None:
    """The machine-readable reason is kept so operators can tell failures apart."""
    error = classify_http_error(
        http_error(400, rpc_error(400, "FAILED_PRECONDITION", "EXPIRED_SYNC_TOKEN")))
    assert "EXPIRED_SYNC_TOKEN" in error.detail


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_parsed_for_temporary_errors(status: int) -> None:
    """A numeric `Retry-After` header becomes the error's retry delay in seconds."""
    error = classify_http_error(http_error(status, rpc_error(status, "UNAVAILABLE")))
    assert isinstance(error, TemporaryError)
    assert error.retry_after == 7.0
    assert error.category is Category.TEMPORARY


@pytest.mark.parametrize("header", [None, "Wed, 21 Oct 2026 07:28:00 GMT", "soon"])
def test_retry_after_that_is_absent_or_not_seconds_is_none(header: str | None) -> None:
    """Without a usable `Retry-After` the caller falls back to its own backoff."""
    error = classify_http_error(http_error(503, {}, retry_after=header))
    assert isinstance(error, TemporaryError)
    assert error.retry_after is None


@pytest.mark.parametrize(
    "content",
    [b"<html><body>502 Bad Gateway for ada.lovelace@example.com</body></html>", b"",
     b"\xff\xfe not utf-8", b"[1, 2, 3]", b'{"error": "invalid_token"}', b"null"],
    ids=["html", "empty", "not-utf8", "json-list", "oauth-style", "json-null"],
)
@pytest.mark.parametrize(("status", "expected"),
                         [(502, TemporaryError), (401, PermissionLostError),
                          (404, UnknownGoogleError)])
def test_a_body_that_is_not_googles_json_does_not_crash(
    content: bytes, status: int, expected: type[GoogleError]
) -> None:
    """An HTML, empty or oddly shaped body is classified by status alone, and not echoed."""
    error = classify_http_error(http_error(status, content, retry_after=None))
    assert type(error) is expected
    assert error.detail == f"HTTP {status} no reason"


@pytest.mark.parametrize(
    ("reason", "domain"),
    [("quotaExceeded", "usageLimits"), ("dailyLimitExceeded", "usageLimits")],
)
def test_usage_limit_403s_are_temporary(reason: str, domain: str) -> None:
    """A 403 that reports a usage limit is retried later, not treated as lost permission."""
    error = classify_http_error(http_error(403, legacy_error(403, reason, domain)))
    assert isinstance(error, TemporaryError)
