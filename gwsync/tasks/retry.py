"""How long a job waits before its next try: exponential with jitter, capped, from one
setting — or as long as Google asked, when it sent `Retry-After`."""

from __future__ import annotations

import random

from gwsync.core.settings import Settings

CAP_S = 60.0
#: A `Retry-After` is honoured, plus up to this fraction more, so that the jobs Google
#: turned away at the same moment do not all come back at the same moment.
RETRY_AFTER_SPREAD = 0.1


def backoff(settings: Settings, job_try: int) -> float:
    """Half of the exponential step fixed, half random ("equal jitter"): a fleet that
    failed together spreads out, and no retry comes sooner than half its step."""
    step = float(min(settings.retry_base_s * 2 ** (max(job_try, 1) - 1), CAP_S))
    return step / 2 + random.uniform(0, step / 2)


def retry_delay(settings: Settings, job_try: int, retry_after: float | None) -> float:
    """Google's `Retry-After` when it gave one, else `backoff`."""
    if retry_after is not None and retry_after > 0:
        return retry_after + random.uniform(0, retry_after * RETRY_AFTER_SPREAD)
    return backoff(settings, job_try)
