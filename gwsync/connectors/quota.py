"""Google's quota, spent from budgets in Redis that every worker process shares.

Google counts quota per user and per project, per API, in its own units (docs/google.md §5).
Each worker charges a request to two sliding windows before sending it — the user's
(``<prefix>:{acct:<account_id>}:quota:<api>``, under the account's hash tag and named in
its key index, so erasing the account removes it) and the
project's (``<prefix>:quota:<api>:project``) — and waits while either is full. The
windows live in Redis and are checked and charged by one Lua script on Redis's own
clock, so processes on any number of hosts (and their clock skew) share one budget.

A sliding window is a log of charges; a charge is admitted when the units in the last
``window`` seconds plus its own fit the limit, and it is stamped when it is admitted,
just before the request is sent. So the requests *sent* in any ``window`` never cost
more than Google's rate allows in that time: the budget is spent as a smooth rate with a
burst of one window at most (2 s by default), and any minute holds at most a minute's
limit. Google counts a request a little later, somewhere between its sending and its
answer; that delay only shifts the stream, it does not make it faster, and Google's
per-user limits are a moving average that "allows short bursts" (Gmail's quota page),
which absorbs it. An earlier version re-stamped each charge with its answer's time,
counting it in the window for its whole latency as well: with Google's latency (a
median of 80 ms, a long tail) that left 10–15 % of the per-user rate unspent
(bench/realistic.py), for a margin the burst already gives. Keep ``window`` well under
the burst Google allows (half the 4 s the realistic benchmark assumes).
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gwsync.connectors.errors import TemporaryError
from gwsync.connectors.guard import ALWAYS, CallGuard
from gwsync.core import metrics, queue

#: Gmail's per-method units (Google's quota page; docs/google.md §5.1). Calendar, Drive and
#: People count requests, so every method costs 1 there (Drive's May-2026 model counts
#: "quota units" per method, with no published table yet — unconfirmed, kept at 1).
GMAIL_UNITS: dict[str, int] = {
    "gmail.users.messages.list": 5,
    "gmail.users.messages.get": 5,
    "gmail.users.messages.attachments.get": 5,
    "gmail.users.messages.modify": 5,
    "gmail.users.messages.batchModify": 50,
    "gmail.users.messages.batchDelete": 50,
    "gmail.users.messages.send": 100,
    "gmail.users.history.list": 2,
    "gmail.users.labels.list": 1,
    "gmail.users.labels.get": 1,
    "gmail.users.getProfile": 1,
    "gmail.users.drafts.send": 100,
    "gmail.users.drafts.get": 5,
    "gmail.users.drafts.list": 5,
    "gmail.users.threads.get": 10,  # secondary source
    "gmail.users.threads.list": 10,  # unconfirmed
    "gmail.users.watch": 100,  # unconfirmed
    "gmail.users.stop": 100,  # unconfirmed
}
#: A Gmail method missing from the table above: most of the documented reads cost 5.
GMAIL_DEFAULT_UNITS = 5
APIS = ("gmail", "calendar", "drive", "people")

_ACQUIRE = """
-- KEYS: (log, sum) per budget; ARGV: window_us, units, member, limit per budget.
-- Returns 0 when charged, else microseconds until the charge would fit.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window, units, member = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local ttl = math.ceil(window / 1000) + 1000
local function cost(m) return tonumber(string.match(m, ':(%d+)$')) end
local wait = 0
for i = 1, #KEYS / 2 do
  local log, sum, limit = KEYS[2 * i - 1], KEYS[2 * i], tonumber(ARGV[3 + i])
  local old = redis.call('ZRANGEBYSCORE', log, '-inf', now - window)
  if #old > 0 then
    local freed = 0
    for _, m in ipairs(old) do freed = freed + cost(m) end
    redis.call('ZREMRANGEBYSCORE', log, '-inf', now - window)
    redis.call('DECRBY', sum, freed)
  end
  if redis.call('ZCARD', log) == 0 then redis.call('DEL', sum) end
  local used = tonumber(redis.call('GET', sum) or '0')
  local need = used + units - limit
  if need > 0 then
    local acc, entries = 0, redis.call('ZRANGE', log, 0, -1, 'WITHSCORES')
    for j = 1, #entries, 2 do
      acc = acc + cost(entries[j])
      if acc >= need then
        wait = math.max(wait, tonumber(entries[j + 1]) + window - now)
        break
      end
    end
  end
end
if wait > 0 then return math.max(math.ceil(wait), 1) end
for i = 1, #KEYS / 2 do
  redis.call('ZADD', KEYS[2 * i - 1], now, member)
  redis.call('INCRBY', KEYS[2 * i], units)
  redis.call('PEXPIRE', KEYS[2 * i - 1], ttl)
  redis.call('PEXPIRE', KEYS[2 * i], ttl)
end
return 0
"""

def api_of(method_id: str) -> str:
    return method_id.split(".", 1)[0]


def units(method_id: str) -> int:
    """What one call of a discovery method costs in its API's quota."""
    if api_of(method_id) == "gmail":
        return GMAIL_UNITS.get(method_id, GMAIL_DEFAULT_UNITS)
    return 1


class QuotaWaitError(TemporaryError):
    """Our own budget is spent for longer than a job should wait: defer, don't call."""


class QuotaConfigError(ValueError):
    """A single request costs more than a whole window's budget: it could never be sent."""


@dataclass(frozen=True)
class Limit:
    """One API's budgets, in units per window: per user, and per project (all users)."""

    user: int
    project: int


class Limiter:
    """Admits requests against the shared per-user and per-project windows in Redis."""

    def __init__(self, redis: Redis, prefix: str, limits: Mapping[str, Limit],
                 window_s: float, max_wait_s: float) -> None:
        self._redis = redis
        self._prefix = prefix
        self._limits = dict(limits)
        self._window_us = int(window_s * 1_000_000)
        self._max_wait_s = max_wait_s
        self._acquire: Callable[..., Awaitable[Any]] = redis.register_script(_ACQUIRE)

    def keys(self, api: str, account_id: str) -> list[str]:
        """The user's window then the project's, each a (log, running sum) pair."""
        user = queue.account_key(self._prefix, account_id, "quota", api)
        project = f"{self._prefix}:quota:{api}:project"
        return [user, f"{user}:sum", project, f"{project}:sum"]

    async def acquire(self, api: str, account_id: str, cost: int,
                      before: CallGuard = ALWAYS) -> float:
        """Charge `cost` units, waiting while a window is full → the seconds waited.

        `before` is awaited before each try to charge, the first and each after a wait: a
        guard that raises (an erasure began, perhaps during the wait) stops the call before
        it writes the account's quota keys again.

        A wait longer than `max_wait_s` (in total) is not waited for here: it raises
        TemporaryError with `retry_after`, so the job is deferred and its worker freed.
        """
        limit = self._limits[api]
        if cost > min(limit.user, limit.project):
            raise QuotaConfigError(f"{cost} {api} units exceed a whole window's budget")
        member, waited = f"{secrets.token_hex(8)}:{cost}", 0.0
        keys = self.keys(api, account_id)
        while True:
            await before()
            wait_us = await self._charge(account_id, keys, [cost, member, limit.user,
                                                            limit.project])
            if wait_us == 0:
                metrics.QUOTA_UNITS.labels(api=api).inc(cost)
                return waited
            wait_s = wait_us / 1_000_000
            if waited + wait_s > self._max_wait_s:
                raise QuotaWaitError(f"{api} quota exhausted for {math.ceil(wait_s)} s",
                                     retry_after=wait_s)
            await asyncio.sleep(wait_s)
            waited += wait_s
            metrics.QUOTA_WAIT_SECONDS.labels(api=api).inc(wait_s)

    async def _charge(self, account_id: str, keys: list[str], args: list[Any]) -> int:
        """Run the acquire script, naming the user's keys in the account's key index in the
        same round trip (so an erasure finds them without a SCAN)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.sadd(queue.keys_index(self._prefix, account_id), *keys[:2])
            await self._acquire(keys=keys, args=[self._window_us, *args], client=pipe)
            _, wait_us = await pipe.execute()
        return int(wait_us)


@dataclass(frozen=True)
class Charge:
    """What one request costs: `calls` calls of one method (a batch is n calls)."""

    method_id: str
    calls: int = 1

    @classmethod
    def of(cls, call: Any) -> Charge:
        """The charge of a google-api-python-client `request.execute` (its `methodId`)."""
        method = getattr(getattr(call, "__self__", call), "methodId", None)
        if not isinstance(method, str):
            raise TypeError("name the Charge of a call that is not one API request")
        return cls(method)

    @property
    def units(self) -> int:
        return units(self.method_id) * self.calls


@dataclass(frozen=True)
class Admission:
    """A request let through: how long the full window held it back (a caller that sizes
    its requests by Google's speed must not mistake the rate's wait for Google's)."""

    waited_s: float


@dataclass(frozen=True)
class Budget:
    """One account's share of the budgets, as a job's connector spends it.

    Without a limiter (quota off, or a connector built outside a sync job) it admits all.
    `guard` is checked before each request is charged and so sent
    (gwsync/connectors/guard.py), and again before each charge retried after a quota wait:
    an account being erased has nothing left to spend, and its quota keys, which the
    erasure deletes, are never written again.
    """

    limiter: Limiter | None
    account_id: str = ""
    guard: CallGuard = ALWAYS

    @asynccontextmanager
    async def spend(self, charge: Charge) -> AsyncIterator[Admission]:
        """Admit the request before the body sends it (the charge counts from then); the
        guard is the last thing asked before the charge, so before the request leaves."""
        waited = 0.0
        if self.limiter is None:
            await self.guard()
        else:
            try:
                waited = await self.limiter.acquire(api_of(charge.method_id), self.account_id,
                                                    charge.units, before=self.guard)
            except RedisError:
                raise TemporaryError("quota store unreachable") from None
        yield Admission(waited)


UNMETERED = Budget(None)


def limits_from(settings: Any) -> dict[str, Limit]:
    """Per-window budgets from the per-minute settings `quota_<api>_{user,project}_per_min`."""
    scale = settings.quota_window_s / 60.0
    return {api: Limit(
        user=max(int(getattr(settings, f"quota_{api}_user_per_min") * scale), 1),
        project=max(int(getattr(settings, f"quota_{api}_project_per_min") * scale), 1))
        for api in APIS}


def limiter_for(redis: Redis, settings: Any) -> Limiter | None:
    """The deployment's limiter, or None when quota limiting is turned off."""
    if not settings.quota_enabled:
        return None
    return Limiter(redis, settings.redis_prefix, limits_from(settings),
                   settings.quota_window_s, settings.quota_max_wait_s)
