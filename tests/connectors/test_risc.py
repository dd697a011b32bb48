"""Google's keys for security events: fetched once for many requests, refreshed on an
unknown key id at most once per few minutes, and an outage told apart from a forgery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from gwsync.connectors.endpoints import Endpoints
from gwsync.connectors.risc import (
    MIN_REFRESH_S,
    InvalidSecurityEvent,
    KeysUnavailableError,
    RiscVerifier,
)
from gwsync.emulator import risc as emulator_risc
from gwsync.emulator import signing
from tests.conftest import Emulator


@dataclass
class Fetches:
    """GETs of Google's keys, counted as they leave the client."""

    paths: list[str] = field(default_factory=list)

    @property
    def keys(self) -> int:
        return self.paths.count(signing.JWKS_PATH)


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fetches() -> AsyncIterator[tuple[Fetches, aiohttp.ClientSession]]:
    seen = Fetches()

    async def on_start(session: Any, ctx: Any, params: aiohttp.TraceRequestStartParams) -> None:
        seen.paths.append(params.url.path)
    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as http:
        yield seen, http


def _verifier(emulator: Emulator, http: aiohttp.ClientSession, clock: Clock) -> RiscVerifier:
    return RiscVerifier(Endpoints.at(emulator.url), (emulator.state.client_id,), http,
                        clock=clock)


def _event(emulator: Emulator, keys: signing.KeySet | None = None) -> str:
    claims = {"iss": f"{emulator.url}/", "aud": emulator.state.client_id,
              "iat": int(time.time()), "jti": str(time.monotonic_ns()),
              "events": emulator_risc.event_for("risc/event-type/verification", {})}
    return keys.sign(claims) if keys else signing.sign(claims)


async def test_many_requests_share_one_fetch_of_the_keys(
    emulator: Emulator, fetches: tuple[Fetches, aiohttp.ClientSession]
) -> None:
    """Twenty events arriving at once, before any key is cached, fetch the keys once."""
    seen, http = fetches
    verifier = _verifier(emulator, http, Clock())
    results = await asyncio.gather(*(verifier.verify(_event(emulator)) for _ in range(20)))
    assert len(results) == 20 and seen.keys == 1


async def test_made_up_key_ids_refresh_the_keys_at_most_once_per_interval(
    emulator: Emulator, fetches: tuple[Fetches, aiohttp.ClientSession]
) -> None:
    """A flood of tokens under unknown kids is refused without fetching the keys again and
    again: one refresh per MIN_REFRESH_S, shared by concurrent requests."""
    seen, http = fetches
    clock = Clock()
    verifier = _verifier(emulator, http, clock)
    await verifier.verify(_event(emulator))
    clock.now += MIN_REFRESH_S + 1
    forged = [_event(emulator, signing.KeySet()) for _ in range(3)]
    outcomes = await asyncio.gather(*(verifier.verify(t) for t in forged * 10),
                                    return_exceptions=True)
    assert all(isinstance(o, InvalidSecurityEvent) and o.err == "invalid_key"
               for o in outcomes)
    assert seen.keys == 2  # the first fetch, and one refresh for the whole flood
    clock.now += MIN_REFRESH_S / 2
    with pytest.raises(InvalidSecurityEvent):
        await verifier.verify(forged[0])
    assert seen.keys == 2
    clock.now += MIN_REFRESH_S
    with pytest.raises(InvalidSecurityEvent):
        await verifier.verify(forged[0])
    assert seen.keys == 3


async def test_keys_that_cannot_be_fetched_are_an_outage(
    emulator: Emulator, fetches: tuple[Fetches, aiohttp.ClientSession]
) -> None:
    """With Google's keys answering 503, a genuine event is KeysUnavailableError (never
    'invalid'); once they answer again, it verifies."""
    seen, http = fetches
    clock = Clock()
    verifier = _verifier(emulator, http, clock)
    emulator.state.fault_plan.add(signing.JWKS_PATH, 503)
    token = _event(emulator)
    with pytest.raises(KeysUnavailableError):
        await verifier.verify(token)
    clock.now += 60
    assert (await verifier.verify(token)).jti

