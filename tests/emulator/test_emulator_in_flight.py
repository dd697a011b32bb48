"""The emulator counts each user's concurrent API requests, so tests can prove exclusion."""

from __future__ import annotations

import asyncio

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
