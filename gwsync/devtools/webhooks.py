"""`gwsync webhooks redeliver`: send given-up webhooks to the main app again.

An event is given up after `GWSYNC_APP_WEBHOOK_MAX_ATTEMPTS` failed tries (the app was
down longer than the retry span, or refused it). Once the app is fixed, an operator queues
the given-up events again — all written since a time, or some by id (the ops page and the
app's logs name them) — and the worker's delivery cron sends them with a fresh retry
budget and their original `webhook-id`, so the app de-duplicates them as any retry. Only
events that still hold their body can be sent (`GWSYNC_APP_WEBHOOK_KEEP_FAILED_S`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gwsync.core.settings import Settings
from gwsync.storage import outbox
from gwsync.storage.db import create_engine, session_factory


async def redeliver(settings: Settings, ids: Sequence[str] | None,
                    since: datetime | None) -> outbox.Redelivered:
    """Queue the chosen given-up events again; closes what it opened."""
    engine = create_engine(settings.database_url)
    try:
        return await outbox.redeliver(session_factory(engine), ids=ids, since=since)
    finally:
        await engine.dispose()
