"""Gmail's batch fetch keeps its calls in flight in lanes, so a slow part stalls only its
lane, and a full sync keeps them busy between pages."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httplib2
import redis.asyncio as aioredis

from gwsync.connectors import client
from gwsync.connectors.endpoints import Endpoints
from gwsync.connectors.gmail import BatchFetcher, MailActivityConnector
from gwsync.connectors.quota import UNMETERED, Budget, Limit, Limiter
from gwsync.emulator.mailbox import add_gmail_user
from gwsync.emulator.realism import Realism
from tests.conftest import REDIS_URL, Emulator

SLOW_S = 1.0


async def test_two_slow_parts_in_different_chunks_are_waited_for_at_once(
    emulator: Emulator,
) -> None:
    """With ten calls in flight, messages 0 and 10 each answered a second late cost about
    one second in all, not two: the other lanes fetch on while one waits (a wave of one
    ten-part POST after another would wait for each slow part in turn)."""
    grant = add_gmail_user(emulator.state, "lanes@example.com", 20)
    token = emulator.state.mint_access_token(grant.refresh_token)
    service = client.service("gmail", token, Endpoints.at(emulator.url), 30)
    listed = await asyncio.to_thread(
        service.users().messages().list(userId="me", maxResults=20).execute)
    ids = [m["id"] for m in listed["messages"]]
    for slow in (ids[0], ids[10]):
        emulator.state.add_fault(f"/gmail/v1/users/me/messages/{slow}", 0,
                                 delay_ms=int(SLOW_S * 1000))
    fetcher = BatchFetcher(service, max_in_flight=10)
    try:
        started = time.monotonic()
        found = await fetcher.fetch(ids)
        elapsed = time.monotonic() - started
    finally:
        fetcher.close()
        service.close()
    assert set(found) == set(ids) and all(found.values())
    assert SLOW_S <= elapsed < 1.8 * SLOW_S, elapsed


def _service(emulator: Emulator, email: str, n: int) -> Any:
    grant = add_gmail_user(emulator.state, email, n)
    token = emulator.state.mint_access_token(grant.refresh_token)
    return client.service("gmail", token, Endpoints.at(emulator.url), 30)


async def test_every_call_allowed_in_flight_is_in_flight_on_threads_of_its_own(
    emulator: Emulator,
) -> None:
    """With 16 calls allowed and Google slow, 16 parts are in flight at once, even when
    the loop's default thread pool, which every job's calls share, has two threads."""
    service = _service(emulator, "threads@example.com", 64)
    listed = await asyncio.to_thread(
        service.users().messages().list(userId="me", maxResults=64).execute)
    emulator.state.realism = Realism(latency_median_ms=200, latency_p99_ms=250)
    small = ThreadPoolExecutor(2)
    asyncio.get_running_loop().set_default_executor(small)
    fetcher = BatchFetcher(service, max_in_flight=16)
    try:
        found = await fetcher.fetch([m["id"] for m in listed["messages"]])
    finally:
        fetcher.close()
        service.close()
        small.shutdown(wait=False)
    assert len(found) == 64
    assert emulator.state.realism.peak == 16


async def test_the_next_page_is_fetched_while_this_one_is_stored(emulator: Emulator) -> None:
    """A full sync hands over a page and, while the caller stores it, already lists and
    fetches the next: the quota is not left idle for a list call and a write per page."""
    service = _service(emulator, "ahead@example.com", 6)
    connector = MailActivityConnector(service, 2, BatchFetcher(service, max_in_flight=4))
    pages = connector.full(None)
    try:
        first = await anext(pages)
        emulator.state.calls(clear=True)
        await asyncio.sleep(1.0)  # the caller storing the first page
        during = [c["method"] for c in emulator.state.calls()]
        rest = [fetched async for fetched in pages]
    finally:
        await pages.aclose()
        connector.close()
    assert len(first.page.upserts) == 2 and sum(len(f.page.upserts) for f in rest) == 4
    assert during.count("gmail.users.messages.list") == 1
    assert during.count("gmail.users.messages.get") == 2


class _BatchPosts:
    """Counts the batch POSTs httplib2 sends (each part is one call inside one of them)."""

    def __init__(self, monkeypatch: Any) -> None:
        self.count = 0
        send = httplib2.Http.request

        def counted(http: httplib2.Http, uri: str, method: str = "GET", *args: Any,
                    **kwargs: Any) -> Any:
            self.count += method == "POST" and "/batch" in uri
            return send(http, uri, method, *args, **kwargs)

        monkeypatch.setattr(httplib2.Http, "request", counted)


async def _two_pages(emulator: Emulator, monkeypatch: Any, email: str, realism: Realism | None,
                     budget: Budget = UNMETERED) -> tuple[BatchFetcher, int, int]:
    """Fetch two pages of 32 → (the fetcher, POSTs of the first page, of the second)."""
    service = _service(emulator, email, 64)
    listed = await asyncio.to_thread(
        service.users().messages().list(userId="me", maxResults=64).execute)
    ids = [m["id"] for m in listed["messages"]]
    emulator.state.realism = realism
    posts = _BatchPosts(monkeypatch)
    # Thresholds far from both latencies, so a loaded test machine cannot blur them.
    fetcher = BatchFetcher(service, budget, max_in_flight=16, fast_part_s=0.1)
    try:
        assert all((await fetcher.fetch(ids[:32])).values())
        first, posts.count = posts.count, 0
        assert all((await fetcher.fetch(ids[32:])).values())
    finally:
        fetcher.close()
        service.close()
    return fetcher, first, posts.count


async def test_a_google_that_answers_within_milliseconds_gets_fewer_larger_posts(
    emulator: Emulator, monkeypatch: Any,
) -> None:
    """A page answered as fast as the loopback answers sends the next page in POSTs of all
    16 calls allowed in flight — 2 POSTs for 32 messages, not 16 — and never more than 16
    parts in flight: our own work per POST, not Google's tail, is then the cost."""
    fetcher, first, second = await _two_pages(
        emulator, monkeypatch, "fast@example.com",
        Realism(latency_median_ms=1, latency_p99_ms=2))  # 0.1 s a part is "fast" here
    assert (first, second) == (16, 2)
    assert fetcher.parts_per_post == 16
    assert emulator.state.realism is not None and emulator.state.realism.peak <= 16


async def test_a_slow_google_keeps_two_parts_per_post(
    emulator: Emulator, monkeypatch: Any,
) -> None:
    """When Google's answers take longer than the fast mark a POST waits for its slowest
    part, so the next page still goes in POSTs of two: 16 POSTs for 32 messages."""
    fetcher, first, second = await _two_pages(
        emulator, monkeypatch, "slow@example.com",
        Realism(latency_median_ms=300, latency_p99_ms=350))
    assert (first, second) == (16, 16)
    assert fetcher.parts_per_post == 2


async def test_a_mailbox_held_to_its_quota_keeps_two_parts_per_post(
    emulator: Emulator, monkeypatch: Any, redis_prefix: str,
) -> None:
    """A page that waited longer for the per-user quota than for Google keeps POSTs of two,
    however fast Google answered: small charges spend the rate smoothly."""
    redis = aioredis.from_url(REDIS_URL)
    # 80 units a 0.5 s window: 32 gets a second, so a page of 32 waits most of a second.
    limiter = Limiter(redis, redis_prefix, {"gmail": Limit(80, 100_000)}, 0.5, 10.0)
    try:
        fetcher, first, second = await _two_pages(
            emulator, monkeypatch, "held@example.com", None, Budget(limiter, "acct-held"))
    finally:
        await redis.aclose()
    assert (first, second) == (16, 16)
    assert fetcher.parts_per_post == 2



def _connector(emulator: Emulator, email: str, realism: Realism,
               **fetcher: Any) -> tuple[BatchFetcher, MailActivityConnector]:
    """A full sync's connector over 64 messages in pages of 32, 16 calls allowed in flight,
    0.1 s a part the fast mark (far from both latencies used)."""
    service = _service(emulator, email, 64)
    emulator.state.realism = realism
    batch = BatchFetcher(service, max_in_flight=16, fast_part_s=0.1, **fetcher)
    return batch, MailActivityConnector(service, 32, batch)


async def _first_page_posts(emulator: Emulator, monkeypatch: Any, email: str,
                            realism: Realism) -> int:
    """A full sync's first page of 32 → how many batch POSTs fetched it."""
    _, connector = _connector(emulator, email, realism)
    posts = _BatchPosts(monkeypatch)
    pages = connector.full(None)
    try:
        first = await anext(pages)
        count = posts.count  # the second page's read-ahead starts with a list call
    finally:
        await pages.aclose()
        connector.close()
    assert len(first.page.upserts) == 32
    return count


async def test_a_fast_google_gets_large_posts_from_the_first_page_on(
    emulator: Emulator, monkeypatch: Any,
) -> None:
    """The page's list call answered within milliseconds sizes its POSTs before any POST
    was timed: 2 POSTs of 16 for the first 32 messages, not 16 of two."""
    assert await _first_page_posts(emulator, monkeypatch, "first-fast@example.com",
                                   Realism(latency_median_ms=1, latency_p99_ms=2)) == 2


async def test_a_slow_google_gets_small_posts_from_the_first_page_on(
    emulator: Emulator, monkeypatch: Any,
) -> None:
    """A list call slower than the fast mark leaves the first page in POSTs of two."""
    assert await _first_page_posts(emulator, monkeypatch, "first-slow@example.com",
                                   Realism(latency_median_ms=300, latency_p99_ms=350)) == 16


async def test_a_fast_google_refusing_concurrent_calls_keeps_small_posts_after_a_refusal(
    emulator: Emulator,
) -> None:
    """Google answering in milliseconds but refusing a user's fifth concurrent call: a page
    with refused parts leaves the next in POSTs of two, however fast the answers came (a
    refusal is fast). That a page's own later rounds go small too is shown at a page of 500
    by tests/e2e/test_flaky_google.py, which fails without it."""
    fetcher, connector = _connector(
        emulator, "refusing@example.com",
        Realism(latency_median_ms=1, latency_p99_ms=2, max_concurrent_per_user=4),
        retry_base_s=0.01)
    try:
        pages = [fetched async for fetched in connector.full(None)]
    finally:
        connector.close()
    assert emulator.state.realism is not None and emulator.state.realism.refused_concurrency > 0
    assert sum(len(f.page.upserts) for f in pages) == 64
    assert fetcher.parts_per_post == 2
