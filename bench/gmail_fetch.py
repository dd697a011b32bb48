"""Which way to fetch Gmail messages is faster: the batch endpoint or threads?

Runs the emulator in this process, seeds one mailbox, lists it once, then fetches
every message with ``messages.get(format=metadata)`` both ways and prints messages per
second. Usage: ``.venv/bin/python bench/gmail_fetch.py [--messages 2000] [--threads 8]``.

The thread variant gives every thread its own service and ``httplib2.Http`` (httplib2
is not thread-safe). The connector keeps the winner (gwsync/connectors/gmail.py).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from typing import Any

from googleapiclient.errors import HttpError

from gwsync.connectors import client
from gwsync.connectors.endpoints import Endpoints
from gwsync.connectors.gmail import BatchFetcher, FetchedMessages, metadata_request
from gwsync.emulator.app import base_url, serve
from gwsync.emulator.mailbox import add_gmail_user
from gwsync.emulator.state import EmulatorState


class ThreadedFetcher:
    """messages.get one call at a time on `n` threads, each with its own connection."""

    def __init__(self, services: Sequence[Any]) -> None:
        self._idle: asyncio.Queue[Any] = asyncio.Queue()
        for service in services:
            self._idle.put_nowait(service)
        self._services = list(services)

    async def _one(self, message_id: str) -> dict[str, Any] | None:
        service = await self._idle.get()
        try:
            return await asyncio.to_thread(
                metadata_request(service.users().messages(), message_id).execute)
        except HttpError as exc:
            if exc.resp.status == 404:
                return None
            raise
        finally:
            self._idle.put_nowait(service)

    async def fetch(self, ids: Sequence[str]) -> FetchedMessages:
        found = await asyncio.gather(*(self._one(i) for i in ids))
        return dict(zip(ids, found, strict=True))

    def close(self) -> None:
        for service in self._services:
            service.close()


def all_message_ids(service: Any) -> list[str]:
    ids, token = [], None
    while True:
        body = service.users().messages().list(userId="me", maxResults=500,
                                               pageToken=token).execute()
        ids += [m["id"] for m in body.get("messages", [])]
        token = body.get("nextPageToken")
        if not token:
            return ids


async def _timed(name: str, fetcher: Any, ids: list[str], page: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(ids), page):
        found = await fetcher.fetch(ids[start:start + page])
        assert all(found.values()) and len(found) == len(ids[start:start + page])
    rate = len(ids) / (time.perf_counter() - started)
    print(f"{name:<28} {len(ids):>6} messages  {rate:>8.0f} msgs/s")
    return rate


async def main(n_messages: int, threads: int, page: int) -> None:
    state = EmulatorState()
    runner = await serve("127.0.0.1", 0, state)
    endpoints = Endpoints.at(base_url(runner))
    grant = add_gmail_user(state, "bench@example.com", n_messages)
    token = state.mint_access_token(grant.refresh_token)
    services = [client.service("gmail", token, endpoints, 30) for _ in range(threads + 1)]
    try:
        ids = await asyncio.to_thread(all_message_ids, services[0])
        batch = BatchFetcher(services[0])
        pool = ThreadedFetcher(services[1:])
        for _ in range(2):  # twice: the first round warms connections and caches
            await _timed("batch (50 per POST)", batch, ids, page)
            await _timed(f"threads ({threads} connections)", pool, ids, page)
    finally:
        for service in services:
            service.close()
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--page", type=int, default=500, help="ids per list page")
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.threads, args.page))
