"""`gwsync worker --check`: the worker's liveness, as an orchestrator's probe asks for it.

Kept apart from the worker's composition (app.py) so that a probe imports only settings
and Redis: it answers in a fraction of the second an exec probe is usually given.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from arq.constants import health_check_key_suffix

from gwsync.core.settings import Settings

#: How often a worker rewrites its queue's health-check key; arq gives the key this + 1 s to
#: live, so a worker whose loop stopped is seen dead by `gwsync worker --check` within that.
HEALTH_CHECK_INTERVAL_S = 30
#: How long `--check` waits for Redis before it calls the worker unhealthy (a hung Redis
#: makes every worker useless, so it is a failure of the probe, not a reason to wait).
CHECK_TIMEOUT_S = 2.0


def health_check_key(settings: Settings) -> str:
    """The key arq's loop refreshes for the queue these settings name."""
    return settings.queue_name + health_check_key_suffix


async def check(settings: Settings) -> str | None:
    """Why the worker is not live (one line), or None: its Redis answers and the key is fresh.

    The key is per queue, as arq writes it: any live worker of the queue keeps it fresh.
    """
    client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=CHECK_TIMEOUT_S,
                                     socket_connect_timeout=CHECK_TIMEOUT_S)
    key = health_check_key(settings)
    try:
        await client.ping()
        fresh = bool(await client.exists(key))
    except Exception as exc:  # noqa: BLE001 - a probe reports, never raises
        return f"redis does not answer: {type(exc).__name__}"
    finally:
        await client.aclose()
    if not fresh:
        return (f"no worker has refreshed {key} within {HEALTH_CHECK_INTERVAL_S + 1} s "
                "(its loop is stopped or it never started)")
    return None
