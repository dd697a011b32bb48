"""The realistic emulator: a batch's parts are individual calls that meet the user's
concurrency limit, latency and random failures, each part on its own."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from googleapiclient.errors import HttpError

from gwsync.connectors import client
from gwsync.connectors.endpoints import Endpoints
from gwsync.emulator.mailbox import add_gmail_user, mailbox
from gwsync.emulator.realism import CONCURRENCY_MESSAGE, Realism
from tests.emulator.support import Emulator

EMAIL = "rhea@example.com"


@pytest.fixture
def gmail(emulator: Emulator) -> Iterator[Any]:
    """A metadata-scoped Gmail service over a mailbox of 40 messages."""
    grant = add_gmail_user(emulator.state, EMAIL, 40)
    token = emulator.state.mint_access_token(grant.refresh_token)
    service = client.service("gmail", token, Endpoints.at(emulator.url), 10)
    yield service
    service.close()


def _batch(service: Any, ids: list[str]) -> dict[str, Any]:
    """One real BatchHttpRequest of messages.get; message id → answer or HttpError."""
    answers: dict[str, Any] = {}

    def answer(request_id: str, response: Any, exc: HttpError | None) -> None:
        answers[request_id] = exc if exc is not None else response

    batch = service.new_batch_http_request(callback=answer)
    for mid in ids:
        batch.add(service.users().messages().get(userId="me", id=mid, format="minimal"),
                  request_id=mid)
    batch.execute()
    return answers


def _ids(emulator: Emulator) -> list[str]:
    return list(mailbox(emulator.state, EMAIL).messages)


async def test_parts_beyond_the_users_concurrency_limit_are_429_alone(
    gmail: Any, emulator: Emulator
) -> None:
    """With 10 calls allowed at once and each call slow, a 30-part batch answers 10 parts
    and refuses the other 20 with Gmail's 'Too many concurrent requests for user'."""
    emulator.state.realism = Realism(latency_median_ms=150, latency_p99_ms=150,
                                     max_concurrent_per_user=10)
    answers = await asyncio.to_thread(_batch, gmail, _ids(emulator)[:30])
    refused = [a for a in answers.values() if isinstance(a, HttpError)]
    assert len(refused) == 20 and len(answers) == 30
    assert {a.resp.status for a in refused} == {429}
    body = json.loads(refused[0].content)
    assert body["error"]["message"] == CONCURRENCY_MESSAGE
    assert body["error"]["errors"][0]["reason"] == "rateLimitExceeded"
    assert emulator.state.realism.peak == 10


async def test_parts_of_one_batch_run_side_by_side(gmail: Any, emulator: Emulator) -> None:
    """Ten parts of 200 ms each take about 200 ms in all, not two seconds."""
    emulator.state.realism = Realism(latency_median_ms=200, latency_p99_ms=200)
    started = time.monotonic()
    answers = await asyncio.to_thread(_batch, gmail, _ids(emulator)[:10])
    assert time.monotonic() - started < 1.0
    assert not any(isinstance(a, HttpError) for a in answers.values())


async def test_random_failures_hit_single_parts_and_are_seeded(
    gmail: Any, emulator: Emulator
) -> None:
    """A 30 % fault rate fails some parts with 500 or 503 while the others succeed, the
    same parts again for the same seed."""
    runs = []
    for _ in range(2):
        emulator.state.realism = Realism(fault_rate=0.3, seed=7)
        answers = await asyncio.to_thread(_batch, gmail, _ids(emulator))
        runs.append(sorted(m for m, a in answers.items() if isinstance(a, HttpError)))
        failed = [a for a in answers.values() if isinstance(a, HttpError)]
        assert 0 < len(failed) < 40
        assert {a.resp.status for a in failed} <= {500, 503}
    assert runs[0] == runs[1]
    assert emulator.state.realism.failed == len(runs[1])


async def test_realism_is_set_and_cleared_over_the_admin_route(emulator: Emulator) -> None:
    """PUT sets it (bad bodies are 400), GET shows its counters, DELETE turns it off."""
    async with aiohttp.ClientSession() as http:
        url = f"{emulator.url}/_emulator/realism"
        bad = await http.put(url, json={"fault_rate": 2})
        assert bad.status == 400
        put = await http.put(url, json={"latency_median_ms": 80, "latency_p99_ms": 400,
                                        "max_concurrent_per_user": 20, "fault_rate": 0.2})
        assert put.status == 200 and (await put.json())["max_concurrent_per_user"] == 20
        assert (await (await http.get(url)).json())["fault_rate"] == 0.2
        assert (await http.delete(url)).status == 200
        assert emulator.state.realism is None
