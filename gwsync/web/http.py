"""The bottom of the web layer: one error shape, bearer auth, the path check.

Every refusal is a JSON body with a machine-readable `error` (`HttpError`); every request
is logged by route, status, error code and duration, never by query string or body (they
can hold OAuth codes and personal data). Route modules import these public names, those of
`gwsync.web.parse` (the one strict path for query strings and bodies) and of
`gwsync.web.ownership` (which account a request may see), and nothing of each other.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from gwsync.connectors.errors import RevokedError, TemporaryError, UnknownGoogleError
from gwsync.core import logs, metrics
from gwsync.domain.api import ErrorBody
from gwsync.tasks.deps import Deps

log = logs.get("gwsync.web")
DEPS = web.AppKey("deps", Deps)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Control characters and lone surrogates: no id or one-line text holds one (PostgreSQL
#: refuses NUL).
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
#: Path parameters are ids and user ids: short, and never control characters.
MAX_PATH_PARAM = 200


class HttpError(web.HTTPException):
    """A refusal with a machine-readable code; raised anywhere in a handler."""

    def __init__(self, http_status: int, error: str, message: str, **extra: Any) -> None:
        self.status_code = http_status
        self.error = error
        body = ErrorBody(error=error, message=message, **extra)
        super().__init__(text=body.model_dump_json(exclude_none=True),
                         content_type="application/json")


def deps_of(request: web.Request) -> Deps:
    return request.app[DEPS]


def bearer_ok(request: web.Request, secret: str | None) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return bool(secret) and scheme.lower() == "bearer" and hmac.compare_digest(
        token.encode(), (secret or "").encode())


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.perf_counter()
    route = request.match_info.route.resource.canonical if request.match_info.route.resource \
        else "unmatched"
    status, error = 500, None
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status, error = exc.status, getattr(exc, "error", None)
        if exc.content_type != "application/json":
            error = exc.reason.lower().replace(" ", "_")
            raise HttpError(exc.status, error, exc.reason) from None
        raise
    except Exception:
        log.exception("request_failed", route=route)
        raise HttpError(500, "internal_error", "the server failed; nothing was changed") from None
    finally:
        metrics.HTTP_REQUESTS.labels(route=route, status=str(status)).inc()
        log.info("request", method=request.method, route=route, status=status, error=error,
                 ms=round((time.perf_counter() - start) * 1000, 1))


def is_staff(request: web.Request) -> bool:
    """Staff routes (`/admin/...`): `auth` lets them through only with the admin token."""
    return request.path.startswith("/admin/")


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/v1/"):
        token = deps_of(request).settings.api_token
        if not bearer_ok(request, token.get_secret_value() if token else None):
            raise HttpError(401, "unauthorized", "a valid bearer token is required")
    elif is_staff(request) or request.path == "/metrics":
        # Staff routes and metrics (fleet sizes, error rates): the app's token is not enough.
        token = deps_of(request).settings.admin_token
        if not bearer_ok(request, token.get_secret_value() if token else None):
            raise HttpError(401, "unauthorized", "the admin bearer token is required")
    check_path(request.match_info)  # once the caller is known, before any handler
    return await handler(request)


def check_path(match_info: Mapping[str, str]) -> None:
    """Path parameters are ids: a control character or an over-long one names nothing."""
    for name, value in match_info.items():
        if len(value) > MAX_PATH_PARAM or CONTROL.search(value):
            raise HttpError(404, "not_found", f"no resource has this {name}")


@contextmanager
def token_endpoint_errors(refused: str) -> Iterator[None]:
    """The token endpoint's answer categories, as this API reports them."""
    try:
        yield
    except RevokedError:
        raise HttpError(400, "invalid_grant", refused) from None
    except TemporaryError:
        raise HttpError(503, "google_unavailable", "could not reach Google; retry") from None
    except UnknownGoogleError:
        raise HttpError(502, "google_refused", "Google refused the token request; check the "
                       "OAuth client configuration") from None
