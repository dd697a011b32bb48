"""The emulator counts each user's concurrent API requests, so tests can prove exclusion."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from tests.emulator.support import Emulator

PATH = "/v1/people/me/connections"


async def _list(http: aiohttp.ClientSession, emulator: Emulator, token: str) -> int:
    async with http.get(f"{emulator.url}{PATH}", params={"personFields": "names"},
                        headers={"Authorization": f"Bearer {token}"}) as resp:
        await resp.read()
        return resp.status


async def test_overlapping_requests_of_one_user_raise_the_peak_and_sequential_ones_do_not(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Two requests answered at once (latency included) count 2; one after another count 1."""
    user, token = emulator.user_with(2)
    emulator.state.add_fault("/v1/people", 0, count=4, delay_ms=150)
    assert [await _list(http, emulator, token) for _ in range(2)] == [200, 200]
    assert emulator.state.peak_concurrency(user, "/v1/people") == 1
    assert await asyncio.gather(*(_list(http, emulator, token) for _ in range(2))) == [200, 200]
    assert emulator.state.peak_concurrency(user, "/v1/people") == 2
    assert emulator.state.peak_concurrency("someone-else", "/v1/people") == 0
    assert sum(emulator.state.in_flight.values()) == 0


async def test_every_request_with_a_users_token_is_logged_with_its_time_even_once_revoked(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """A request made with a revoked token is refused (401) but still logged as an arrival
    of that user, with its wall-clock time: a call made with the user's token all the same."""
    user, token = emulator.user_with(1)
    before = time.time()
    assert await _list(http, emulator, token) == 200
    emulator.state.revoke_user(user)
    assert await _list(http, emulator, token) == 401
    arrivals = emulator.state.arrivals(user)
    assert [p for p, _ in arrivals] == [PATH, PATH]
    assert all(before <= at <= time.time() for _, at in arrivals)
    assert emulator.state.arrivals("someone-else") == []
