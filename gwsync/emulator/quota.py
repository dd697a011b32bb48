"""Per-user quota, enforced as Google reports it: optional, per API, in Google's units.

Off unless a test or benchmark sets ``state.quota = QuotaPolicy({"gmail": 15000})`` (or
``PUT /_emulator/quota``). Every authorised call is charged in :func:`charge`, from the
``google_api`` decorator, so the inner calls of a batch are charged one by one, as
Google counts them (docs/google.md §5.6). Units per method come from
Google's quota pages (``gwsync.emulator.quota_costs``), never from our connectors.

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

from gwsync.emulator import quota_costs as costs
from gwsync.emulator.errors import GoogleApiError, error_item
from gwsync.emulator.policy_routes import add_policy_routes
from gwsync.emulator.state import EmulatorState

PREFIX = "/_emulator/quota"
_USER_RATE_MESSAGES = {"gmail": "User-rate limit exceeded.",
                       "calendar": "User Rate Limit Exceeded",
                       "drive": "User rate limit exceeded."}
_PEOPLE_SERVICE = "people.googleapis.com"


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
    #: None: a sliding window of `window_s`. A number: a rate of `per_user / window_s`
    #: units a second with bursts of at most `burst_s` seconds' worth (a token bucket) —
    #: Gmail's quota page once put it as 250 units per user per second, "moving average
    #: (allows short bursts)"; Google does not publish the burst's size.
    burst_s: float | None = None
    #: Every admitted call as (emulator time, API, user, units): lets a test check how
    #: much all users together were charged in any window (a project's share), which the
    #: per-user windows below do not enforce.
    admitted: list[tuple[float, str, str, int]] = field(default_factory=list)
    _log: dict[tuple[str, str], deque[tuple[float, int]]] = field(
        default_factory=dict, repr=False)
    _used: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)
    #: The token buckets: (units left, emulator time they were counted) per API and user.
    _tokens: dict[tuple[str, str], tuple[float, float]] = field(
        default_factory=dict, repr=False)

    def admit(self, method_id: str, user: str, now: float) -> None:
        """Charge one call, or raise the API's quota error without charging it."""
        api = costs.api_of(method_id)
        limit = self.per_user.get(api)
        if limit is None:
            return
        key, units = (api, user), costs.units(method_id)
        if self.burst_s is not None:
            self._take(key, units, limit / self.window_s, now)
        else:
            self._slide(key, units, limit, now)
        self.charged[api] = self.charged.get(api, 0) + units
        self.admitted.append((now, api, user, units))

    def _take(self, key: tuple[str, str], units: int, rate: float, now: float) -> None:
        """Spend `units` from the bucket (refilled at `rate`, holding `burst_s` of it)."""
        capacity = max(rate * (self.burst_s or 0.0), float(units))
        left, at = self._tokens.get(key, (capacity, now))
        left = min(capacity, left + (now - at) * rate)
        if left < units:
            self._tokens[key] = (left, now)
            self.refused[key[0]] = self.refused.get(key[0], 0) + 1
            raise self._refusal(key[0], (units - left) / rate)
        self._tokens[key] = (left - units, now)

    def _slide(self, key: tuple[str, str], units: int, limit: int, now: float) -> None:
        """Admit `units` if the window's log has room for them."""
        api = key[0]
        log = self._log.setdefault(key, deque())
        while log and log[0][0] <= now - self.window_s:
            self._used[key] -= log.popleft()[1]
        used = self._used.get(key, 0)
        if used + units > limit:
            self.refused[api] = self.refused.get(api, 0) + 1
            raise self._refusal(api, self._wait(log, used + units - limit, now))
        log.append((now, units))
        self._used[key] = used + units

    def _wait(self, log: deque[tuple[float, int]], need: int, now: float) -> float:
        """Seconds until enough of the oldest charges leave the window."""
        freed = 0
        for at, units in log:
            freed += units
            if freed >= need:
                return at + self.window_s - now
        return self.window_s

    def _refusal(self, api: str, wait_s: float) -> GoogleApiError:
        """The API's refusal; the older APIs add the legacy ``usageLimits`` errors list."""
        headers = {"Retry-After": str(max(math.ceil(wait_s), 1))} if self.retry_after else {}
        if self.status == 429:
            message = "Resource has been exhausted (e.g. check quota)."
            return GoogleApiError(429, message, "RESOURCE_EXHAUSTED", headers=headers, errors=[
                error_item("rateLimitExceeded", message, "usageLimits")])
        if api in _USER_RATE_MESSAGES:
            message = _USER_RATE_MESSAGES[api]
            return GoogleApiError(403, message, "PERMISSION_DENIED", headers=headers, errors=[
                error_item("userRateLimitExceeded", message, "usageLimits")])
        return _people_refusal(headers)

    def as_json(self) -> dict[str, Any]:
        return {"per_user": self.per_user, "window_s": self.window_s,
                "burst_s": self.burst_s, "retry_after": self.retry_after, "status": self.status,
                "charged": self.charged, "refused": self.refused}


def _people_refusal(headers: dict[str, str]) -> GoogleApiError:
    metric, limit = "Read requests", "Read requests per minute per user"
    info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED",
            "domain": "googleapis.com",
            "metadata": {"service": _PEOPLE_SERVICE, "quota_metric": metric,
                         "quota_limit": limit}}
    message = (f"Quota exceeded for quota metric '{metric}' and limit '{limit}' of service "
               f"'{_PEOPLE_SERVICE}'.")
    return GoogleApiError(429, message, "RESOURCE_EXHAUSTED", details=[info], headers=headers)


def charge(state: EmulatorState, method_id: str, user: str) -> None:
    """Charge one authorised call to its user's budget, if a policy is set."""
    policy: QuotaPolicy | None = getattr(state, "quota", None)
    if policy is not None:
        policy.admit(method_id, user, state.now())


def policy_from(body: dict[str, Any]) -> QuotaPolicy:
    """A policy from the admin body ``{per_user: {api: units}, window_s?, burst_s?,
    retry_after?, status?}``; raises ValueError (→ 400) on anything else."""
    per_user = body.get("per_user")
    if not isinstance(per_user, dict) or not all(
            api in costs.APIS and isinstance(n, int) and n > 0 for api, n in per_user.items()):
        raise ValueError(f"per_user must map some of {list(costs.APIS)} to positive integers")
    window_s = float(body.get("window_s", 60.0))
    status = body.get("status")
    burst = body.get("burst_s")
    if window_s <= 0 or status not in (None, 429) or (
            burst is not None and (not isinstance(burst, int | float) or burst <= 0)):
        raise ValueError("window_s must be > 0, burst_s null or > 0 and status null or 429")
    return QuotaPolicy(per_user, window_s, bool(body.get("retry_after", True)), status,
                       burst_s=None if burst is None else float(burst))


def setup(app: web.Application) -> None:
    add_policy_routes(app, PREFIX, "quota", _policy_body)


def _policy_body(body: Any) -> QuotaPolicy:
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return policy_from(body)
