"""`gwsync demo`: the whole life of one connected account, end to end, with real processes.

A reader of README.md should be able to *see* the three promises hold without a Google
project: the demo starts the web and worker processes exactly as the Procfile would (on a
throw-away SQLite file and a Redis namespace of its own), points them at the emulator,
connects a fake user through the consent screen (playing both the main app and the person
who clicks Allow), syncs all five features, reads with a permitted use, is refused a
forbidden one, disconnects, and prints the erasure receipt. It touches nothing outside its
temp directory and its own Redis key prefix.

This module tells the story; what it runs on is `demo_stack`, the five features' parts
are `demo_features`, and how it fails is `demo_errors`.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from collections.abc import Awaitable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from rich.console import Console
from rich.json import JSON
from rich.markup import escape
from rich.table import Table

from gwsync.client import ApiError
from gwsync.devtools.demo_errors import DemoError, RedisUnavailableError
from gwsync.devtools.demo_features import (
    FeatureProgress,
    Sizes,
    allow_everything,
    check_all_enabled,
    feature_table,
    seed_user,
    short_scope,
)
from gwsync.devtools.demo_stack import (
    Demo,
    Secrets,
    find_or_start_redis,
    forget_redis_keys,
    migrate,
    start_emulator,
    start_processes,
    wait_for,
)
from gwsync.domain.api import ErasureAnswer
from gwsync.domain.features import FEATURES
from gwsync.emulator.consent_client import ConsentPageError
from gwsync.emulator.seed import DEMO_EMAIL
from gwsync.emulator.state import EmulatorState

REDIS_HINT = ("Install Redis and run the demo again — Debian/Ubuntu: "
              "`sudo apt-get install redis-server`; macOS: `brew install redis`.")
FEATURE = "contacts"  # the feature the read and the refusal are shown on
USER_ID = "demo-user-1"  # the main app's id for the person
SYNC_TIMEOUT_S = 60.0
T = TypeVar("T")
ERASE_TIMEOUT_S = 60.0


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
            redis_url = await find_or_start_redis(stack, console, tmp)
        except RedisUnavailableError as exc:
            console.print(f"[red]gwsync demo needs Redis:[/] {exc}\n{REDIS_HINT}")
            return 2
        keys = Secrets()
        demo = Demo(console=console, tmp=tmp, secrets=keys, redis_url=redis_url,
                    prefix=f"gwsync-demo-{secrets.token_hex(4)}",
                    database_url=f"sqlite+aiosqlite:///{tmp / 'gwsync.db'}",
                    emulator=EmulatorState(keys.client_id, keys.client_secret))
        stack.push_async_callback(forget_redis_keys, demo)
        try:
            await _flow(stack, demo, sizes)
        except (DemoError, ConsentPageError) as exc:
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
    await migrate(demo)
    await start_emulator(stack, demo)
    demo.http = await stack.enter_async_context(
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)))
    await start_processes(stack, demo)
    google_user = _seed(demo, sizes)
    account_id = await _connect(demo)
    await _sync(demo, account_id, sizes)
    await _costs(demo, account_id)
    await _read(demo, account_id)
    await _refused(demo, account_id)
    await _disconnect(demo, account_id)
    await _check_revoked(demo, google_user)
    await _where_to_look(demo)


# -- the story -----------------------------------------------------------------------------


async def _api(step: str, call: Awaitable[T]) -> T:
    """One call through the typed client; a refusal or no answer is a failed step."""
    try:
        return await call
    except ApiError as exc:
        raise DemoError(f"{step} answered {exc.status}: {exc.error}") from None
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise DemoError(f"{step} failed: {type(exc).__name__}") from None


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
    started = await _api("GET /v1/oauth/start", demo.gw.start_consent(
        USER_ID, list(FEATURES), demo.app_return_url, login_hint=DEMO_EMAIL))
    if started.url is None:
        raise DemoError("the new user was asked for no scope")
    demo.console.print(f"\n[bold]2. Consent[/]: the app asks for {len(started.scopes)} "
                       f"scopes; the browser goes to {started.url.split('?')[0]}")
    offered, redirect = await allow_everything(demo.session, started.url)
    demo.console.print(f"the consent screen offers {', '.join(map(short_scope, offered))}; "
                       f"the person ticks all {len(offered)} and clicks Continue; Google "
                       f"redirects to {demo.app_return_url} with a one-time code", highlight=False)
    # The app forwards the redirect from the browser session of the user who began it.
    connected = await _api("GET /v1/oauth/callback", demo.gw.finish_consent(
        USER_ID, state=redirect.get("state", ""), code=redirect.get("code"),
        error=redirect.get("error")))
    check_all_enabled(connected.syncs_queued)
    demo.console.print(f"the app forwards code, state and its user to /v1/oauth/callback → "
                       f"account {connected.account_id} created; first syncs queued: "
                       f"{', '.join(connected.syncs_queued)}", highlight=False)
    return connected.account_id


async def _sync(demo: Demo, account_id: str, sizes: Sizes) -> None:
    """Watch the five first syncs, page by page, until every feature reports `ok`."""
    demo.console.print("\n[bold]3. Syncing[/] (the worker fetches 25 items per page)")
    bars = FeatureProgress(demo.console, sizes.expected())
    with bars.progress:

        async def all_ok() -> bool:
            body = await _api("GET /v1/accounts/{id}", demo.gw.status(account_id, USER_ID))
            return bars.update(body.features)

        await wait_for(all_ok, "the five first syncs", SYNC_TIMEOUT_S)


async def _costs(demo: Demo, account_id: str) -> None:
    """Per feature: the scope it asked for, Google's class for it, what it stored and cost."""
    body = await _api("GET /v1/accounts/{id}", demo.gw.status(account_id, USER_ID))
    demo.console.print()
    demo.console.print(feature_table("4. Five features synced (API calls: the emulator's log)",
                                     body.features, demo.emulator.calls()))


async def _read(demo: Demo, account_id: str) -> None:
    """A read naming the feature's own use is allowed, and each record says why it exists."""
    pages = demo.gw.read(account_id, USER_ID, use=f"feature:{FEATURE}", feature=FEATURE,
                         limit=5)
    records = (await _api("GET /v1/accounts/{id}/records", anext(pages))).records
    if not records:
        raise DemoError("the permitted read returned no records")
    demo.console.print()
    table = Table(title="5. Read with use=feature:contacts (first 5)")
    for column in ("id", "name", "stored fields"):
        table.add_column(column)
    for record in records:
        content = record.content
        table.add_row(record.id, str(content.get("name", "")), ", ".join(sorted(content)))
    demo.console.print(table)
    demo.console.print("purpose metadata of the first record:")
    demo.console.print(JSON.from_data(records[0].purpose.model_dump()))


async def _refused(demo: Demo, account_id: str) -> None:
    """Limited Use in code: training a model on this data is refused, not just discouraged."""
    try:
        await anext(demo.gw.read(account_id, USER_ID, use="ai_training", feature=FEATURE))
    except ApiError as refused:
        if (refused.status, refused.error) != (403, "limited_use_violation"):
            raise DemoError(f"use=ai_training was refused with {refused.status} "
                            f"{refused.error!r}") from None
        demo.console.print("\n[bold]6. Read with use=ai_training[/] → 403")
        demo.console.print(JSON.from_data(refused.body.model_dump(exclude_none=True)))
        return
    raise DemoError("use=ai_training was not refused")


async def _disconnect(demo: Demo, account_id: str) -> None:
    """Disconnect, then wait for the erasure to be verified and show its receipt."""
    body = await _api("DELETE /v1/accounts/{id}", demo.gw.disconnect(account_id, USER_ID))
    erasure_id = body.erasure_id
    demo.console.print(f"\n[bold]7. Disconnected[/]: erasure {erasure_id} requested")

    async def verified() -> ErasureAnswer | None:
        found = await _api("GET /v1/erasures/{id}", demo.gw.erasure(erasure_id, USER_ID))
        return found if found.status == "verified" else None

    found = await wait_for(verified, "the erasure to be verified", ERASE_TIMEOUT_S)
    receipt = found.receipt.model_dump()
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
    for url, headers in ((f"{demo.api_url}/ops", admin), (f"{demo.api_url}/metrics", admin),
                         (worker, {})):
        async with demo.session.get(url, headers=headers) as resp:
            if resp.status != 200:
                raise DemoError(f"{url} answered {resp.status}")
    await _sign_in_as_a_browser(demo)
    demo.console.print(
        f"\n[bold]9.[/] ops page: {demo.api_url}/ops (sign in with the form at "
        f"{demo.api_url}/ops/login, pasting GWSYNC_ADMIN_TOKEN); metrics: "
        f"{demo.api_url}/metrics (web) with the admin bearer token, and {worker} (worker); "
        "`gwsync status` shows the same in a terminal",
        highlight=False)


async def _sign_in_as_a_browser(demo: Demo) -> None:
    """Sign in to the ops page with its form, as a person will: over the demo's plain http
    the session cookie must not be `Secure`, or the browser would never send it back."""
    url = f"{demo.api_url}/ops"
    async with demo.session.post(f"{url}/login", data={"token": demo.secrets.admin_token},
                                 allow_redirects=False) as resp:
        cookie = resp.cookies.get("gwsync_ops")
    if resp.status != 303 or cookie is None or cookie["secure"]:
        raise DemoError(f"signing in at {url}/login with the form failed ({resp.status})")
    async with demo.session.get(url, headers={"Cookie": f"gwsync_ops={cookie.value}"},
                                allow_redirects=False) as page:
        if page.status != 200:
            raise DemoError(f"{url} answered {page.status} to the signed-in session")


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
