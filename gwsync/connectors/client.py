"""google-api-python-client, used the way it is made for, from asyncio.

Services are built from the bundled discovery documents (no network at build time),
one per job and thread, since httplib2 is not thread-safe. Every answer Google gives
is mapped to one of the named error categories here, and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, Literal, overload

import google_auth_httplib2
import httplib2
from google.auth.exceptions import RefreshError
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import (  # type: ignore[attr-defined]  # the stubs omit it
    Resource,
    build_from_document,
)
from googleapiclient.errors import HttpError

from gwsync.connectors.endpoints import Endpoints
from gwsync.connectors.errors import (
    CursorExpiredError,
    GoogleError,
    PageTokenRefusedError,
    PermissionLostError,
    TemporaryError,
    UnknownGoogleError,
)
from gwsync.connectors.quota import UNMETERED, Budget, Charge
from gwsync.core import discovery, metrics

if TYPE_CHECKING:  # the per-API resource types exist only in the stubs
    from googleapiclient._apis.calendar.v3 import CalendarResource
    from googleapiclient._apis.drive.v3 import DriveResource
    from googleapiclient._apis.gmail.v1 import GmailResource
    from googleapiclient._apis.people.v1 import PeopleServiceResource

#: 403 reasons that mean "slow down", not "no permission" (Google's guides: back off).
RATE_LIMIT_REASONS = frozenset({
    "rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED", "quotaExceeded",
    "dailyLimitExceeded", "RESOURCE_EXHAUSTED",
})
CURSOR_REASONS = frozenset({"EXPIRED_SYNC_TOKEN", "fullSyncRequired"})


@overload
def service(api: Literal["calendar"], access_token: str, endpoints: Endpoints,
            timeout_s: float) -> CalendarResource: ...
@overload
def service(api: Literal["drive"], access_token: str, endpoints: Endpoints,
            timeout_s: float) -> DriveResource: ...
@overload
def service(api: Literal["gmail"], access_token: str, endpoints: Endpoints,
            timeout_s: float) -> GmailResource: ...
@overload
def service(api: Literal["people"], access_token: str, endpoints: Endpoints,
            timeout_s: float) -> PeopleServiceResource: ...
@overload
def service(api: str, access_token: str, endpoints: Endpoints, timeout_s: float) -> Resource: ...
def service(api: str, access_token: str, endpoints: Endpoints, timeout_s: float) -> Resource:
    """A client for `api` that authenticates with this job's access token only.

    Close it (`resource.close()`) when the job ends: httplib2 keeps connections open.
    """
    http = google_auth_httplib2.AuthorizedHttp(
        Credentials(token=access_token), http=httplib2.Http(timeout=timeout_s)
    )
    document = discovery.document(api)
    if endpoints.root_url:  # batch URIs are built from rootUrl, not from api_endpoint
        document = {**document, "rootUrl": endpoints.root_url}
    built: Resource = build_from_document(
        document, http=http,
        client_options={"api_endpoint": endpoints.api_roots[api]},
    )
    return built


def _reasons(body: dict[str, Any]) -> set[str]:
    error = body["error"] if isinstance(body.get("error"), dict) else {}
    found = {str(e.get("reason")) for e in error.get("errors") or [] if isinstance(e, dict)}
    found |= {str(d.get("reason")) for d in error.get("details") or [] if isinstance(d, dict)}
    if error.get("status"):
        found.add(str(error["status"]))
    return found


def _refused_page_token(status: int, uri: str | None) -> bool:
    """A 400 to a call that carried a page token: the token is refused.

    Only Drive documents its answer (400 `invalid` at `pageToken`); Gmail was seen
    answering 400 "Invalid pageToken"; Calendar's and People's answers to an expired
    page token are undocumented. So any 400 to a paged call counts: the caller lists
    again from the first page, which either works or meets the same 400 for what it is
    (docs/google.md §9.1).
    """
    return status == 400 and "pageToken=" in (uri or "")


def _expired_sync_token(status: int, uri: str | None, body: dict[str, Any]) -> bool:
    """People's expired sync token without the ErrorInfo `details` that name it.

    Observed as HTTP 400 "Sync token is expired. Clear local cache and retry call without
    the sync token." (its gRPC status, likely FAILED_PRECONDITION, is unconfirmed); the
    reason `EXPIRED_SYNC_TOKEN` is documented only inside `details` (docs/google.md §9.9).
    """
    if status != 400 or "syncToken=" not in (uri or ""):
        return False
    error = body["error"] if isinstance(body.get("error"), dict) else {}
    message = str(error.get("message", "")).lower()
    return error.get("status") == "FAILED_PRECONDITION" or (
        "sync token" in message and "expired" in message)


def classify_http_error(exc: HttpError) -> GoogleError:
    status = int(exc.resp.status)
    try:
        body = json.loads(exc.content or b"{}")
    except ValueError:
        body = {}
    reasons = _reasons(body if isinstance(body, dict) else {})
    retry_after = exc.resp.get("retry-after")
    delay = float(retry_after) if retry_after and retry_after.isdigit() else None
    detail = f"HTTP {status} {','.join(sorted(reasons)) or 'no reason'}"
    if _refused_page_token(status, exc.uri):
        return PageTokenRefusedError(detail, status=status)
    if reasons & CURSOR_REASONS or status == 410 or _expired_sync_token(
            status, exc.uri, body if isinstance(body, dict) else {}):
        return CursorExpiredError(detail, status=status)
    if status == 429 or status >= 500 or (status == 403 and reasons & RATE_LIMIT_REASONS):
        return TemporaryError(detail, status=status, retry_after=delay)
    if status in (401, 403):
        return PermissionLostError(detail, status=status)
    return UnknownGoogleError(detail, status=status)


async def execute(call: Callable[[], Any], *, quota: Budget = UNMETERED,
                  charge: Charge | None = None,
                  executor: Executor | None = None) -> dict[str, Any]:
    """Run one blocking API request in a thread and map its failure to a category.

    The thread is the loop's default pool's, or `executor`'s: a caller that keeps
    several requests in flight at once gives them threads of their own, so they are not
    queued behind every other job's calls (the default pool has cpu count + 4 threads).

    The request is paid for from `quota`: `charge`, or else the method of `call` (a
    `request.execute`); a batch names its charge (n calls of one method). The budget asks
    its guard before each try to charge — after any quota wait too, since an erasure may
    begin during one — so an erased account's call neither charges quota (which would bring
    back the quota keys the erasure deleted, docs/architecture.md §8) nor leaves.
    """
    async with quota.spend(charge or Charge.of(call)):
        return await _execute(call, executor)


async def _execute(call: Callable[[], Any], executor: Executor | None = None) -> dict[str, Any]:
    started, status = time.perf_counter(), "error"
    try:
        if executor is None:
            result = await asyncio.to_thread(call)
        else:  # as to_thread does: the caller's context (log bindings) goes along
            run = functools.partial(contextvars.copy_context().run, call)
            result = await asyncio.get_running_loop().run_in_executor(executor, run)
        status = "ok"
    except HttpError as exc:
        status = str(exc.resp.status)
        raise classify_http_error(exc) from None
    except (OSError, httplib2.HttpLib2Error) as exc:
        status = "network"
        raise TemporaryError(f"Google unreachable ({type(exc).__name__})") from None
    except RefreshError:
        # A 401 mid-run: the access token was revoked (or expired). A job's credentials
        # hold only that token, so google-auth-httplib2's refresh attempt raises
        # RefreshError. The grant may be gone: a lost permission, which the sync job
        # re-checks with the refresh token (invalid_grant → erasure). docs/google.md §9.8.
        status = "401"
        raise PermissionLostError("HTTP 401 access token refused", status=401) from None
    finally:
        metrics.google_call(call, status, time.perf_counter() - started)
    if not isinstance(result, dict):
        raise UnknownGoogleError("Google answered with something other than an object")
    return result
