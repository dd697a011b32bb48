"""Admin routes that set, show and clear one policy of the emulator's state.

The quota and the realism knobs are both "a policy on the state, or none": one PUT sets
it from a JSON body (its counters start at zero), GET shows it with its counters (`{}`
when none), DELETE turns it off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

from aiohttp import web

from gwsync.emulator.state import STATE_KEY

#: The attributes of EmulatorState that hold a policy.
PolicyName = Literal["quota", "realism"]


class Policy(Protocol):
    def as_json(self) -> dict[str, Any]: ...


def add_policy_routes(app: web.Application, prefix: str, name: PolicyName,
                      parse: Callable[[Any], Policy]) -> None:
    """PUT/GET/DELETE `prefix` for the state's `name` policy; `parse` raises ValueError
    (→ 400) on a body it does not accept."""

    async def put(request: web.Request) -> web.Response:
        policy = parse(await request.json())
        setattr(request.app[STATE_KEY], name, policy)
        return web.json_response(policy.as_json())

    async def get(request: web.Request) -> web.Response:
        policy: Policy | None = getattr(request.app[STATE_KEY], name)
        return web.json_response(policy.as_json() if policy else {})

    async def delete(request: web.Request) -> web.Response:
        setattr(request.app[STATE_KEY], name, None)
        return web.json_response({})

    app.router.add_put(prefix, put)
    app.router.add_get(prefix, get)
    app.router.add_delete(prefix, delete)
