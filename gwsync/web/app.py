"""The web process's composition root: every route group on one aiohttp app.

Route modules know nothing of each other; this module alone lists them, with the two
middlewares (error shape, bearer auth) of `gwsync.web.http`.
"""

from __future__ import annotations

from aiohttp import web

from gwsync.core import logs
from gwsync.core.settings import Settings
from gwsync.tasks.deps import Deps
from gwsync.web import (
    accounts,
    erasures,
    health,
    oauth,
    openapi,
    ops_page,
    records,
    risc,
    staff,
)
from gwsync.web.http import DEPS, auth, errors

#: The longest request line the server parses. aiohttp's default (8190 bytes) is shorter
#: than a consent start whose fields are at their documented maxima once percent-encoded
#: (up to 12 bytes a character), and its refusal is plain text: longer lines reach the
#: validators, which answer with the API's JSON error.
MAX_REQUEST_LINE = 64 * 1024


def create_app(deps: Deps, *, own_deps: bool = False) -> web.Application:
    """The web app over `deps`; with `own_deps` it closes them on shutdown."""
    app = web.Application(middlewares=[errors, auth],
                          handler_args={"max_line_size": MAX_REQUEST_LINE})
    app[DEPS] = deps
    health.add_routes(app.router)
    accounts.add_routes(app.router)
    records.add_routes(app.router)
    erasures.add_routes(app.router)
    oauth.add_routes(app.router)
    risc.add_routes(app, deps)
    staff.add_routes(app.router)
    ops_page.add_routes(app.router)
    openapi.add_routes(app.router)
    if own_deps:
        async def _close(_app: web.Application) -> None:
            await deps.close()
        app.on_cleanup.append(_close)
    return app


def run(settings: Settings) -> None:
    """Start the web process (blocking). Refuses to start without its secrets."""
    settings.require("web")
    logs.configure(settings.log_format, settings.log_level)

    async def _app() -> web.Application:
        return create_app(await Deps.open(settings), own_deps=True)

    web.run_app(_app(), port=settings.port, access_log=None, print=None)
