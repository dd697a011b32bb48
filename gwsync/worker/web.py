"""The web process: the app's intake API, health, metrics — with one error shape for all.

Every refusal is a JSON body with a machine-readable `error`; every request is logged
by route, status and duration, never by query string (it can hold OAuth codes).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from gwsync.storage.db import current_revision, head_revision
from gwsync.worker import logging, metrics
from gwsync.worker.deps import Deps
from gwsync.worker.settings import Settings

log = logging.get("gwsync.web")
DEPS = web.AppKey("deps", Deps)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(web.HTTPException):
    """A refusal with a machine-readable code; raised anywhere in a handler."""

    def __init__(self, http_status: int, error: str, message: str, **extra: Any) -> None:
        self.status_code = http_status
        super().__init__(text=web.json_response(
            {"error": error, "message": message, **extra}).text,
            content_type="application/json")


def deps_of(request: web.Request) -> Deps:
    return request.app[DEPS]


def _bearer_ok(request: web.Request, secret: str | None) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return bool(secret) and scheme.lower() == "bearer" and hmac.compare_digest(
        token.encode(), (secret or "").encode())


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.perf_counter()
    route = request.match_info.route.resource.canonical if request.match_info.route.resource \
        else "unmatched"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        if exc.content_type != "application/json":
            raise ApiError(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason) from None
        raise
    except Exception:
        log.exception("request_failed", route=route)
        raise ApiError(500, "internal_error", "the server failed; nothing was changed") from None
    finally:
        metrics.HTTP_REQUESTS.labels(route=route, status=str(status)).inc()
        log.info("request", method=request.method, route=route, status=status,
                 ms=round((time.perf_counter() - start) * 1000, 1))


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/v1/"):
        token = deps_of(request).settings.api_token
        if not _bearer_ok(request, token.get_secret_value() if token else None):
            raise ApiError(401, "unauthorized", "a valid bearer token is required")
    elif request.path.startswith("/admin/"):  # staff routes: the app's token is not enough
        token = deps_of(request).settings.admin_token
        if not _bearer_ok(request, token.get_secret_value() if token else None):
            raise ApiError(401, "unauthorized", "the admin bearer token is required")
    return await handler(request)


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "checked": ["process"]})


async def readyz(request: web.Request) -> web.Response:
    deps = deps_of(request)
    checks: dict[str, str] = {}
    try:
        async with deps.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        current = await current_revision(deps.engine)
        checks["database"] = "ok"
        checks["migrations"] = "ok" if current == head_revision() else f"at {current}"
    except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        await deps.queue.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return web.json_response({"status": "ready" if ready else "not_ready", "checks": checks},
                             status=200 if ready else 503)


async def prometheus(request: web.Request) -> web.Response:
    """This process's event metrics, then the state gauges read from the ops snapshot."""
    from gwsync.worker import ops_metrics, ops_snapshot

    try:
        snap: ops_snapshot.OpsSnapshot | None = await ops_snapshot.snapshot(deps_of(request))
    except Exception as exc:  # noqa: BLE001 - a scrape reports `up 0`, never fails
        log.warning("ops_snapshot_failed", error=type(exc).__name__)
        snap = None
    return web.Response(body=generate_latest(metrics.REGISTRY) + ops_metrics.exposition(snap),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(deps: Deps, *, own_deps: bool = False) -> web.Application:
    """The web app over `deps`; with `own_deps` it closes them on shutdown."""
    from gwsync.worker import api, oauth_routes, ops_page, staff, webhooks

    app = web.Application(middlewares=[errors, auth])
    app[DEPS] = deps
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", prometheus)
    api.add_routes(app.router)
    oauth_routes.add_routes(app.router)
    webhooks.add_routes(app, deps)
    staff.add_routes(app.router)
    ops_page.add_routes(app.router)
    if own_deps:
        async def _close(_app: web.Application) -> None:
            await deps.close()
        app.on_cleanup.append(_close)
    return app


def run(settings: Settings) -> None:
    """Start the web process (blocking). Refuses to start without its secrets."""
    settings.require("web")
    logging.configure(settings.log_format, settings.log_level)

    async def _app() -> web.Application:
        return create_app(await Deps.open(settings), own_deps=True)

    web.run_app(_app(), port=settings.port, access_log=None, print=None)
