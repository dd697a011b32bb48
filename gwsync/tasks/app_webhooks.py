"""Deliver the outbox's events to the main app, signed as Standard Webhooks.

The cron claims due events (gwsync/storage/outbox.py), posts each with the
`webhook-id`, `webhook-timestamp` and `webhook-signature` headers the `standardwebhooks`
package computes, and deletes what the app acknowledged with a 2xx. Anything else — an
error status, a timeout, a refused connection — schedules another try with exponential
backoff, until `GWSYNC_APP_WEBHOOK_MAX_ATTEMPTS`; then the event is given up and shown
on the ops page, until an operator queues it again (`gwsync webhooks redeliver`).
Delivery is at least once: the app de-duplicates by `webhook-id`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from standardwebhooks.webhooks import Webhook

from gwsync.core import logs, metrics
from gwsync.core.timeutil import utcnow
from gwsync.storage import outbox
from gwsync.storage.models import AppWebhook
from gwsync.tasks.deps import Deps

log = logs.get("gwsync.app_webhooks")

#: Events claimed per cron run, and posted at once.
BATCH = 100
IN_FLIGHT = 8
#: How long the app may take to answer one delivery.
TIMEOUT_S = 10.0
#: One cron run claims batch after batch while a backlog lasts, for about this long.
PASS_S = 30.0
#: A claimed event whose worker died is tried again after this long.
CLAIM_LEASE_S = 4 * TIMEOUT_S


def signed_headers(secret: str, event_id: str, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of one delivery (a new timestamp on each try)."""
    now = utcnow()
    return {"webhook-id": event_id, "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(event_id, now, body),
            "content-type": "application/json"}


async def deliver_app_webhooks(ctx: dict[str, Any]) -> dict[str, Any]:
    """One pass over the due events (the cron); safe on every worker at once."""
    deps: Deps = ctx["deps"]
    if not deps.outbox.enabled:
        return {"outcome": "disabled"}
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(event: AppWebhook) -> str:
        async with gate:
            return await _deliver(deps, event)

    outcomes: list[str] = []
    deadline = asyncio.get_running_loop().time() + PASS_S
    while True:  # a backlog drains in one run, batch after batch, for up to PASS_S
        events = await outbox.claim_due(deps.sessions, BATCH, CLAIM_LEASE_S)
        outcomes += await asyncio.gather(*(one(e) for e in events))
        if len(events) < BATCH or asyncio.get_running_loop().time() > deadline:
            break
    found = {o: outcomes.count(o) for o in set(outcomes)}
    if found:
        log.info("app_webhooks_sent", **found)
    return {"outcome": "ok", **found}


async def _deliver(deps: Deps, event: AppWebhook) -> str:
    error = await _post(deps, event)
    if error is None:
        await outbox.delivered(deps.sessions, event)
        outcome = "delivered"
    else:
        given_up = await outbox.failed(
            deps.sessions, event, error, max_attempts=deps.settings.app_webhook_max_attempts,
            base_s=deps.settings.app_webhook_backoff_s)
        outcome = "given_up" if given_up else "retry"
        log.warning("app_webhook_failed", event_id=event.id, type=event.type, error=error,
                    attempts=event.attempts, given_up=given_up)
    metrics.APP_WEBHOOK_DELIVERIES.labels(kind=event.type, outcome=outcome).inc()
    return outcome


async def _post(deps: Deps, event: AppWebhook) -> str | None:
    """None when the app acknowledged the event; else what went wrong (no body text)."""
    settings = deps.settings
    if settings.app_webhook_url is None or settings.app_webhook_secret is None:
        return "not_configured"
    body = outbox.body_of(deps.keyring, event)
    headers = signed_headers(settings.app_webhook_secret.get_secret_value(), event.id, body)
    try:
        async with deps.http.post(settings.app_webhook_url, data=body.encode(), headers=headers,
                                  timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
                                  allow_redirects=False) as response:
            return None if 200 <= response.status < 300 else f"http_{response.status}"
    except TimeoutError:
        return "timeout"
    except aiohttp.ClientError as exc:
        return f"network:{type(exc).__name__}"
