"""What `gwsync demo` runs on: Redis, a fresh SQLite file, the emulator, and the web and
worker processes started as the Procfile would, each stopped again when the demo ends.

Kept apart from `demo.py`, which tells the story; every process started here is pushed
onto the caller's `AsyncExitStack`, so nothing outlives the run, whatever fails.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypeVar

import aiohttp
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from rich.console import Console

from gwsync.client import Client
from gwsync.devtools import processes
from gwsync.devtools.demo_errors import DemoError, RedisUnavailableError
from gwsync.emulator.app import base_url, serve
from gwsync.emulator.state import EmulatorState
from gwsync.storage.db import upgrade_async

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
START_TIMEOUT_S = 30.0
POLL_S = 0.2
T = TypeVar("T")


@dataclass(frozen=True)
class Secrets:
    """Fresh secrets per run, so the demo never needs (or leaks) real configuration."""

    api_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    encryption_key: str = field(
        default_factory=lambda: base64.b64encode(secrets.token_bytes(32)).decode())
    client_id: str = field(
        default_factory=lambda: f"demo-{secrets.token_hex(6)}.apps.googleusercontent.com")
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))


@dataclass
class Demo:
    """What the steps share: where things run and how to reach them."""

    console: Console
    tmp: Path
    secrets: Secrets
    redis_url: str
    prefix: str
    database_url: str
    emulator: EmulatorState
    google_url: str = ""
    worker_metrics_port: int = field(default_factory=lambda: _free_port())
    api_url: str = ""
    #: Where "Google" sends the browser back to the main app (the demo plays the app; nothing
    #: needs to listen there, as the redirect is read, not followed).
    app_return_url: str = field(
        default_factory=lambda: f"http://127.0.0.1:{_free_port()}/app/oauth/return")
    http: aiohttp.ClientSession | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self.http is None:
            raise DemoError("internal: the HTTP session is not open")
        return self.http

    @property
    def gw(self) -> Client:
        """The main app's typed client of the web process (sharing the demo's session)."""
        return Client(self.api_url, self.secrets.api_token, session=self.session)


def _free_port() -> int:
    """A port nobody listens on now (small race accepted: it is a local demo)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _ping(url: str) -> bool:
    """Whether a Redis answers at `url` (quickly: the answer decides what to start)."""
    client = aioredis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


async def find_or_start_redis(stack: AsyncExitStack, console: Console, tmp: Path) -> str:
    """The configured Redis if it answers, else a private one we start (and stop)."""
    url = os.environ.get("GWSYNC_REDIS_URL") or DEFAULT_REDIS_URL
    if await _ping(url):
        console.print(f"redis: using {url}")
        return url
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailableError(f"nothing answers at {url} and redis-server is not on PATH.")
    port = _free_port()
    proc = await _spawn(stack, tmp, "redis", [binary, "--port", str(port), "--bind",
                        "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp)])
    private = f"redis://127.0.0.1:{port}/0"
    await wait_for(lambda: _ping(private), "redis-server to answer", START_TIMEOUT_S, proc)
    console.print(f"redis: nothing at {url}; started a private redis-server on port {port}")
    return private


async def forget_redis_keys(demo: Demo) -> None:
    """Leave a shared Redis as we found it: drop every key of this run's unique prefix."""
    client = aioredis.Redis.from_url(demo.redis_url, socket_timeout=2)
    try:
        keys = [k async for k in client.scan_iter(match=f"*{demo.prefix}*")]
        if keys:
            await client.delete(*keys)
    except (RedisError, OSError):
        pass  # best effort: the prefix is unique, so leftovers harm nobody
    finally:
        await client.aclose()


async def _spawn(stack: AsyncExitStack, tmp: Path, name: str,
                 args: list[str], env: dict[str, str] | None = None
                 ) -> asyncio.subprocess.Process:
    """Start a process logging to `<tmp>/<name>.log`, stopped when the stack unwinds."""
    log = _open_log(tmp / f"{name}.log")
    stack.callback(log.close)
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
        env=env)
    stack.push_async_callback(processes.stop, proc)
    return proc


def _open_log(path: Path) -> BinaryIO:
    """A log file for a child process (sync on purpose: it is opened once, before it runs)."""
    return path.open("ab")


async def wait_for(check: Callable[[], Awaitable[T | None]], what: str, limit_s: float,
                   proc: asyncio.subprocess.Process | None = None,
                   log: Path | None = None) -> T:
    """Poll `check` until it returns something truthy; fail clearly on timeout or exit."""
    deadline = time.monotonic() + limit_s
    while True:
        result = await check()
        if result:
            return result
        if proc is not None and proc.returncode is not None:
            where = f"; see {log}" if log else ""
            raise DemoError(f"gave up waiting for {what}: the process exited "
                            f"with code {proc.returncode}{where}")
        if time.monotonic() > deadline:
            raise DemoError(f"gave up waiting for {what} after {limit_s:.0f} s")
        await asyncio.sleep(POLL_S)


async def migrate(demo: Demo) -> None:
    """A fresh SQLite file at the latest schema, as `gwsync migrate` would leave it."""
    await upgrade_async(demo.database_url)
    demo.console.print(f"database: {demo.database_url} (migrated)")


async def start_emulator(stack: AsyncExitStack, demo: Demo) -> None:
    """The emulator runs in this process, so the demo can seed it directly."""
    runner = await serve("127.0.0.1", 0, demo.emulator)
    stack.push_async_callback(runner.cleanup)
    demo.google_url = base_url(runner)
    demo.console.print(f"emulator: {demo.google_url} (stands in for Google)")


def _process_env(demo: Demo, port: int) -> dict[str, str]:
    """The processes' whole configuration; inherited GWSYNC_ variables are dropped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GWSYNC_") and k != "PORT"}
    s = demo.secrets
    env.update({
        "GWSYNC_DATABASE_URL": demo.database_url, "GWSYNC_REDIS_URL": demo.redis_url,
        "GWSYNC_REDIS_PREFIX": demo.prefix, "GWSYNC_GOOGLE_BASE_URL": demo.google_url,
        "GWSYNC_GOOGLE_CLIENT_ID": s.client_id, "GWSYNC_GOOGLE_CLIENT_SECRET": s.client_secret,
        "GWSYNC_API_TOKEN": s.api_token, "GWSYNC_ADMIN_TOKEN": s.admin_token,
        "GWSYNC_ENCRYPTION_KEY": s.encryption_key, "GWSYNC_LOG_FORMAT": "console",
        "GWSYNC_SYNC_PAGE_SIZE": "25", "PORT": str(port), "PYTHONUNBUFFERED": "1",
        "GWSYNC_WORKER_METRICS_PORT": str(demo.worker_metrics_port),
        # The demo serves plain http on 127.0.0.1: a Secure cookie would not be sent back.
        "GWSYNC_OPS_COOKIE_SECURE": "false",
        "GWSYNC_OAUTH_REDIRECT_URIS": demo.app_return_url,
    })
    return env


def _gwsync_command(*args: str) -> list[str]:
    """The `gwsync` console script of this interpreter, or the same entry point via -c."""
    script = Path(sys.executable).with_name("gwsync")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "from gwsync.cli import main; main()", *args]


async def start_processes(stack: AsyncExitStack, demo: Demo) -> None:
    """`gwsync web` and `gwsync worker` as the Procfile runs them; wait until both serve."""
    port = _free_port()
    env = _process_env(demo, port)
    demo.api_url = f"http://127.0.0.1:{port}"
    web = await _spawn(stack, demo.tmp, "web", _gwsync_command("web"), env)
    worker = await _spawn(stack, demo.tmp, "worker", _gwsync_command("worker"), env)
    await wait_for(lambda: _ready(demo), "the web process's /readyz", START_TIMEOUT_S,
                   web, demo.tmp / "web.log")
    await wait_for(lambda: _worker_alive(demo), "the worker's health check", START_TIMEOUT_S,
                   worker, demo.tmp / "worker.log")
    demo.console.print(f"web: {demo.api_url} (ready); worker: running")
    demo.console.print(f"redis prefix: {demo.prefix}")


async def _ready(demo: Demo) -> bool:
    """Whether /readyz says the database, migrations and Redis are all fine."""
    try:
        async with demo.session.get(f"{demo.api_url}/readyz") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def _worker_alive(demo: Demo) -> bool:
    """arq writes `<queue>:health-check` once its loop runs: the worker is taking jobs."""
    client = aioredis.Redis.from_url(demo.redis_url, socket_timeout=2)
    try:
        return bool(await client.exists(f"{demo.prefix}:queue:health-check"))
    finally:
        await client.aclose()
