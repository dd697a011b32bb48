"""Admin routes that change a user's calendar (``/_emulator/users/{user}/calendar/...``).

Thin JSON wrappers over the in-process helpers of `calendar_events`, in gwsync's own
error convention (see ``admin.py``): tests and the demo add, change, cancel and seed
events, and expire sync tokens so the next incremental sync answers 410. A body with
``recurrence`` adds a series; PATCH on a series' id edits the series (a new ``recurrence``
with an ``UNTIL`` shortens it), on an instance's id (``{seriesId}_{start}``) makes an
exception; DELETE on either deletes the series or that one instance.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gwsync.emulator.admin import PREFIX
from gwsync.emulator.calendar_events import (
    add_events,
    cancel_event,
    events,
    expire_calendar_sync_tokens,
    seed_calendar,
    update_event,
)
from gwsync.emulator.state import STATE_KEY


def _event_list(body: Any) -> list[dict[str, Any]]:
    """One event, a list, or ``{"events": [...]}``."""
    found = body.get("events", [body]) if isinstance(body, dict) else body
    if not isinstance(found, list) or not all(isinstance(e, dict) for e in found):
        raise ValueError("events must be a list of event objects")
    return found


async def _body(request: web.Request) -> Any:
    try:
        return await request.json() if request.can_read_body else {}
    except json.JSONDecodeError:
        raise ValueError("body must be JSON") from None


async def admin_add_events(request: web.Request) -> web.Response:
    """``POST …/calendar/events`` → 201 ``{"ids": [...]}``."""
    ids = add_events(request.app[STATE_KEY], request.match_info["user"],
                     _event_list(await _body(request)))
    return web.json_response({"ids": ids}, status=201)


async def admin_list_events(request: web.Request) -> web.Response:
    """``GET …/calendar/events``: the live events, as the API renders them."""
    return web.json_response({"events": events(request.app[STATE_KEY],
                                               request.match_info["user"])})


async def admin_update_event(request: web.Request) -> web.Response:
    """``PATCH …/calendar/events/{id}`` with the fields to replace (``null`` removes one)."""
    body = await _body(request)
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    etag = update_event(request.app[STATE_KEY], request.match_info["user"],
                        request.match_info["id"], body)
    return web.json_response({"etag": etag})


async def admin_cancel_event(request: web.Request) -> web.Response:
    """``DELETE …/calendar/events/{id}``: the event becomes cancelled."""
    cancel_event(request.app[STATE_KEY], request.match_info["user"], request.match_info["id"])
    return web.json_response({})


async def admin_expire_tokens(request: web.Request) -> web.Response:
    """``POST …/calendar/expire-sync-tokens``: every Calendar sync token now answers 410."""
    count = expire_calendar_sync_tokens(request.app[STATE_KEY], request.match_info["user"])
    return web.json_response({"expired": count})


def _count(body: Any, name: str, default: int | None) -> int:
    n = body.get(name, default) if isinstance(body, dict) else default
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 10_000:
        raise ValueError(f"{name} must be an integer from 0 to 10000")
    return n


async def admin_seed(request: web.Request) -> web.Response:
    """``POST …/calendar/seed`` ``{"n_events": n, "n_series"?: m}`` → 201 ``{"ids": [...]}``."""
    body = await _body(request)
    ids = seed_calendar(request.app[STATE_KEY], request.match_info["user"],
                        _count(body, "n_events", None), n_series=_count(body, "n_series", 0))
    return web.json_response({"ids": ids}, status=201)


def setup(app: web.Application) -> None:
    """Register the Calendar admin routes."""
    admin = PREFIX + "/users/{user}/calendar"
    app.router.add_post(admin + "/events", admin_add_events)
    app.router.add_get(admin + "/events", admin_list_events)
    app.router.add_patch(admin + "/events/{id}", admin_update_event)
    app.router.add_delete(admin + "/events/{id}", admin_cancel_event)
    app.router.add_post(admin + "/expire-sync-tokens", admin_expire_tokens)
    app.router.add_post(admin + "/seed", admin_seed)
