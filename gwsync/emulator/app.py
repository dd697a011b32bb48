"""The emulator's aiohttp application and the helpers that run it.

One origin serves Google's OAuth paths, API paths and the admin routes, which is
how production code reaches it: ``GWSYNC_GOOGLE_BASE_URL=<origin>``.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
from collections.abc import Awaitable, Callable

from aiohttp import web

from gwsync.emulator import (
    admin,
    batch,
    calendar,
    consent,
    drive,
    gmail,
    oauth,
    people,
    push,
    quota,
    realism,
    risc,
    signing,
    watch,
)
from gwsync.emulator.auth import bearer_token
from gwsync.emulator.errors import GoogleApiError, OAuthError
from gwsync.emulator.faults import Fault
from gwsync.emulator.seed import seed_demo_user
from gwsync.emulator.state import STATE_KEY, EmulatorState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Paths answering in OAuth's error dialect rather than ``google.rpc.Status``.
OAUTH_PATHS = ("/token", "/revoke", "/o/oauth2")


def _is_oauth(path: str) -> bool:
    return path.startswith(OAUTH_PATHS)


def _fault_response(path: str, fault: Fault) -> web.Response:
    """An injected failure in the dialect of the endpoint it hits.

    What Google's token endpoint sends on a 5xx is not documented; ``internal_failure``
    is one of the codes google-auth treats as retryable, so clients behave as for a
    real outage.
    """
    if _is_oauth(path):
        error = "internal_failure" if fault.status >= 500 else "rate_limit_exceeded"
        if fault.status < 500 and fault.status != 429:
            error = "invalid_request"
        return web.json_response(OAuthError(fault.status, error).body(), status=fault.status)
    return web.json_response(GoogleApiError(fault.status).body(), status=fault.status)


def _caller(request: web.Request) -> str | None:
    """The user whose access token the request carries (known, even if since revoked)."""
    raw = bearer_token(request)
    token = request.app[STATE_KEY].access_tokens.get(raw) if raw else None
    return token.user if token is not None else None


@web.middleware
async def in_flight(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count each user's API requests in flight, injected latency included."""
    user = _caller(request)
    if user is None:
        return await handler(request)
    with request.app[STATE_KEY].request_in_flight(user, request.path):
        return await handler(request)


@web.middleware
async def realistic(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Latency, concurrency limits and random failures of API calls, when turned on.

    A batch POST itself is not a call: its parts, which come back through this
    application one by one, are.
    """
    realism, user = request.app[STATE_KEY].realism, _caller(request)
    if realism is None or user is None or request.path.startswith("/batch"):
        return await handler(request)
    return await realism.around(user, request.path, lambda: handler(request))


@web.middleware
async def faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply injected latency and failures before a request reaches its route."""
    if request.path.startswith(admin.PREFIX + "/"):
        return await handler(request)
    fault = request.app[STATE_KEY].take_fault(request.path)
    if fault is not None and fault.delay_ms:
        await asyncio.sleep(fault.delay_ms / 1000)
    if fault is not None and fault.status:
        return _fault_response(request.path, fault)
    return await handler(request)


@web.middleware
async def google_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render the emulator's exceptions as Google's JSON error bodies."""
    try:
        return await handler(request)
    except GoogleApiError as exc:
        return web.json_response(exc.body(), status=exc.code, headers=exc.headers)
    except OAuthError as exc:
        return web.json_response(exc.body(), status=exc.http_status)


def create_app(state: EmulatorState | None = None) -> web.Application:
    """The emulator as an aiohttp application around ``state`` (a fresh one by default)."""
    app = web.Application(
        middlewares=[in_flight, google_errors, realistic, faults, admin.admin_errors])
    app[STATE_KEY] = state if state is not None else EmulatorState()
    oauth.setup(app)
    consent.setup(app)
    people.setup(app)
    calendar.setup(app)
    drive.setup(app)
    gmail.setup(app)
    batch.setup(app)
    risc.setup(app)
    signing.setup(app)
    watch.setup(app)
    quota.setup(app)
    realism.setup(app)
    push.setup(app)
    admin.setup(app)
    return app


async def serve(
    host: str = "127.0.0.1", port: int = 0, state: EmulatorState | None = None
) -> web.AppRunner:
    """Start the emulator on the running loop; ``port=0`` picks a free port.

    The caller must ``await runner.cleanup()``; :func:`base_url` tells where it listens.
    """
    runner = web.AppRunner(create_app(state))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def base_url(runner: web.AppRunner) -> str:
    """The origin a started runner listens on, e.g. ``http://127.0.0.1:54321``."""
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}"


def state_of(runner: web.AppRunner) -> EmulatorState:
    """The state behind a runner started by :func:`serve`."""
    return runner.app[STATE_KEY]


def run(host: str, port: int, seed_contacts: int = 0) -> None:
    """Serve until interrupted (``gwsync emulator``); prints how to connect to it."""
    state = EmulatorState()
    print = functools.partial(builtins.print, flush=True)  # visible at once when piped
    print(f"gwsync emulator on http://{host}:{port}")
    print(f"client_id={state.client_id} client_secret={state.client_secret}")
    if seed_contacts:
        issued = seed_demo_user(state, seed_contacts)
        print(f"seeded {issued.user} with {seed_contacts} contacts")
        print(f"refresh_token={issued.refresh_token}")
        print(f"scopes={' '.join(issued.scopes)}")
    web.run_app(create_app(state), host=host, port=port, print=None)
