"""Memory: the worker process's peak RSS (VmHWM) over a mail_activity full sync, for
each record count, each in a fresh `gwsync worker` process (so the peak includes start-up
and imports). Flat means the peak does not grow with the record count: a sync holds one
page at a time."""

from __future__ import annotations

from collections.abc import Sequence

from bench.harness import Deployment, mail_scope, peak_rss_mb
from bench.report import Row

NAME = "memory"
CEILING_MB = 150
#: "Flat": the largest run may use at most this much more than the smallest.
FLAT_GROWTH = 0.10


async def peak_for(dep: Deployment, n: int) -> float:
    _, token = await dep.emulator.gmail_user(n)
    account_id = await dep.connect(token, mail_scope())
    worker = await dep.start_worker()
    try:
        await dep.sync(account_id, "mail_activity")
        return peak_rss_mb(worker.pid)
    finally:
        await dep.stop_workers()


async def run(dep: Deployment, sizes: Sequence[int]) -> list[Row]:
    peaks = {n: await peak_for(dep, n) for n in sizes}
    rows = [Row(NAME, f"worker peak RSS, {n:,}-record sync", f"{mb:.0f} MB",
                f"≤ {CEILING_MB} MB", mb <= CEILING_MB) for n, mb in peaks.items()]
    small, large = peaks[min(sizes)], peaks[max(sizes)]
    growth = (large - small) / small
    rows.append(Row(NAME, f"growth {min(sizes):,} → {max(sizes):,} records",
                    f"{large - small:+.1f} MB ({growth:+.1%})",
                    f"flat (≤ {FLAT_GROWTH:.0%})", growth <= FLAT_GROWTH))
    return rows
