"""Per-user quota, enforced as Google reports it: optional, per API, in Google's units.

Off unless a test or benchmark sets ``state.quota = QuotaPolicy({"gmail": 15000})`` (or
``PUT /_emulator/quota``). Every authorised call is charged in :func:`charge`, from the
``google_api`` decorator, so the inner calls of a batch are charged one by one, as
Google counts them (reference §5.6). Units per method are gwsync's own table
(``gwsync.connectors.quota``), which is Google's published one; sharing it keeps the two
sides from drifting, as the scope table is shared.

The window is a sliding log of admitted calls (Calendar documents a sliding window; for
the others Google does not say how it counts). A refused call is not charged. Refusals
follow the documented shapes: Gmail, Calendar and Drive answer 403 ``usageLimits`` /
``userRateLimitExceeded``; People, a newer API, answers 429 ``RESOURCE_EXHAUSTED`` with
an ``ErrorInfo`` of reason ``RATE_LIMIT_EXCEEDED`` (its exact quota-metric names are not
documented; the ones below are plausible). ``status=429`` makes every API answer 429
``rateLimitExceeded``, as Gmail does for too many concurrent requests. Google does not
document ``Retry-After`` for these APIs; with ``retry_after`` on, the emulator sends the
whole seconds until the call would fit.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gwsync.connectors import quota as costs
from gwsync.emulator.errors import ApiError
from gwsync.emulator.state import STATE_KEY, EmulatorState

PREFIX = "/_emulator/quota"
_USER_RATE_MESSAGES = {"gmail": "User-rate limit exceeded.",
                       "calendar": "User Rate Limit Exceeded",
                       "drive": "User rate limit exceeded."}
_PEOPLE_SERVICE = "people.googleapis.com"


class QuotaError(ApiError):
    """A refusal for quota; carries the legacy ``errors`` list the older APIs still send."""

    def __init__(self, code: int, message: str, status: str, *,
                 errors: list[dict[str, str]] | None = None,
                 details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(code, message, status, details=details, headers=headers)
        self.errors = errors or []

    def body(self) -> dict[str, Any]:
        body = super().body()
        if self.errors:
            body["error"]["errors"] = self.errors
        return body


@dataclass
class QuotaPolicy:
    """Units per user per API per `window_s`; APIs not named are not limited."""

    per_user: dict[str, int]
    window_s: float = 60.0
    retry_after: bool = True
    #: None: each API's usual refusal; 429: every API answers 429 ``rateLimitExceeded``.
    status: int | None = None
    #: Units admitted and calls refused so far, per API (for tests and benchmarks).
    charged: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    #: Every admitted call as (emulator time, API, user, units): lets a test check how
    #: much all users together were charged in any window (a project's share), which the
    #: per-user windows below do not enforce.
    admitted: list[tuple[float, str, str, int]] = field(default_factory=list)
    _log: dict[tuple[str, str], deque[tuple[float, int]]] = field(
        default_factory=dict, repr=False)
    _used: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)

    def admit(self, method_id: str, user: str, now: float) -> None:
        """Charge one call, or raise the API's quota error without charging it."""
        api = costs.api_of(method_id)
        limit = self.per_user.get(api)
        if limit is None:
            return
        key, units = (api, user), costs.units(method_id)
        log = self._log.setdefault(key, deque())
        while log and log[0][0] <= now - self.window_s:
            self._used[key] -= log.popleft()[1]
        used = self._used.get(key, 0)
        if used + units > limit:
            self.refused[api] = self.refused.get(api, 0) + 1
            raise self._refusal(api, self._wait(log, used + units - limit, now))
        log.append((now, units))
        self._used[key] = used + units
        self.charged[api] = self.charged.get(api, 0) + units
        self.admitted.append((now, api, user, units))

    def _wait(self, log: deque[tuple[float, int]], need: int, now: float) -> float:
        """Seconds until enough of the oldest charges leave the window."""
        freed = 0
        for at, units in log:
            freed += units
            if freed >= need:
                return at + self.window_s - now
        return self.window_s

    def _refusal(self, api: str, wait_s: float) -> QuotaError:
        headers = {"Retry-After": str(max(math.ceil(wait_s), 1))} if self.retry_after else {}
        if self.status == 429:
            message = "Resource has been exhausted (e.g. check quota)."
            return QuotaError(429, message, "RESOURCE_EXHAUSTED", headers=headers, errors=[
                {"message": message, "domain": "usageLimits", "reason": "rateLimitExceeded"}])
        if api in _USER_RATE_MESSAGES:
            message = _USER_RATE_MESSAGES[api]
            return QuotaError(403, message, "PERMISSION_DENIED", headers=headers, errors=[
                {"message": message, "domain": "usageLimits",
                 "reason": "userRateLimitExceeded"}])
        return _people_refusal(headers)

    def as_json(self) -> dict[str, Any]:
        return {"per_user": self.per_user, "window_s": self.window_s,
                "retry_after": self.retry_after, "status": self.status,
                "charged": self.charged, "refused": self.refused}


def _people_refusal(headers: dict[str, str]) -> QuotaError:
    metric, limit = "Read requests", "Read requests per minute per user"
    info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
            "domain": "googleapis.com",
            "metadata": {"service": _PEOPLE_SERVICE, "quota_metric": metric,
                         "quota_limit": limit}}
    message = (f"Quota exceeded for quota metric '{metric}' and limit '{limit}' of service "
               f"'{_PEOPLE_SERVICE}'.")
    return QuotaError(429, message, "RESOURCE_EXHAUSTED", details=[info], headers=headers)


def charge(state: EmulatorState, method_id: str, user: str) -> None:
    """Charge one authorised call to its user's budget, if a policy is set."""
    policy: QuotaPolicy | None = getattr(state, "quota", None)
    if policy is not None:
        policy.admit(method_id, user, state.now())


def policy_from(body: dict[str, Any]) -> QuotaPolicy:
    """A policy from the admin body ``{per_user: {api: units}, window_s?, retry_after?,
    status?}``; raises ValueError (→ 400) on anything else."""
    per_user = body.get("per_user")
    if not isinstance(per_user, dict) or not all(
            api in costs.APIS and isinstance(n, int) and n > 0 for api, n in per_user.items()):
        raise ValueError(f"per_user must map some of {list(costs.APIS)} to positive integers")
    window_s = float(body.get("window_s", 60.0))
    status = body.get("status")
    if window_s <= 0 or status not in (None, 429):
        raise ValueError("window_s must be > 0 and status null or 429")
    return QuotaPolicy(per_user, window_s, bool(body.get("retry_after", True)), status)


async def put_quota(request: web.Request) -> web.Response:
    """``PUT /_emulator/quota`` sets the policy (its counters start at zero)."""
    body = await request.json()
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    request.app[STATE_KEY].quota = policy_from(body)
    return web.json_response(request.app[STATE_KEY].quota.as_json())


async def get_quota(request: web.Request) -> web.Response:
    """``GET /_emulator/quota``: the policy and its counters (``{}`` when none)."""
    policy = request.app[STATE_KEY].quota
    return web.json_response(policy.as_json() if policy else {})


async def delete_quota(request: web.Request) -> web.Response:
    """``DELETE /_emulator/quota``: no quota from now on."""
    request.app[STATE_KEY].quota = None
    return web.json_response({})


def setup(app: web.Application) -> None:
    app.router.add_put(PREFIX, put_quota)
    app.router.add_get(PREFIX, get_quota)
    app.router.add_delete(PREFIX, delete_quota)
