"""Google as a fleet meets it: latency, per-user concurrency limits, calls that fail alone.

Off unless a test or benchmark sets ``state.realism = Realism(...)`` (or
``PUT /_emulator/realism``). Each API call — and each part of a batch, which Google runs
as an individual call (docs/google.md §9.4) — then:

- counts against its user's concurrency: Gmail answers 429 "Too many concurrent requests
  for user." (reason ``rateLimitExceeded``) to a call beyond the limit. Reports saw it at
  25–50 parts; Google documents no number, and none for the other APIs, so only Gmail is
  limited here;
- takes a log-normal time with the given median and 99th percentile (real calls are
  tens of milliseconds with a long tail), while counted as in flight;
- fails with probability ``fault_rate``, 500 ``backendError`` or 503, independently of the
  calls around it — so one part of a batch fails alone, as Google's do.

Random draws come from a generator seeded by ``seed``, so a run can be repeated.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gwsync.emulator.errors import GoogleApiError, error_item
from gwsync.emulator.policy_routes import add_policy_routes

PREFIX = "/_emulator/realism"
#: API paths whose calls are limited per user, by the path they start with.
LIMITED = {"/gmail/v1/": "gmail"}
CONCURRENCY_MESSAGE = "Too many concurrent requests for user."
#: z of the 99th percentile of a standard normal: sets the log-normal's spread.
Z99 = 2.326
#: The benchmarks' realistic mode: calls of tens of milliseconds with a long tail
#: (median 80 ms, p99 600 ms), and Gmail refusing a user's 26th concurrent call — the
#: lowest count reports saw refused (docs/google.md §9.4; Google documents none).
REALISTIC: dict[str, Any] = {"latency_median_ms": 80.0, "latency_p99_ms": 600.0,
                             "max_concurrent_per_user": 25}


@dataclass
class Realism:
    """How slow, how crowded and how flaky Google is; counters of what it did."""

    latency_median_ms: float = 0.0
    latency_p99_ms: float = 0.0
    max_concurrent_per_user: int | None = None
    fault_rate: float = 0.0
    seed: int = 0
    refused_concurrency: int = 0
    failed: int = 0
    peak: int = 0
    _rng: random.Random = field(init=False, repr=False)
    _now: Counter[tuple[str, str]] = field(default_factory=Counter, init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def latency_s(self) -> float:
        """One call's latency: log-normal through the median and the 99th percentile."""
        if self.latency_median_ms <= 0:
            return 0.0
        sigma = max(math.log(max(self.latency_p99_ms, self.latency_median_ms)
                             / self.latency_median_ms) / Z99, 0.0)
        return self.latency_median_ms * math.exp(self._rng.gauss(0.0, sigma)) / 1000

    def fails(self) -> int | None:
        """The status this call fails with, or None."""
        if self._rng.random() >= self.fault_rate:
            return None
        self.failed += 1
        return self._rng.choice((500, 503))

    async def around(self, user: str, path: str,
                     call: Callable[[], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Run one call of `user` under the limits."""
        api = next((a for prefix, a in LIMITED.items() if path.startswith(prefix)), None)
        key = (user, api or "")
        if api and self.max_concurrent_per_user is not None and (
                self._now[key] >= self.max_concurrent_per_user):
            self.refused_concurrency += 1
            raise GoogleApiError(429, CONCURRENCY_MESSAGE, "RESOURCE_EXHAUSTED", errors=[
                error_item("rateLimitExceeded", CONCURRENCY_MESSAGE, "usageLimits")])
        self._now[key] += 1
        self.peak = max(self.peak, self._now[key])
        try:
            await asyncio.sleep(self.latency_s())
            status = self.fails()
            if status is not None:
                raise GoogleApiError(status, errors=[error_item(
                    "backendError", "Backend Error")] if status == 500 else None)
            return await call()
        finally:
            self._now[key] -= 1

    def as_json(self) -> dict[str, Any]:
        return {"latency_median_ms": self.latency_median_ms,
                "latency_p99_ms": self.latency_p99_ms,
                "max_concurrent_per_user": self.max_concurrent_per_user,
                "fault_rate": self.fault_rate, "seed": self.seed,
                "refused_concurrency": self.refused_concurrency, "failed": self.failed,
                "peak": self.peak}


def realism_from(body: Any) -> Realism:
    """A policy from the admin body; ValueError (→ 400) on anything else."""
    if not isinstance(body, dict) or set(body) - {
            "latency_median_ms", "latency_p99_ms", "max_concurrent_per_user", "fault_rate",
            "seed"}:
        raise ValueError("body must be an object of latency_median_ms, latency_p99_ms, "
                         "max_concurrent_per_user, fault_rate, seed")
    limit = body.get("max_concurrent_per_user")
    rate = float(body.get("fault_rate", 0.0))
    if not 0.0 <= rate < 1.0 or (limit is not None and (not isinstance(limit, int) or limit < 1)):
        raise ValueError("fault_rate must be in [0, 1) and max_concurrent_per_user >= 1")
    return Realism(float(body.get("latency_median_ms", 0.0)),
                   float(body.get("latency_p99_ms", 0.0)), limit, rate,
                   int(body.get("seed", 0)))


def setup(app: web.Application) -> None:
    add_policy_routes(app, PREFIX, "realism", realism_from)
