"""A fleet: many accounts, all five features, realistic mode, two worker processes.

Each account's user holds a few contacts, messages, events and Drive files opened with
the app, and granted every feature's scope. Figures, at two fleet sizes (the growth
between them shows what is per account and what is fixed): the time for the whole
fleet's first sync (every feature of every account queued at once), then one
incremental cycle (every feature queued again, a few changes made at Google first);
the workers' CPU-seconds per account in that cycle (utime + stime of both processes,
from /proc); and the Google calls per account in it (the emulator's call log).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from sqlalchemy import func, select

from bench.harness import BenchError, Deployment, cpu_seconds
from bench.realistic import realistic, refusals
from bench.report import Row
from gwsync.domain.features import FEATURES
from gwsync.emulator.seed import DEMO_SCOPES, fake_contact
from gwsync.storage import accounts
from gwsync.storage.models import SyncState

NAME = "fleet"
WORKERS = 2
#: What each user holds at Google.
CONTACTS, MESSAGES, EVENTS, FILES = 20, 30, 10, 3
GOAL_ACCOUNTS = 1_000
#: Admin calls in flight at once while seeding (the emulator answers them in microseconds;
#: one at a time, 6,000 of them were a minute of round trips).
SEEDING = 16
#: Accounts registered per database transaction.
CONNECT_CHUNK = 200
#: How far a linear cycle's growth may read above the fleet's: the cycle is bound by
#: Google's latency over the jobs in flight, so its time is linear in the jobs, and five
#: full runs on this machine read ×7.6, ×9.2, ×9.6, ×10.1 and ×10.4 for ×10 accounts while
#: the CPU per account stayed flat (×0.75–×1.06).
LINEAR_NOISE = 1.2


async def _user(dep: Deployment, n: int) -> tuple[str, str]:
    """A user with every feature's data and a grant of every scope → (key, refresh token)."""
    emu = dep.emulator
    issued = await emu.admin("POST", "/_emulator/users", {
        "email": f"fleet-{n}-{uuid.uuid4().hex[:6]}@example.com",
        "contacts": [fake_contact(i) for i in range(CONTACTS)], "scopes": list(DEMO_SCOPES)})
    user = issued["user"]
    await emu.admin("POST", f"/_emulator/users/{user}/gmail/seed", {"n": MESSAGES})
    await emu.admin("POST", f"/_emulator/users/{user}/calendar/seed", {"n_events": EVENTS})
    for i in range(FILES):
        await emu.admin("POST", f"/_emulator/users/{user}/drive/files", {"name": f"f{i}.pdf"})
    return str(user), str(issued["refresh_token"])


async def _users(dep: Deployment, count: int) -> list[tuple[str, str]]:
    """`count` users, seeded a few at a time → [(key, refresh token)] in order."""
    gate = asyncio.Semaphore(SEEDING)

    async def one(n: int) -> tuple[str, str]:
        async with gate:
            return await _user(dep, n)

    return list(await asyncio.gather(*(one(n) for n in range(count))))


async def _connect(dep: Deployment, tokens: list[str]) -> list[str]:
    """Register every grant straight in the database, CONNECT_CHUNK per transaction."""
    ids: list[str] = []
    for start in range(0, len(tokens), CONNECT_CHUNK):
        async with dep.deps.sessions.begin() as session:
            for token in tokens[start:start + CONNECT_CHUNK]:
                account = await accounts.create(
                    session, dep.deps.keyring, user_id=f"fleet-{uuid.uuid4().hex[:10]}",
                    refresh_token=token, granted_scopes=frozenset(DEMO_SCOPES))
                ids.append(account.id)
    return ids


async def _change(dep: Deployment, users: list[str]) -> None:
    """A new message for every tenth user (an incremental cycle finds a little to do)."""
    await asyncio.gather(*(dep.emulator.admin("POST", f"/_emulator/users/{user}/gmail/seed",
                                              {"n": 1}) for user in users[::10]))


async def _done(dep: Deployment, since: Any, expected: int, within_s: float) -> None:
    """Wait until `expected` sync states have finished ok since `since`."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        async with dep.deps.sessions() as session:
            done = await session.scalar(select(func.count()).select_from(SyncState).where(
                SyncState.status == "ok", SyncState.last_synced_at > since))
        if int(done or 0) >= expected:
            return
        await asyncio.sleep(0.2)
    raise BenchError(f"the fleet's syncs were not done within {within_s} s")


async def _cycle(dep: Deployment, ids: list[str], within_s: float) -> float:
    """Queue every feature of every account; wait for all → seconds."""
    async with dep.deps.sessions() as session:
        since = await session.scalar(select(func.now()))
    started = time.monotonic()
    await dep.deps.queue.enqueue_syncs(
        [(a, name, 1, None) for a in ids for name in FEATURES])
    await _done(dep, since, len(ids) * len(FEATURES), within_s)
    return time.monotonic() - started


async def _measure(dep: Deployment, size: int) -> dict[str, Any]:
    made = await _users(dep, size)
    ids = await _connect(dep, [token for _, token in made])
    await dep.emulator.calls(clear=True)
    first_s = await _cycle(dep, ids, 1800)
    await _change(dep, [user for user, _ in made])
    await dep.emulator.calls(clear=True)
    pids = [p.pid for p in dep.workers]
    cpu_before = cpu_seconds(pids)
    incremental_s = await _cycle(dep, ids, 900)
    cpu = cpu_seconds(pids) - cpu_before
    calls = len(await dep.emulator.calls(clear=True))
    quota, crowded = await refusals(dep)
    return {"accounts": size, "first_s": first_s, "incremental_s": incremental_s,
            "cpu_per_account": cpu / size, "calls_per_account": calls / size,
            "refused": quota + crowded}


async def _warm_up(dep: Deployment) -> None:
    """Sync one account first, so the workers' start-up is not timed as the fleet's."""
    _, token = await _user(dep, -1)
    await _cycle(dep, [await dep.connect(token, *DEMO_SCOPES)], 300)
    await refusals(dep)


def _rows(m: dict[str, Any]) -> list[Row]:
    size = f"{m['accounts']:,} accounts × 5 features"
    return [
        Row(NAME, f"full first sync of the fleet, {size} (goal size {GOAL_ACCOUNTS:,})",
            f"{m['first_s']:.1f} s", "reported"),
        Row(NAME, f"one incremental cycle, {size} (1 new message per 10 users)",
            f"{m['incremental_s']:.1f} s", "reported"),
        Row(NAME, f"worker CPU-seconds per account per cycle, {size}",
            f"{m['cpu_per_account'] * 1000:.1f} ms", "reported"),
        Row(NAME, f"Google calls per account per cycle, {size} (refused by the emulator "
            f"in all: {m['refused']})", f"{m['calls_per_account']:.1f}", "reported"),
    ]


async def run(dep: Deployment, sizes: tuple[int, ...]) -> list[Row]:
    await realistic(dep)
    for _ in range(WORKERS):
        await dep.start_worker()
    await _warm_up(dep)
    measured = [await _measure(dep, n) for n in sizes]
    rows = [row for m in measured for row in _rows(m)]
    if len(measured) == 2:
        small, large = measured
        fleet = large["accounts"] / small["accounts"]
        rows += [
            Row(NAME, f"growth of an incremental cycle's time, {small['accounts']} → "
                f"{large['accounts']} accounts (×{fleet:g})",
                f"×{large['incremental_s'] / small['incremental_s']:.1f}",
                f"linear or better: ≤ ×{fleet:g}, ×{fleet * LINEAR_NOISE:g} with "
                f"this machine's run-to-run spread",
                large["incremental_s"] / small["incremental_s"] <= fleet * LINEAR_NOISE),
            Row(NAME, "growth of CPU-seconds per account per cycle",
                f"×{large['cpu_per_account'] / small['cpu_per_account']:.2f}", "flat (≤ ×1.2)",
                large["cpu_per_account"] / small["cpu_per_account"] <= 1.2),
        ]
    return rows
