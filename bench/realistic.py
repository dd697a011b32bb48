"""Gmail first sync against Google as the fleet meets it: the emulator's realistic mode.

Realistic mode (``realistic()``) sets the emulator's per-call latency (log-normal, median
80 ms, p99 600 ms), Gmail's per-user concurrency limit, and every API's per-user quota as
a rate with a bounded burst, all from Google's pages and reports
(gwsync/emulator/quota_costs.py, gwsync/emulator/realism.py) — never from our limiter's
settings, which keep their production defaults. The ceiling is then physical: Gmail's
15,000 units per user per minute is 250 units/s, 50 ``messages.get`` a second.

Figures: records/s, and the share of the ceiling used in the steady state (charged
units/s from one burst after the first charge to the last, ÷ 250), with the calls the
emulator refused (quota and concurrency). The baseline — ``messages.get`` one after
another, one ORM insert per record — runs in the same mode. ``run_quota`` is the same
sync with no latency: the quota benchmark, against the same independent ceiling.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import delete

from bench.harness import Deployment, mail_scope
from bench.ingest import baseline
from bench.report import Row
from gwsync.emulator import quota_costs, realism
from gwsync.storage.models import SyncState

NAME = "gmail realistic"
QUOTA_NAME = "quota utilisation"
SHARE_GOAL = 0.90
PLACEHOLDERS = (("records/s, Gmail first sync in realistic mode", "reported"),
                ("share of the per-user quota ceiling", "≥ 0.90, 0 refusals"))
QUOTA_PLACEHOLDERS = (("achieved units/s ÷ ceiling", "≥ 0.90, 0 refusals, 0 failed jobs"),)
#: Seconds of the rate the bucket holds at quick size (the smoke run's mailbox is small).
QUICK_BURST_S = 1.0


def ceiling_units_s() -> float:
    return quota_costs.PER_USER_PER_MIN["gmail"] / 60


async def realistic(dep: Deployment, latency: bool = True, burst_s: float | None = None,
                    seed: int = 0) -> None:
    """Put the emulator in realistic mode: quota as a rate with a bounded burst, and with
    `latency` the latency and concurrency limit too. Counters start at zero."""
    await dep.emulator.admin("PUT", "/_emulator/quota", {
        "per_user": quota_costs.PER_USER_PER_MIN, "window_s": 60,
        "burst_s": burst_s or quota_costs.BURST_S})
    if latency:
        await dep.emulator.admin("PUT", "/_emulator/realism", {**realism.REALISTIC, "seed": seed})


async def refusals(dep: Deployment) -> tuple[int, int]:
    """(quota refusals, concurrency refusals) the emulator answered so far."""
    quota = await dep.emulator.admin("GET", "/_emulator/quota")
    real = await dep.emulator.admin("GET", "/_emulator/realism")
    return (sum(int(n) for n in quota.get("refused", {}).values()),
            int(real.get("refused_concurrency", 0)))


async def _sample(dep: Deployment, samples: list[tuple[float, int]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        policy = await dep.emulator.admin("GET", "/_emulator/quota")
        samples.append((time.monotonic(), int(policy.get("charged", {}).get("gmail", 0))))
        await asyncio.sleep(0.1)


def steady_rate(samples: list[tuple[float, int]], skip_s: float) -> float:
    """Units per second between `skip_s` after the first charge and the last charge."""
    charged = [(t, u) for t, u in samples if u > 0]
    if not charged:
        return float("nan")
    first_t = charged[0][0]
    last_t, last_u = next((t, u) for t, u in charged if u == charged[-1][1])
    begin = [(t, u) for t, u in charged if t >= first_t + skip_s]
    if not begin or last_t <= begin[0][0]:
        return float("nan")
    return (last_u - begin[0][1]) / (last_t - begin[0][0])


async def ours(dep: Deployment, n: int, burst_s: float) -> dict[str, Any]:
    """One worker's mail_activity first sync of `n` messages, sampled at the emulator."""
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
    assert state.started_at and state.last_synced_at
    seconds = (state.last_synced_at - state.started_at).total_seconds()
    quota, crowded = await refusals(dep)
    return {"rate": n / seconds, "units_s": steady_rate(samples, burst_s), "quota": quota,
            "crowded": crowded, "failed": 0 if state.status == "ok" else 1}


async def base(dep: Deployment, n: int) -> tuple[float, float]:
    """The baseline's (records/s, units/s) in the same mode."""
    before = (await dep.emulator.admin("GET", "/_emulator/quota")).get("charged", {})
    started = time.perf_counter()
    rate = await baseline(dep, n)
    seconds = time.perf_counter() - started
    after = (await dep.emulator.admin("GET", "/_emulator/quota")).get("charged", {})
    # The baseline's account is not ours to sync: without this the worker's due-sync cron
    # syncs its mailbox during ours, and the emulator's Gmail total (all users) would
    # count that other user's units as ours.
    async with dep.deps.sessions.begin() as session:
        await session.execute(delete(SyncState))
    return rate, (int(after.get("gmail", 0)) - int(before.get("gmail", 0))) / seconds


async def run(dep: Deployment, sizes: tuple[int, int]) -> list[Row]:
    """`sizes`: (messages of our sync, messages of the baseline's)."""
    n, n_base = sizes
    burst_s = quota_costs.BURST_S if n >= 1_000 else QUICK_BURST_S
    await realistic(dep, burst_s=burst_s)
    base_rate, base_units = await base(dep, n_base)
    await realistic(dep, burst_s=burst_s)  # counters from zero for our run
    m = await ours(dep, n, burst_s)
    ceiling = ceiling_units_s()
    share, base_share = m["units_s"] / ceiling, base_units / ceiling
    refused = m["quota"] + m["crowded"]
    mode = (f"median {realism.REALISTIC['latency_median_ms']:g} ms, p99 "
            f"{realism.REALISTIC['latency_p99_ms']:g} ms, ≤ "
            f"{realism.REALISTIC['max_concurrent_per_user']} concurrent calls per user, "
            f"{ceiling:g} units/s with bursts of {burst_s:g} s")
    return [
        Row(NAME, f"records/s, Gmail first sync in realistic mode ({n:,} msgs; {mode})",
            f"{m['rate']:,.1f} records/s", f"≤ {ceiling / 5:g} (the ceiling: 5 units a get)"),
        Row(NAME, f"share of the per-user quota ceiling ({m['units_s']:,.0f} of {ceiling:g} "
            f"units/s; refused: {m['quota']} quota, {m['crowded']} concurrency)",
            f"{share:.2f}", f"≥ {SHARE_GOAL:g}, 0 refusals",
            share >= SHARE_GOAL and refused == 0 and m["failed"] == 0),
        Row(NAME, f"baseline in the same mode: sequential messages.get + ORM insert "
            f"({n_base:,} msgs)", f"{base_rate:,.1f} records/s, share {base_share:.2f}"),
        Row(NAME, "ours ÷ baseline, realistic mode", f"{m['rate'] / base_rate:.1f}×",
            "reported (the quota caps it)"),
    ]


async def run_quota(dep: Deployment, n: int) -> list[Row]:
    """The quota benchmark: the same sync with no latency, quota the only limit."""
    burst_s = quota_costs.BURST_S if n >= 1_000 else QUICK_BURST_S
    await realistic(dep, latency=False, burst_s=burst_s)
    m = await ours(dep, n, burst_s)
    ceiling = ceiling_units_s()
    ratio = m["units_s"] / ceiling
    ok = ratio >= SHARE_GOAL and m["quota"] == 0 and m["failed"] == 0
    return [Row(QUOTA_NAME, f"achieved units/s ÷ ceiling ({n:,}-message full sync; the "
                f"emulator's own ceiling from Google's quota page, {ceiling:g} units/s with "
                f"bursts of {burst_s:g} s; our limiter at its defaults; {m['units_s']:,.0f} "
                f"units/s; {m['failed']} failed jobs; {m['quota']} calls refused)",
                f"{ratio:.2f}", "≥ 0.90, 0 refusals, 0 failed jobs", ok)]
