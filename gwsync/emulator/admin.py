"""Admin routes under ``/_emulator/`` — not Google's; how tests and the demo drive the world.

Each route is a thin JSON wrapper over an :class:`EmulatorState` method. Errors use
gwsync's own convention (``{"error": <code>, "detail": ...}``), not Google's, so nobody
mistakes them for Google behaviour.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gwsync.emulator.errors import NotFoundError
from gwsync.emulator.state import STATE_KEY, EmulatorState

PREFIX = "/_emulator"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, error: str, detail: str) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status)


@web.middleware
async def admin_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map admin failures to JSON 4xx (an unknown user, contact, event, file or message is
    404 ``unknown_<kind>``); leaves non-admin routes alone."""
    if not request.path.startswith(PREFIX + "/"):
        return await handler(request)
    try:
        return await handler(request)
    except NotFoundError as exc:
        return _error(404, f"unknown_{exc.kind}", exc.key)
    except (ValueError, TypeError) as exc:  # a malformed body (JSON errors are ValueErrors)
        return _error(400, "bad_request", str(exc))


async def _json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object (empty body → ``{}``)."""
    if not request.can_read_body:
        return {}
    body = await request.json()
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


def _list_field(body: dict[str, Any], key: str) -> list[Any]:
    value = body.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"{key} must be a list")
    return value


def _persons(body: Any) -> list[dict[str, Any]]:
    """A list of person objects, from a list or from a body's ``contacts`` key."""
    persons = body.get("contacts", []) if isinstance(body, dict) else body
    if not isinstance(persons, list) or not all(isinstance(p, dict) for p in persons):
        raise ValueError("contacts must be a list of person objects")
    return persons


def _state(request: web.Request) -> EmulatorState:
    return request.app[STATE_KEY]


async def create_user(request: web.Request) -> web.Response:
    """``POST /_emulator/users`` ``{email, contacts?, scopes?, key?}`` → 201 ``{user, …}``."""
    body = await _json(request)
    if not isinstance(body.get("email"), str) or not body["email"]:
        raise ValueError("email is required")
    issued = _state(request).add_user(
        body["email"], _persons(body), _list_field(body, "scopes"), body.get("key")
    )
    return web.json_response(issued.as_json(), status=201)


async def create_grant(request: web.Request) -> web.Response:
    """``POST /_emulator/users/{user}/grants`` ``{scopes}`` → 201 ``{user, refresh_token}``."""
    body = await _json(request)
    issued = _state(request).issue_grant(request.match_info["user"], _list_field(body, "scopes"))
    return web.json_response(issued.as_json(), status=201)


async def add_contacts(request: web.Request) -> web.Response:
    """``POST …/contacts`` with one person dict, a list, or ``{"contacts": [...]}``."""
    body = await request.json()
    if isinstance(body, dict) and not isinstance(body.get("contacts"), list):
        body = [body]
    persons = _persons(body)
    names = _state(request).add_contacts(request.match_info["user"], persons)
    return web.json_response({"resourceNames": names}, status=201)


async def update_contact(request: web.Request) -> web.Response:
    """``PATCH …/contacts/{id}`` with the fields to replace (``null`` removes a field)."""
    body = await _json(request)
    etag = _state(request).update_contact(
        request.match_info["user"], request.match_info["id"], body
    )
    return web.json_response({"etag": etag})


async def rename_contact(request: web.Request) -> web.Response:
    """``POST …/contacts/{id}/rename``: the contact gets a new resource name (Google
    renames contacts when a profile is linked or unlinked) → ``{resourceName}``."""
    name = _state(request).rename_contact(request.match_info["user"], request.match_info["id"])
    return web.json_response({"resourceName": name})


async def delete_contact(request: web.Request) -> web.Response:
    """``DELETE …/contacts/{id}``."""
    _state(request).delete_contact(request.match_info["user"], request.match_info["id"])
    return web.json_response({})


async def revoke_user(request: web.Request) -> web.Response:
    """``POST …/revoke``: the user removes the app's access in their Google account."""
    count = _state(request).revoke_user(request.match_info["user"])
    return web.json_response({"revoked_grants": count})


async def expire_sync_tokens(request: web.Request) -> web.Response:
    """``POST …/expire-sync-tokens``: every sync token of the user now answers expired."""
    count = _state(request).expire_sync_tokens(request.match_info["user"])
    return web.json_response({"expired": count})


async def calls(request: web.Request) -> web.Response:
    """``GET /_emulator/calls`` (``?clear=1`` empties the log after reading)."""
    clear = request.query.get("clear", "") in {"1", "true"}
    return web.json_response({"calls": _state(request).calls(clear=clear)})


async def revocations(request: web.Request) -> web.Response:
    """``GET /_emulator/revocations``: tokens revoked through ``/revoke``."""
    return web.json_response({"revocations": _state(request).revocations()})


async def add_fault(request: web.Request) -> web.Response:
    """``POST /_emulator/faults`` ``{path_prefix, status, count?, delay_ms?, after?}``."""
    body = await _json(request)
    if not isinstance(body.get("path_prefix"), str) or not body["path_prefix"].startswith("/"):
        raise ValueError("path_prefix must be a path starting with /")
    fault = _state(request).add_fault(
        body["path_prefix"],
        int(body.get("status", 503)),
        int(body.get("count", 1)),
        int(body.get("delay_ms", 0)),
        int(body.get("after", 0)),
    )
    return web.json_response(fault.as_json(), status=201)


async def list_faults(request: web.Request) -> web.Response:
    """``GET /_emulator/faults``: the pending faults."""
    return web.json_response({"faults": [f.as_json() for f in _state(request).faults]})


async def clear_faults(request: web.Request) -> web.Response:
    """``DELETE /_emulator/faults``."""
    _state(request).clear_faults()
    return web.json_response({})


async def put_page_tokens(request: web.Request) -> web.Response:
    """``PUT /_emulator/page-tokens`` ``{ttl_s}``: how long every API's page tokens live."""
    ttl = (await _json(request)).get("ttl_s")
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl < 0:
        raise ValueError("ttl_s must be a non-negative number of seconds")
    _state(request).cursors.page_token_ttl = ttl
    return await get_page_tokens(request)


async def get_page_tokens(request: web.Request) -> web.Response:
    """``GET /_emulator/page-tokens``: ``{ttl_s}``."""
    return web.json_response({"ttl_s": _state(request).cursors.page_token_ttl})


def setup(app: web.Application) -> None:
    """Register the admin routes."""
    user = PREFIX + "/users/{user}"
    app.router.add_post(PREFIX + "/users", create_user)
    app.router.add_post(user + "/grants", create_grant)
    app.router.add_post(user + "/contacts", add_contacts)
    app.router.add_patch(user + "/contacts/{id}", update_contact)
    app.router.add_delete(user + "/contacts/{id}", delete_contact)
    app.router.add_post(user + "/contacts/{id}/rename", rename_contact)
    app.router.add_post(user + "/revoke", revoke_user)
    app.router.add_post(user + "/expire-sync-tokens", expire_sync_tokens)
    app.router.add_get(PREFIX + "/calls", calls)
    app.router.add_get(PREFIX + "/revocations", revocations)
    app.router.add_post(PREFIX + "/faults", add_fault)
    app.router.add_get(PREFIX + "/faults", list_faults)
    app.router.add_delete(PREFIX + "/faults", clear_faults)
    app.router.add_put(PREFIX + "/page-tokens", put_page_tokens)
    app.router.add_get(PREFIX + "/page-tokens", get_page_tokens)
