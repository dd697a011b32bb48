"""google-api-python-client, used the way it is made for, from asyncio.

Services are built from the bundled discovery documents (no network at build time),
one per job and thread, since httplib2 is not thread-safe. Every answer Google gives
is mapped to one of the named error categories here, and nowhere else.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import google_auth_httplib2
import httplib2
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import Resource, build_from_document
from googleapiclient.errors import HttpError

from gwsync.connectors import discovery
from gwsync.connectors.endpoints import Endpoints
from gwsync.connectors.errors import (
    CursorExpiredError,
    GoogleError,
    PermissionLostError,
    TemporaryError,
    UnknownGoogleError,
)
from gwsync.connectors.quota import UNMETERED, Budget, Charge
from gwsync.worker import metrics

#: 403 reasons that mean "slow down", not "no permission" (Google's guides: back off).
RATE_LIMIT_REASONS = frozenset({
    "rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED", "quotaExceeded",
    "dailyLimitExceeded", "RESOURCE_EXHAUSTED",
})
CURSOR_REASONS = frozenset({"EXPIRED_SYNC_TOKEN", "fullSyncRequired"})


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
    return build_from_document(
        document, http=http,
        client_options={"api_endpoint": endpoints.api_roots[api]},
    )


def _reasons(body: dict[str, Any]) -> set[str]:
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    found = {str(e.get("reason")) for e in error.get("errors") or [] if isinstance(e, dict)}
    found |= {str(d.get("reason")) for d in error.get("details") or [] if isinstance(d, dict)}
    if error.get("status"):
        found.add(str(error["status"]))
    return found


def _invalid_page_token(body: dict[str, Any]) -> bool:
    """Drive's answer to a page token it no longer accepts (400 `invalid` at `pageToken`)."""
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    return any(isinstance(e, dict) and e.get("reason") == "invalid"
               and e.get("location") == "pageToken" for e in error.get("errors") or [])


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
    if reasons & CURSOR_REASONS or status == 410 or (
            status == 400 and _invalid_page_token(body if isinstance(body, dict) else {})):
        return CursorExpiredError(detail, status=status)
    if status == 429 or status >= 500 or (status == 403 and reasons & RATE_LIMIT_REASONS):
        return TemporaryError(detail, status=status, retry_after=delay)
    if status in (401, 403):
        return PermissionLostError(detail, status=status)
    return UnknownGoogleError(detail, status=status)


async def execute(call: Callable[[], Any], *, quota: Budget = UNMETERED,
                  charge: Charge | None = None) -> dict[str, Any]:
    """Run one blocking API request in a thread and map its failure to a category.

    The request is paid for from `quota` first: `charge`, or else the method of `call`
    (a `request.execute`); a batch names its charge (n calls of one method).
    """
    async with quota.spend(charge or Charge.of(call)):
        return await _execute(call)


async def _execute(call: Callable[[], Any]) -> dict[str, Any]:
    started, status = time.perf_counter(), "error"
    try:
        result = await asyncio.to_thread(call)
        status = "ok"
    except HttpError as exc:
        status = str(exc.resp.status)
        raise classify_http_error(exc) from None
    except (OSError, httplib2.HttpLib2Error) as exc:
        status = "network"
        raise TemporaryError(f"Google unreachable ({type(exc).__name__})") from None
    finally:
        metrics.google_call(call, status, time.perf_counter() - started)
    if not isinstance(result, dict):
        raise UnknownGoogleError("Google answered with something other than an object")
    return result
