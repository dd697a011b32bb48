"""`gwsync demo`: the whole life of one connected account, end to end, with real processes.

A reader of DESIGN.md should be able to *see* the three promises hold without a Google
project: the demo starts the web and worker processes exactly as the Procfile would (on a
throw-away SQLite file and a Redis namespace of its own), points them at the emulator,
connects a fake user through the consent screen (playing both the main app and the person
who clicks Allow), syncs all five features, reads with a permitted use, is refused a
forbidden one, disconnects, and prints the erasure receipt. It touches nothing outside its
temp directory and its own Redis key prefix.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import aiohttp
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from rich.console import Console
from rich.json import JSON
from rich.markup import escape
from rich.table import Table

from gwsync.connectors.features import FEATURES
from gwsync.emulator import EmulatorState, base_url, serve
from gwsync.emulator.consent_client import ConsentPageError
from gwsync.emulator.seed import DEMO_EMAIL
from gwsync.storage.db import upgrade_async
from gwsync.worker import processes
from gwsync.worker.demo_features import (
    ConsentIncompleteError,
    FeatureFailedError,
    FeatureProgress,
    Sizes,
    allow_everything,
    check_all_enabled,
    feature_table,
    seed_user,
    short_scope,
)

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_HINT = ("Install Redis and run the demo again — Debian/Ubuntu: "
              "`sudo apt-get install redis-server`; macOS: `brew install redis`.")
FEATURE = "contacts"  # the feature the read and the refusal are shown on
USER_ID = "demo-user-1"  # the main app's id for the person
SYNC_TIMEOUT_S = 60.0
ERASE_TIMEOUT_S = 60.0
START_TIMEOUT_S = 30.0
POLL_S = 0.2
T = TypeVar("T")


class DemoError(Exception):
    """A step failed; the message is the one-line reason shown to the user."""


class RedisUnavailableError(Exception):
    """No Redis answers and none can be started: the user must install one (exit 2)."""


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
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets.api_token}"}


# -- entry point ---------------------------------------------------------------------------


def main(contacts: int, events: int = Sizes.events, files: int = Sizes.files,
         messages: int = Sizes.messages) -> int:
    """Run the demo; 0 on success, 1 when a step fails, 2 when Redis is missing."""
    console = Console(soft_wrap=True)  # long lines stay whole: they are copied and grepped
    sizes = Sizes(contacts, events, files, messages)
    problem = _bad_sizes(sizes)
    if problem:
        console.print(f"[red]demo failed:[/] {problem}")
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="gwsync-demo-"))
    try:
        return asyncio.run(_run(console, tmp, sizes))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130


def _bad_sizes(sizes: Sizes) -> str | None:
    """Contacts are read back, so at least one; the other features may start empty."""
    if sizes.contacts < 1:
        return "--contacts must be at least 1"
    if min(sizes.events, sizes.files, sizes.messages) < 0:
        return "--events, --files and --messages cannot be negative"
    return None


async def _run(console: Console, tmp: Path, sizes: Sizes) -> int:
    """Set up, run the flow, and tear everything down whatever happens."""
    async with AsyncExitStack() as stack:
        try:
            redis_url = await _redis(stack, console, tmp)
        except RedisUnavailableError as exc:
            console.print(f"[red]gwsync demo needs Redis:[/] {exc}\n{REDIS_HINT}")
            return 2
        keys = Secrets()
        demo = Demo(console=console, tmp=tmp, secrets=keys, redis_url=redis_url,
                    prefix=f"gwsync-demo-{secrets.token_hex(4)}",
                    database_url=f"sqlite+aiosqlite:///{tmp / 'gwsync.db'}",
                    emulator=EmulatorState(keys.client_id, keys.client_secret))
        stack.push_async_callback(_forget_redis_keys, demo)
        try:
            await _flow(stack, demo, sizes)
        except (DemoError, ConsentPageError, ConsentIncompleteError,
                FeatureFailedError) as exc:
            return _failed(console, tmp, str(exc))
        except Exception as exc:  # noqa: BLE001 - any failure is one line, not a traceback
            return _failed(console, tmp, f"unexpected {type(exc).__name__}: {exc}")
    console.print(f"logs and database: {tmp}")
    return 0


def _failed(console: Console, tmp: Path, reason: str) -> int:
    """The one-line reason, and where the processes' logs are to find out more."""
    console.print(f"[red]demo failed:[/] {escape(reason)}", highlight=False)
    console.print(f"logs: {tmp}")
    return 1


async def _flow(stack: AsyncExitStack, demo: Demo, sizes: Sizes) -> None:
    """The story, one step per line."""
    await _migrate(demo)
    await _start_emulator(stack, demo)
    demo.http = await stack.enter_async_context(
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)))
    await _start_processes(stack, demo)
    google_user = _seed(demo, sizes)
    account_id = await _connect(demo)
    await _sync(demo, account_id, sizes)
    await _costs(demo, account_id)
    await _read(demo, account_id)
    await _refused(demo, account_id)
    await _disconnect(demo, account_id)
    await _check_revoked(demo, google_user)
    await _where_to_look(demo)


# -- infrastructure ------------------------------------------------------------------------


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


async def _redis(stack: AsyncExitStack, console: Console, tmp: Path) -> str:
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
    await _wait_for(lambda: _ping(private), "redis-server to answer", START_TIMEOUT_S, proc)
    console.print(f"redis: nothing at {url}; started a private redis-server on port {port}")
    return private


async def _forget_redis_keys(demo: Demo) -> None:
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


async def _wait_for(check: Callable[[], Awaitable[T]], what: str, limit_s: float,
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


async def _migrate(demo: Demo) -> None:
    """A fresh SQLite file at the latest schema, as `gwsync migrate` would leave it."""
    await upgrade_async(demo.database_url)
    demo.console.print(f"database: {demo.database_url} (migrated)")


async def _start_emulator(stack: AsyncExitStack, demo: Demo) -> None:
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
    })
    return env


def _gwsync_command(*args: str) -> list[str]:
    """The `gwsync` console script of this interpreter, or the same entry point via -c."""
    script = Path(sys.executable).with_name("gwsync")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "from gwsync.worker.cli import main; main()", *args]


async def _start_processes(stack: AsyncExitStack, demo: Demo) -> None:
    """`gwsync web` and `gwsync worker` as the Procfile runs them; wait until both serve."""
    port = _free_port()
    env = _process_env(demo, port)
    demo.api_url = f"http://127.0.0.1:{port}"
    web = await _spawn(stack, demo.tmp, "web", _gwsync_command("web"), env)
    worker = await _spawn(stack, demo.tmp, "worker", _gwsync_command("worker"), env)
    await _wait_for(lambda: _ready(demo), "the web process's /readyz", START_TIMEOUT_S,
                    web, demo.tmp / "web.log")
    await _wait_for(lambda: _worker_alive(demo), "the worker's health check", START_TIMEOUT_S,
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


# -- the story -----------------------------------------------------------------------------


async def _call(demo: Demo, method: str, path: str, expect: int | tuple[int, ...],
                **kwargs: Any) -> dict[str, Any]:
    """One API call; any status but `expect` is a failed step, with the body's error."""
    expected = (expect,) if isinstance(expect, int) else expect
    try:
        async with demo.session.request(method, demo.api_url + path, headers=demo.auth,
                                        **kwargs) as resp:
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise DemoError(f"{method} {path.split('?')[0]} failed: {type(exc).__name__}") from None
    if resp.status not in expected:
        error = body.get("error") if isinstance(body, dict) else body
        raise DemoError(f"{method} {path.split('?')[0]} answered {resp.status}: {error}")
    return body if isinstance(body, dict) else {"body": body}


def _seed(demo: Demo, sizes: Sizes) -> str:
    """A fake Google user with data for every feature, who has granted nothing yet."""
    user = seed_user(demo.emulator, sizes)
    demo.console.print(
        f"\n[bold]1. Seeded[/] {user}: {sizes.contacts} contacts, {sizes.events} calendar "
        f"events, {sizes.files} Drive files opened with the app, {sizes.messages} Gmail "
        "messages; granted: nothing yet")
    return user


async def _connect(demo: Demo) -> str:
    """The main app's connect button: start, the person allows everything, callback."""
    started = await _call(demo, "GET", "/v1/oauth/start", 200, params={
        "user_id": USER_ID, "features": ",".join(FEATURES), "login_hint": DEMO_EMAIL,
        "redirect_uri": demo.app_return_url})
    demo.console.print(f"\n[bold]2. Consent[/]: the app asks for {len(started['scopes'])} "
                       f"scopes; the browser goes to {started['url'].split('?')[0]}")
    offered, redirect = await allow_everything(demo.session, started["url"])
    demo.console.print(f"the consent screen offers {', '.join(map(short_scope, offered))}; "
                       f"the person ticks all {len(offered)} and clicks Continue; Google "
                       f"redirects to {demo.app_return_url} with a one-time code", highlight=False)
    connected = await _call(demo, "GET", "/v1/oauth/callback", 201, params=redirect)
    check_all_enabled(connected)
    demo.console.print(f"the app forwards code and state to /v1/oauth/callback → account "
                       f"{connected['account_id']} created; first syncs queued: "
                       f"{', '.join(connected['syncs_queued'])}", highlight=False)
    return str(connected["account_id"])


async def _sync(demo: Demo, account_id: str, sizes: Sizes) -> None:
    """Watch the five first syncs, page by page, until every feature reports `ok`."""
    demo.console.print("\n[bold]3. Syncing[/] (the worker fetches 25 items per page)")
    bars = FeatureProgress(demo.console, sizes.expected())
    with bars.progress:

        async def all_ok() -> bool:
            body = await _call(demo, "GET", f"/v1/accounts/{account_id}", 200)
            return bars.update(body["features"])

        await _wait_for(all_ok, "the five first syncs", SYNC_TIMEOUT_S)


async def _costs(demo: Demo, account_id: str) -> None:
    """Per feature: the scope it asked for, Google's class for it, what it stored and cost."""
    body = await _call(demo, "GET", f"/v1/accounts/{account_id}", 200)
    demo.console.print()
    demo.console.print(feature_table("4. Five features synced (API calls: the emulator's log)",
                                     body["features"], demo.emulator.calls()))


async def _read(demo: Demo, account_id: str) -> None:
    """A read naming the feature's own use is allowed, and each record says why it exists."""
    body = await _call(demo, "GET", f"/v1/accounts/{account_id}/records?feature={FEATURE}"
                       f"&use=feature:{FEATURE}&limit=5", 200)
    records = body["records"]
    if not records:
        raise DemoError("the permitted read returned no records")
    demo.console.print()
    table = Table(title="5. Read with use=feature:contacts (first 5)")
    for column in ("id", "name", "stored fields"):
        table.add_column(column)
    for record in records:
        content = record["content"]
        table.add_row(record["id"], content.get("name", ""), ", ".join(sorted(content)))
    demo.console.print(table)
    demo.console.print("purpose metadata of the first record:")
    demo.console.print(JSON.from_data(records[0]["purpose"]))


async def _refused(demo: Demo, account_id: str) -> None:
    """Limited Use in code: training a model on this data is refused, not just discouraged."""
    body = await _call(demo, "GET", f"/v1/accounts/{account_id}/records?feature={FEATURE}"
                       "&use=ai_training", 403)
    if body.get("error") != "limited_use_violation":
        raise DemoError(f"use=ai_training was refused with {body.get('error')!r}")
    demo.console.print("\n[bold]6. Read with use=ai_training[/] → 403")
    demo.console.print(JSON.from_data(body))


async def _disconnect(demo: Demo, account_id: str) -> None:
    """Disconnect, then wait for the erasure to be verified and show its receipt."""
    body = await _call(demo, "DELETE", f"/v1/accounts/{account_id}", 202)
    erasure_id = body["erasure_id"]
    demo.console.print(f"\n[bold]7. Disconnected[/]: erasure {erasure_id} requested")

    async def verified() -> dict[str, Any] | None:
        found = await _call(demo, "GET", f"/v1/erasures/{erasure_id}", 200)
        return found if found["status"] == "verified" else None

    found = await _wait_for(verified, "the erasure to be verified", ERASE_TIMEOUT_S)
    receipt = found["receipt"]
    demo.console.print("erasure receipt:")
    demo.console.print(JSON.from_data(receipt))
    _summary(demo, receipt)


def _summary(demo: Demo, receipt: dict[str, Any]) -> None:
    """One line a person can read: what went, and whether the recount found anything left."""
    counts = receipt.get("counts", {})
    verification = receipt.get("verification", {})
    if not verification.get("ok"):
        raise DemoError(f"the erasure's verification found leftovers: "
                        f"{verification.get('remaining')}")
    demo.console.print(
        f"[green]erasure {receipt['state']}[/]: {counts.get('records', 0)} records deleted, "
        f"{counts.get('data_keys', 0)} data key(s) destroyed, "
        f"{counts.get('grants_revoked', 0)} grant revoked, nothing left "
        f"({time.monotonic() - demo.started:.1f} s since start)")


async def _where_to_look(demo: Demo) -> None:
    """Where ops watch it: the ops page and both processes' metrics (checked to answer)."""
    admin = {"Authorization": f"Bearer {demo.secrets.admin_token}"}
    worker = f"http://127.0.0.1:{demo.worker_metrics_port}/metrics"
    for url, headers in ((f"{demo.api_url}/ops", admin), (f"{demo.api_url}/metrics", {}),
                         (worker, {})):
        async with demo.session.get(url, headers=headers) as resp:
            if resp.status != 200:
                raise DemoError(f"{url} answered {resp.status}")
    demo.console.print(
        f"\n[bold]9.[/] ops page: {demo.api_url}/ops (sign in at {demo.api_url}/ops/login "
        f"with GWSYNC_ADMIN_TOKEN); metrics: {demo.api_url}/metrics (web) and {worker} "
        "(worker); `gwsync status` shows the same in a terminal", highlight=False)


async def _check_revoked(demo: Demo, google_user: str) -> None:
    """Ask the emulator (i.e. 'Google') whether gwsync really revoked the grant.

    Only gwsync ever saw the refresh token (the consent flow hands it over server to
    server), so the revocation is found by user and kind.
    """
    async with demo.session.get(f"{demo.google_url}/_emulator/revocations") as resp:
        body = await resp.json()
    revoked = [r for r in body.get("revocations", [])
               if r.get("user") == google_user and r.get("kind") == "refresh_token"]
    if not revoked:
        raise DemoError("the emulator saw no revocation of the demo user's grant")
    demo.console.print(f"\n[bold]8.[/] Google (emulator) confirms: the {revoked[0]['kind']} of "
                       f"{revoked[0]['user']} was revoked at {revoked[0]['at']}")
