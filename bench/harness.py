"""One benchmark deployment: a scratch database, a Redis prefix, the emulator in its own
process, gwsync worker processes, and the bench process's own `Deps`.

The emulator runs in a separate process so that it does not share the worker's core and
GIL: what is measured is the worker, not the stand-in for Google.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from sqlalchemy import select

from gwsync.core.settings import Settings
from gwsync.devtools import processes
from gwsync.domain import features
from gwsync.storage import accounts
from gwsync.storage.db import upgrade_async
from gwsync.storage.models import SyncState
from gwsync.tasks.deps import Deps

PG_ADMIN = os.environ.get("GWSYNC_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("GWSYNC_BENCH_REDIS", "redis://127.0.0.1:6379/0")
GMAIL_METADATA = "https://www.googleapis.com/auth/gmail.metadata"
BIN = Path(sys.executable).parent


class BenchError(RuntimeError):
    """A benchmark could not run (a process did not start, a sync failed)."""


#: Alembic keeps its context in module globals: benchmarks run side by side
#: (`bench.run --parallel`) migrate their databases one at a time.
_MIGRATING = asyncio.Lock()


async def _migrate(url: str) -> None:
    async with _MIGRATING:
        await upgrade_async(url)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def scratch_database(kind: str, workdir: Path) -> AsyncIterator[str]:
    """A migrated, empty database for this run, dropped (PostgreSQL) when it ends."""
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{workdir}/bench.db"
        await _migrate(url)
        yield url
        return
    name = f"gwsync_bench_{uuid.uuid4().hex[:10]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        url = f"{base}/{name}"
        await _migrate(url)
        yield url
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if await _pg_admin_value("SELECT count(*) FROM pg_database WHERE datname = $1", name):
            raise BenchError(f"the scratch database {name} is left after the run")


async def _pg_admin_value(sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@dataclass
class Emulator:
    """`gwsync emulator` in its own process, driven through its admin routes."""

    proc: asyncio.subprocess.Process
    url: str
    client_id: str
    client_secret: str
    http: aiohttp.ClientSession

    @classmethod
    async def start(cls, workdir: Path, *extra: str) -> Emulator:
        port = free_port()
        out = workdir / f"emulator-{port}.log"
        proc = await asyncio.create_subprocess_exec(
            str(BIN / "gwsync"), "emulator", "--port", str(port), *extra,
            stdout=out.open("w"), stderr=asyncio.subprocess.STDOUT)
        creds = await _wait_for_line(out, "client_id=", proc)
        ids = dict(part.split("=", 1) for part in creds.split())
        emu = cls(proc, f"http://127.0.0.1:{port}", ids["client_id"], ids["client_secret"],
                  aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)))
        await emu._wait_listening()
        return emu

    async def _wait_listening(self) -> None:
        for _ in range(100):
            try:
                await self.admin("GET", "/_emulator/faults")
                return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
        raise BenchError("the emulator did not start listening")

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, self.url + path, json=body) as resp:
            if resp.status >= 400:
                raise BenchError(f"emulator {method} {path}: {resp.status} {await resp.text()}")
            return await resp.json()

    async def gmail_user(self, n_messages: int) -> tuple[str, str]:
        """A new user with `n_messages` messages who granted gmail.metadata → (key, token)."""
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        issued = await self.admin("POST", "/_emulator/users",
                                  {"email": email, "scopes": [GMAIL_METADATA]})
        user = issued["user"]
        for start in range(0, n_messages, 20_000):
            await self.admin("POST", f"/_emulator/users/{user}/gmail/seed",
                             {"n": min(20_000, n_messages - start)})
        return user, issued["refresh_token"]

    async def calls(self, clear: bool = False) -> list[dict[str, Any]]:
        suffix = "?clear=1" if clear else ""
        return (await self.admin("GET", "/_emulator/calls" + suffix))["calls"]

    async def stop(self) -> None:
        await self.http.close()
        await processes.stop(self.proc, grace_s=15)


async def _wait_for_line(path: Path, marker: str, proc: asyncio.subprocess.Process,
                         within_s: float = 30) -> str:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        for line in (await asyncio.to_thread(path.read_text)).splitlines():
            if line.startswith(marker):
                return line
        if proc.returncode is not None:
            raise BenchError(f"process exited early; see {path}")
        await asyncio.sleep(0.05)
    raise BenchError(f"no {marker!r} line within {within_s} s; see {path}")


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes so far, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM) so far, in MB (10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise BenchError("no VmHWM in /proc/<pid>/status")


@dataclass
class Deployment:
    """Everything a benchmark needs; each benchmark starts its own worker processes."""

    db_kind: str
    settings: Settings
    deps: Deps
    emulator: Emulator
    workdir: Path
    workers: list[asyncio.subprocess.Process] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GWSYNC_")}
        for name, value in self.settings.model_dump().items():
            if value is None:
                continue
            secret = getattr(self.settings, name)
            plain = secret.get_secret_value() if hasattr(secret, "get_secret_value") else value
            env["PORT" if name == "port" else f"GWSYNC_{name.upper()}"] = str(plain)
        env.update(extra)
        return env

    async def start_worker(self, *command: str, **extra: str) -> asyncio.subprocess.Process:
        """A real worker process (`gwsync worker` unless `command` says otherwise)."""
        argv = command or (str(BIN / "gwsync"), "worker")
        log = (self.workdir / f"worker-{len(self.workers)}.log").open("w")
        proc = await asyncio.create_subprocess_exec(
            *argv, env=self.env(**extra), stdout=log, stderr=asyncio.subprocess.STDOUT)
        self.workers.append(proc)
        return proc

    async def wait_ready(self, proc: asyncio.subprocess.Process, within_s: float = 60) -> None:
        """Until the worker polls its queue: arq writes its health-check key on its first
        poll, so what comes after is the work, not the start-up (imports, connections)."""
        key = self.deps.queue.queue_name + ":health-check"
        deadline = time.monotonic() + within_s
        while not await self.deps.queue.redis.exists(key):
            if proc.returncode is not None or time.monotonic() > deadline:
                raise BenchError("the worker did not start polling")
            await asyncio.sleep(0.05)

    async def settle(self) -> None:
        """Let PostgreSQL catch up on the last run's writes before the next is timed.

        After thousands of rows it checkpoints, vacuums and analyzes them in the
        background; on two cores that work took its share from whatever ran next
        (bench/ingest.py: a sync right after another read 20–25 % fewer records a
        second, at a third more worker CPU a record). Done here, untimed, every run
        starts from the same quiet database.
        """
        if self.db_kind != "postgresql":
            return
        conn = await asyncpg.connect(self.settings.database_url.replace("+asyncpg", ""))
        try:
            await conn.execute("VACUUM ANALYZE")
            await conn.execute("CHECKPOINT")
        finally:
            await conn.close()

    async def stop_workers(self) -> None:
        for proc in self.workers:
            await processes.stop(proc, grace_s=15)
        self.workers.clear()

    async def connect(self, refresh_token: str, *scopes: str) -> str:
        """Register a grant straight in the database (the web API is not under test)."""
        async with self.deps.sessions.begin() as session:
            account = await accounts.create(
                session, self.deps.keyring, user_id=f"bench-{uuid.uuid4().hex[:8]}",
                refresh_token=refresh_token, granted_scopes=frozenset(scopes))
        return account.id

    async def sync(self, account_id: str, feature: str, within_s: float = 1800) -> SyncState:
        """Queue one sync, wait until the worker finishes it, and return its state."""
        before = await self.sync_state(account_id, feature)
        previous = before.last_synced_at if before else None
        if not await self.deps.queue.enqueue_sync(account_id, feature, 1):
            raise BenchError("the sync was not queued")
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            state = await self.sync_state(account_id, feature)
            if state and state.status in ("error", "needs_permission"):
                raise BenchError(f"sync failed: {state.error_category} {state.last_error}")
            if state and state.status == "ok" and state.last_synced_at != previous:
                return state
            await asyncio.sleep(0.05)
        raise BenchError(f"sync not done within {within_s} s")

    async def sync_state(self, account_id: str, feature: str) -> SyncState | None:
        async with self.deps.sessions() as session:
            return await session.scalar(select(SyncState).where(
                SyncState.account_id == account_id, SyncState.feature == feature))


def mail_scope() -> str:
    return features.FEATURES["mail_activity"].scope


@asynccontextmanager
async def deployment(db_kind: str, **overrides: Any) -> AsyncIterator[Deployment]:
    """A complete deployment pointed at a fresh emulator process; torn down at exit."""
    with tempfile.TemporaryDirectory(prefix="gwsync-bench-") as tmp:
        workdir = Path(tmp)
        prefix = f"gwsync-bench-{uuid.uuid4().hex[:10]}"
        async with scratch_database(db_kind, workdir) as url:
            emulator = await Emulator.start(workdir)
            settings = Settings(
                database_url=url, redis_url=REDIS_URL, redis_prefix=prefix,
                google_base_url=emulator.url, google_client_id=emulator.client_id,
                google_client_secret=emulator.client_secret,
                api_token=secrets.token_urlsafe(32), admin_token=secrets.token_urlsafe(32),
                encryption_key=base64.b64encode(secrets.token_bytes(32)).decode(),
                worker_metrics_port=0, log_level="WARNING", **overrides)
            deps = await Deps.open(settings)
            dep = Deployment(db_kind, settings, deps, emulator, workdir)
            try:
                yield dep
            finally:
                await dep.stop_workers()
                await deps.close()
                await emulator.stop()
                await _drop_keys(prefix)


async def _drop_keys(prefix: str) -> None:
    """Delete every key naming the run's prefix (arq's included), then check none is left."""
    client = aioredis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"*{prefix}*", count=10_000)]
        for start in range(0, len(keys), 10_000):
            await client.delete(*keys[start:start + 10_000])
        async for _ in client.scan_iter(match=f"*{prefix}*", count=10_000):
            raise BenchError(f"Redis keys of {prefix} are left after the run")
    finally:
        await client.aclose()


async def time_to_visible(make: Callable[[int], Awaitable[str]],
                          visible: Callable[[], Awaitable[set[str]]], n: int,
                          spacing_s: float, read_every_s: float, within_s: float) -> list[float]:
    """Make `n` changes `spacing_s` apart (`make(i)` → the new item's id) while polling
    `visible()` every `read_every_s`: the seconds from each change until it is visible.
    One loop for every freshness figure, so push and polling are timed alike."""
    made: dict[str, float] = {}
    latencies: list[float] = []

    async def change() -> None:
        for i in range(n):
            started = time.monotonic()
            made[await make(i)] = started
            await asyncio.sleep(max(0.0, spacing_s - (time.monotonic() - started)))

    changer = asyncio.create_task(change())
    deadline = time.monotonic() + within_s + n * spacing_s
    try:
        while len(latencies) < n and time.monotonic() < deadline:
            seen = await visible()
            now = time.monotonic()
            for item in [m for m in made if m in seen]:
                latencies.append(now - made.pop(item))
            await asyncio.sleep(read_every_s)
    finally:
        changer.cancel()
        await asyncio.gather(changer, return_exceptions=True)
    if len(latencies) < n:
        raise BenchError(f"{n - len(latencies)} of {n} changes never became readable")
    return latencies
