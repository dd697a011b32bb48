"""Fixtures for the emulator tests: a live emulator on a free port and an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import httplib2
import pytest

from gwsync.emulator.app import base_url, serve
from gwsync.emulator.state import EmulatorState
from tests.emulator.support import Emulator


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """An emulator served on 127.0.0.1 with a fresh state."""
    state = EmulatorState()
    runner = await serve("127.0.0.1", 0, state)
    try:
        yield Emulator(state, base_url(runner))
    finally:
        await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session closed after the test."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def sync_http() -> Iterator[httplib2.Http]:
    """An httplib2 client for the synchronous Google libraries, closed after the test."""
    http = httplib2.Http()
    yield http
    http.close()
