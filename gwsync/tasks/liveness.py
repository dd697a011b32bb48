"""An account's jobs stop calling Google the moment its erasure begins.

A sync learns of an erasure through the database only when it next writes (the fence in
`gwsync.storage.accounts.fence`); between two writes it may call Google many times. So
the erasure first sets a Redis fence key (`gwsync.core.queue.Queue.fence_erased`), and
every Google call of a job is preceded by one EXISTS on it (`Live`, handed to the
connectors as their `CallGuard`). The erasure also aborts the account's running jobs,
which stops a call already waiting on quota or a retry delay (docs/architecture.md §6).
"""

from __future__ import annotations

from redis.exceptions import RedisError

from gwsync.connectors.errors import TemporaryError
from gwsync.core import logs, queue
from gwsync.storage.accounts import FencedError

log = logs.get("gwsync.liveness")


class Live:
    """The guard of one account's Google calls: raises FencedError once it is erased."""

    def __init__(self, jobs: queue.Queue, account_id: str) -> None:
        self._queue = jobs
        self._account_id = account_id

    async def __call__(self) -> None:
        try:
            erased = await self._queue.is_erased(self._account_id)
        except RedisError:
            # Unknown is not "live": defer the call rather than risk it (TemporaryError).
            raise TemporaryError("erasure fence unreachable") from None
        if erased:
            log.info("google_call_refused", account_id=self._account_id, reason="erasing")
            raise FencedError("the account is being erased")
