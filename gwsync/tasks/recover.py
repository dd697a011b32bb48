"""Recovery cron: erasures that a crash or a Redis outage left unfinished are queued again."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from gwsync.storage.models import Erasure
from gwsync.worker import logging
from gwsync.worker.deps import Deps

log = logging.get("gwsync.recover")


async def resume_erasures(ctx: dict[str, Any]) -> int:
    deps: Deps = ctx["deps"]
    async with deps.sessions() as session:
        pending = list(await session.scalars(
            select(Erasure.id).where(Erasure.state != "verified")))
    queued = 0
    for erasure_id in pending:
        queued += await deps.queue.enqueue_erasure(erasure_id)
    if queued:
        log.info("erasures_resumed", count=queued)
    return queued
