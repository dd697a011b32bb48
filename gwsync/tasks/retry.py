"""How long a job waits before its next try: exponential, capped, from one setting."""

from __future__ import annotations

from gwsync.worker.settings import Settings

CAP_S = 60.0


def backoff(settings: Settings, job_try: int) -> float:
    return float(min(settings.retry_base_s * 2 ** (max(job_try, 1) - 1), CAP_S))
