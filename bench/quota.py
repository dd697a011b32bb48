"""Quota utilisation: one user's mail_activity full sync while the emulator enforces a
per-user Gmail quota, and the worker's limiter (gwsync/connectors/quota.py) spends the
same budget from Redis. Figure: achieved units per second ÷ the ceiling, in the steady
state — from one window after the first charge (the first window's burst is free, so
counting it would flatter the figure) to the last charge — with zero failed jobs.

To keep the run short the ceiling is scaled down from Google's 15,000 units/min: the
window and the limit are set to the same values on both sides.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.harness import Deployment, mail_scope
from bench.report import Row

NAME = "quota utilisation"
PLACEHOLDERS = (("achieved units/s ÷ ceiling", "≥ 0.90, 0 failed jobs"),)
#: (ceiling in units/s, window in s) at full and quick size.
FULL = (1000, 10.0)
QUICK = (500, 1.0)


def settings_for(quick: bool) -> tuple[tuple[str, Any], ...]:
    ceiling, window = QUICK if quick else FULL
    return (("quota_enabled", True), ("quota_window_s", window),
            ("quota_gmail_user_per_min", int(ceiling * 60)))


async def _sample(dep: Deployment, samples: list[tuple[float, int]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        policy = await dep.emulator.admin("GET", "/_emulator/quota")
        samples.append((time.monotonic(), int(policy.get("charged", {}).get("gmail", 0))))
        await asyncio.sleep(0.1)


def steady_rate(samples: list[tuple[float, int]], window: float) -> float:
    """Units per second between one window after the first charge and the last charge."""
    charged = [(t, u) for t, u in samples if u > 0]
    first_t = charged[0][0]
    last_t, last_u = next((t, u) for t, u in charged if u == charged[-1][1])
    begin = [(t, u) for t, u in charged if t >= first_t + window]
    if not begin or last_t <= begin[0][0]:
        return float("nan")
    return (last_u - begin[0][1]) / (last_t - begin[0][0])


async def run(dep: Deployment, n: int) -> list[Row]:
    window = dep.settings.quota_window_s
    ceiling = dep.settings.quota_gmail_user_per_min / 60
    await dep.emulator.admin("PUT", "/_emulator/quota", {
        "per_user": {"gmail": int(ceiling * window)}, "window_s": window})
    _, token = await dep.emulator.gmail_user(n)
    account_id = await dep.connect(token, mail_scope())
    await dep.start_worker()
    samples: list[tuple[float, int]] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample(dep, samples, stop))
    try:
        state = await dep.sync(account_id, "mail_activity")
    finally:
        stop.set()
        await sampler
        await dep.stop_workers()
    policy = await dep.emulator.admin("GET", "/_emulator/quota")
    rate = steady_rate(samples, window)
    failed = 0 if state.status == "ok" else 1
    refused = int(policy.get("refused", {}).get("gmail", 0))
    ratio = rate / ceiling
    return [Row(NAME, f"achieved units/s ÷ ceiling ({n:,}-message full sync; ceiling "
                f"{ceiling:,.0f} units/s in a {window:g} s window; {rate:,.0f} units/s; "
                f"{failed} failed jobs; {refused} calls refused by the emulator)",
                f"{ratio:.2f}", "≥ 0.90, 0 failed jobs", ratio >= 0.90 and failed == 0)]
