"""Liveness, readiness and Prometheus metrics of the web process."""

from __future__ import annotations

import functools

from aiohttp import web
from alembic.script import ScriptDirectory
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from gwsync.core import logs, metrics
from gwsync.domain.api import Liveness, Readiness
from gwsync.storage import ops_snapshot, pseudonyms
from gwsync.storage.db import alembic_config, current_revision, head_revision
from gwsync.web import ops_metrics
from gwsync.web.answers import answer
from gwsync.web.http import deps_of

log = logs.get("gwsync.web")


async def healthz(_request: web.Request) -> web.Response:
    return answer(Liveness(status="ok", checked=["process"]))


@functools.cache
def _known_revisions() -> frozenset[str]:
    """Every revision this code's migration scripts know (read once per process)."""
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return frozenset(script.revision for script in scripts.walk_revisions())


def migration_check(current: str | None) -> tuple[str, bool]:
    """What the database's revision means for this code, and whether it may serve.

    A revision the scripts do not know was written by newer code: a rolling deploy runs
    `release: gwsync migrate` before the old processes stop, so they must stay ready
    (migrations only add what old code ignores). A known revision short of head is a
    schema this code would fail on.
    """
    head = head_revision()
    if current == head:
        return "ok", True
    if current is not None and current not in _known_revisions():
        return f"ahead of this code (at {current})", True
    return f"behind this code (at {current or 'no revision'}, needs {head})", False


async def readyz(request: web.Request) -> web.Response:
    deps = deps_of(request)
    checks: dict[str, str] = {}
    ready = True
    try:
        async with deps.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        current = await current_revision(deps.engine)
        checks["database"] = "ok"
        checks["migrations"], schema_fits = migration_check(current)
        keyed = schema_fits and await pseudonyms.ensure(deps.sessions, deps.keyring)
        checks["pseudonym_key"] = "ok" if keyed else "waiting for the schema"
        ready = ready and keyed
    except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
        checks["database"] = f"error: {type(exc).__name__}"
        ready = False
    try:
        await deps.queue.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"error: {type(exc).__name__}"
        ready = False
    return answer(Readiness(status="ready" if ready else "not_ready", checks=checks),
                  status=200 if ready else 503)


async def prometheus(request: web.Request) -> web.Response:
    """This process's event metrics, then the state gauges read from the ops snapshot."""
    try:
        snap: ops_snapshot.OpsSnapshot | None = await deps_of(request).snapshot()
    except Exception as exc:  # noqa: BLE001 - a scrape reports `up 0`, never fails
        log.warning("ops_snapshot_failed", error=type(exc).__name__)
        snap = None
    return web.Response(body=generate_latest(metrics.REGISTRY) + ops_metrics.exposition(snap),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/healthz", healthz)
    router.add_get("/readyz", readyz)
    router.add_get("/metrics", prometheus)
