"""Freshness: a change at Google to the changed record being readable through the API.

A user's calendar gets new events (inside the meetings window) at the emulator; the
time is taken from just before the emulator's admin call until
``GET /v1/accounts/{id}/records`` (the typed client, against a real ``gwsync web``
process) first returns the event. Three times, with one account each:

- **push**: the deployment has a public URL, so the worker opens a Calendar channel;
  the emulator notifies the web process, which queues one incremental sync.
- **Gmail push**: new messages in a watched mailbox, through Pub/Sub push with OIDC
  (bench/freshness_gmail.py).
- **polling**: no public URL, no channel; the scheduler's due-sync tick queues the sync
  once the interval has passed (``GWSYNC_SYNC_INTERVAL_S`` short, no jitter). The
  worker's cron runs that tick once a minute, so polling freshness is bounded by
  max(interval, tick period) + one sync; the changes are spread over a tick period so
  the figures sample the whole of it. Quick runs drive the same tick from the bench
  every 2 s instead (a smoke check cannot wait a minute), and say so.

One reader polls the API every READ_EVERY_S for every change not yet seen, so the
figures include up to that much of the reader's own delay.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from bench import freshness_gmail
from bench.harness import BIN, BenchError, Deployment, free_port, time_to_visible
from bench.report import Row
from gwsync.client.api import Client
from gwsync.devtools import processes
from gwsync.domain.features import FEATURES
from gwsync.tasks.schedule import enqueue_due_syncs

NAME = "freshness"
FEATURE = "meetings"
READ_EVERY_S = 0.05
#: The worker's due-sync cron runs once a minute (gwsync/worker/app.py).
CRON_TICK_S = 60.0
PUSH_SPACING_S = 1.0
WITHIN_S = 180.0


@dataclass(frozen=True)
class Size:
    """How many changes per mode, and the polling set-up."""

    push: int
    poll: int
    interval_s: float
    bench_tick_s: float | None  # None: the worker's own cron tick
    gmail: int = 0  # new messages through Gmail push


FULL = Size(20, 10, 10.0, None, 20)
#: The bench's tick must be longer than interval + one sync: a row claimed while not due
#: is looked at again only a minute later (gwsync.tasks.schedule: never before the next tick).
QUICK = Size(3, 3, 1.0, 2.0, 3)


def _event(n: int) -> dict[str, Any]:
    """A new event tomorrow (inside the meetings window), one minute apart per `n`."""
    start = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    start += timedelta(days=1, minutes=n)
    return {"summary": f"fresh {n}", "start": {"dateTime": f"{start:%Y-%m-%dT%H:%M:%SZ}"},
            "end": {"dateTime": f"{start + timedelta(minutes=30):%Y-%m-%dT%H:%M:%SZ}"}}


class Web:
    """A real `gwsync web` process on a free port."""

    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        log = (self.dep.workdir / "web.log").open("w")
        self.proc = await asyncio.create_subprocess_exec(
            str(BIN / "gwsync"), "web", env=self.dep.env(PORT=str(self.port)),
            stdout=log, stderr=asyncio.subprocess.STDOUT)
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(self.url + "/readyz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
        raise BenchError("the web process did not become ready; see web.log")

    async def stop(self) -> None:
        if self.proc is not None:
            await processes.stop(self.proc, grace_s=15)


async def _account(dep: Deployment, gw: Client) -> tuple[str, str, str]:
    """A calendar-only user connected through the API and synced once → (emulator user,
    user id, account id)."""
    issued = await dep.emulator.admin("POST", "/_emulator/users", {
        "email": f"fresh-{uuid.uuid4().hex[:8]}@example.com",
        "scopes": [FEATURES[FEATURE].scope]})
    user_id = f"bench-{uuid.uuid4().hex[:8]}"
    connected = await gw.connect(user_id, str(issued["refresh_token"]))
    account_id = connected.account_id
    deadline = time.monotonic() + WITHIN_S
    while time.monotonic() < deadline:
        state = await dep.sync_state(account_id, FEATURE)
        if state and state.status == "ok":
            return str(issued["user"]), user_id, account_id
        await asyncio.sleep(0.1)
    raise BenchError("the first sync did not finish")


async def _channel_open(dep: Deployment, user: str) -> None:
    for _ in range(300):
        channels = (await dep.emulator.admin("GET", "/_emulator/push/channels"))["channels"]
        if any(c.get("user") == user for c in channels):
            return
        await asyncio.sleep(0.1)
    raise BenchError("no Calendar channel was opened")


async def _visible(gw: Client, user_id: str, account_id: str,
                   feature: str = FEATURE) -> set[str]:
    seen: set[str] = set()
    async for page in gw.read(account_id, user_id, use=f"feature:{feature}", feature=feature,
                              limit=1000):
        seen.update(record.id for record in page.records)
    return seen


async def _visible_mail(gw: Client, user_id: str, account_id: str) -> set[str]:
    return await _visible(gw, user_id, account_id, freshness_gmail.FEATURE)


async def _measure(dep: Deployment, gw: Client, who: tuple[str, str, str], n: int,
                   spacing_s: float) -> list[float]:
    """Make `n` changes `spacing_s` apart; seconds from each until the API returns it."""
    user, user_id, account_id = who

    async def make(i: int) -> str:
        ids = await dep.emulator.admin(
            "POST", f"/_emulator/users/{user}/calendar/events", _event(i))
        return str(ids["ids"][0])

    return await time_to_visible(make, lambda: _visible(gw, user_id, account_id), n,
                                 spacing_s, READ_EVERY_S, WITHIN_S)


async def _bench_ticks(dep: Deployment, every_s: float) -> None:
    """The scheduler's due-sync tick, as the worker's cron runs it, every `every_s`."""
    while True:
        await enqueue_due_syncs({"deps": dep.deps})
        await asyncio.sleep(every_s)


async def _first_tick_sync(dep: Deployment, account_id: str) -> None:
    """Wait until a tick has synced the account: a tick that finds the row just synced by
    its connect looks again only a minute later, which would be start-up, not freshness."""
    first = await dep.sync_state(account_id, FEATURE)
    deadline = time.monotonic() + WITHIN_S
    while time.monotonic() < deadline:
        state = await dep.sync_state(account_id, FEATURE)
        if state and first and state.status == "ok" and \
                state.last_synced_at != first.last_synced_at:
            return
        await asyncio.sleep(0.1)
    raise BenchError("no tick synced the account")


def _p(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def _push(dep: Deployment, gw: Client, size: Size) -> tuple[list[float], list[float]]:
    """(Calendar channel, Gmail push) latencies, with one worker."""
    worker = await dep.start_worker()
    who = await _account(dep, gw)
    await _channel_open(dep, who[0])
    await asyncio.sleep(0.5)  # the channel's first `sync` message is not a change
    latencies = await _measure(dep, gw, who, size.push, PUSH_SPACING_S)
    mail = await freshness_gmail.measure(dep, gw, size.gmail, _visible_mail, READ_EVERY_S)
    await processes.stop(worker, grace_s=15)
    dep.workers.remove(worker)
    return latencies, mail


async def _poll(dep: Deployment, gw: Client, size: Size) -> list[float]:
    # The next worker opens no channel; it and the bench's own tick share these settings.
    dep.settings.public_url = None
    dep.settings.sync_interval_s, dep.settings.sync_jitter_s = size.interval_s, 0.0
    await dep.start_worker()
    who = await _account(dep, gw)
    tick = size.bench_tick_s or CRON_TICK_S
    if size.bench_tick_s:  # the bench's first tick comes once the connect's sync is due
        await asyncio.sleep(size.interval_s + 0.5)
    ticker = (asyncio.create_task(_bench_ticks(dep, size.bench_tick_s))
              if size.bench_tick_s else None)
    try:
        await _first_tick_sync(dep, who[2])
        return await _measure(dep, gw, who, size.poll, tick / size.poll)
    finally:
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)


def _rows(push: list[float], mail: list[float], poll: list[float], size: Size,
          one_sync_s: float) -> list[Row]:
    tick = (f"due-sync tick every {size.bench_tick_s:g} s, driven by the bench"
            if size.bench_tick_s else f"the worker's cron tick, every {CRON_TICK_S:g} s")
    period = max(size.interval_s, size.bench_tick_s or CRON_TICK_S)
    bound = period + one_sync_s
    how = (f"GWSYNC_SYNC_INTERVAL_S={size.interval_s:g}, jitter 0, {tick}; "
           f"{len(poll)} changes spread over one tick period")
    return [
        Row(NAME, f"push: change → readable p50 (Calendar channel, {len(push)} new events "
            f"{PUSH_SPACING_S:g} s apart)", f"{_p(push, 50) * 1000:.0f} ms", "reported"),
        Row(NAME, "push: change → readable p99", f"{_p(push, 99) * 1000:.0f} ms", "reported"),
        Row(NAME, f"Gmail push: change → readable p50 (Pub/Sub push with an OIDC token, "
            f"{len(mail)} new messages {freshness_gmail.SPACING_S:g} s apart; Gmail "
            f"notifies at most once a second)", f"{_p(mail, 50) * 1000:.0f} ms", "reported"),
        Row(NAME, "Gmail push: change → readable p99", f"{_p(mail, 99) * 1000:.0f} ms",
            "reported"),
        Row(NAME, f"polling: change → readable p50 ({how})", f"{_p(poll, 50):.1f} s",
            "reported"),
        Row(NAME, "polling: change → readable p99", f"{_p(poll, 99):.1f} s",
            f"≤ interval + one sync: ≤ {bound:.1f} s (max(interval, tick) {period:g} s + "
            f"{one_sync_s:.1f} s)", _p(poll, 99) <= bound),
    ]


async def run(dep: Deployment, size: Size) -> list[Row]:
    web = Web(dep)
    dep.settings.public_url = web.url
    freshness_gmail.configure(dep, web.url)
    await freshness_gmail.subscribe(dep, web.url)
    await web.start()
    try:
        async with Client(web.url, dep.settings.api_token.get_secret_value()
                          if dep.settings.api_token else "") as gw:
            push, mail = await _push(dep, gw, size)
            poll = await _poll(dep, gw, size)
    finally:
        await web.stop()
    # "one sync": the slowest push freshness is a notification, a queue hop and a sync.
    return _rows(push, mail, poll, size, max(push))
