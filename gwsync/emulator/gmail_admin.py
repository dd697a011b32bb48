"""Admin routes that change a user's mailbox (``/_emulator/users/{user}/gmail/...``).

Thin JSON wrappers over :class:`~gwsync.emulator.mailbox.Mailbox`, in gwsync's own
error convention (see ``admin.py``), so tests and the demo can deliver, delete and
relabel mail, and age the history log so old history ids answer 404.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gwsync.emulator.admin import PREFIX
from gwsync.emulator.mailbox import mailbox, seed_gmail
from gwsync.emulator.state import STATE_KEY


def _message_specs(body: Any) -> list[dict[str, Any]]:
    specs = body.get("messages", [body]) if isinstance(body, dict) else body
    if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
        raise ValueError("messages must be a list of message objects")
    return specs


def _strings(spec: dict[str, Any], key: str, default: list[str]) -> list[str]:
    value = spec.get(key, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} must be a list of strings")
    return value


async def add_messages(request: web.Request) -> web.Response:
    """``POST …/gmail/messages`` ``{from, to, subject, date?, body?, labelIds?}`` or a list."""
    state = request.app[STATE_KEY]
    box = mailbox(state, request.match_info["user"])
    ids = []
    for spec in _message_specs(await request.json()):
        headers = {name.title(): str(spec[name]) for name in ("from", "to", "subject", "date")
                   if name in spec}
        labels = _strings(spec, "labelIds", ["INBOX", "UNREAD"])
        ids.append(box.add(headers, str(spec.get("body", "")), int(state.now() * 1000),
                           labels).id)
    return web.json_response({"ids": ids}, status=201)


async def seed(request: web.Request) -> web.Response:
    """``POST …/gmail/seed`` ``{n}``: deliver n deterministic messages."""
    body = await request.json()
    n = body.get("n") if isinstance(body, dict) else None
    if not isinstance(n, int) or n < 0:
        raise ValueError("n must be a non-negative integer")
    ids = seed_gmail(request.app[STATE_KEY], request.match_info["user"], n)
    return web.json_response({"ids": ids}, status=201)


async def delete_message(request: web.Request) -> web.Response:
    """``DELETE …/gmail/messages/{id}``: a permanent delete (messageDeleted)."""
    mailbox(request.app[STATE_KEY], request.match_info["user"]).delete(request.match_info["id"])
    return web.json_response({})


async def change_labels(request: web.Request) -> web.Response:
    """``POST …/gmail/messages/{id}/labels`` ``{add?, remove?}``."""
    body = await request.json()
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    box = mailbox(request.app[STATE_KEY], request.match_info["user"])
    box.change_labels(request.match_info["id"], _strings(body, "add", []),
                      _strings(body, "remove", []))
    return web.json_response({"labelIds": box.get(request.match_info["id"]).label_ids})


async def truncate_history(request: web.Request) -> web.Response:
    """``POST …/gmail/truncate-history``: every older history id now answers 404."""
    floor = mailbox(request.app[STATE_KEY], request.match_info["user"]).truncate_history()
    return web.json_response({"floor": str(floor)})


async def history_retention(request: web.Request) -> web.Response:
    """``PUT …/gmail/history-retention`` ``{seconds}``: records older than that are
    forgotten, and start ids from before them answer 404."""
    body = await request.json()
    seconds = body.get("seconds") if isinstance(body, dict) else None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise ValueError("seconds must be a non-negative number")
    mailbox(request.app[STATE_KEY], request.match_info["user"]).retention_s = seconds
    return web.json_response({"seconds": seconds})


def setup(app: web.Application) -> None:
    """Register the Gmail admin routes."""
    base = PREFIX + "/users/{user}/gmail"
    app.router.add_post(base + "/messages", add_messages)
    app.router.add_post(base + "/seed", seed)
    app.router.add_delete(base + "/messages/{id}", delete_message)
    app.router.add_post(base + "/messages/{id}/labels", change_labels)
    app.router.add_post(base + "/truncate-history", truncate_history)
    app.router.add_put(base + "/history-retention", history_retention)
