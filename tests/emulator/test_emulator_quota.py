"""The emulator's per-user quota: Google's units, Google's refusals, parsed by the real client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from googleapiclient.errors import HttpError

from gwsync.connectors import client
from gwsync.connectors.endpoints import Endpoints
from gwsync.connectors.errors import TemporaryError
from gwsync.emulator.errors import GoogleApiError
from gwsync.emulator.mailbox import add_gmail_user
from gwsync.emulator.quota import QuotaPolicy
from gwsync.emulator.seed import seed_demo_user
from tests.emulator.support import Emulator


def _service(emulator: Emulator, api: str, refresh_token: str) -> Any:
    token = emulator.state.mint_access_token(refresh_token)
    return client.service(api, token, Endpoints.at(emulator.url), 5)


@pytest.fixture
def gmail(emulator: Emulator) -> Iterator[Any]:
    """A Gmail service over a mailbox of 3 messages."""
    service = _service(emulator, "gmail", add_gmail_user(emulator.state, "q@example.com",
                                                         3).refresh_token)
    yield service
    service.close()


def _list(gmail: Any) -> Any:
    return asyncio.to_thread(gmail.users().messages().list(userId="me").execute)


async def test_gmail_refuses_past_the_per_user_units_with_403(
    gmail: Any, emulator: Emulator
) -> None:
    """Two messages.list (5 units each) fit 10 units; the third is Gmail's 403
    userRateLimitExceeded with Retry-After, which gwsync classifies as temporary."""
    emulator.state.quota = QuotaPolicy({"gmail": 10}, window_s=30)
    await _list(gmail)
    await _list(gmail)
    with pytest.raises(HttpError) as refused:
        await _list(gmail)
    assert refused.value.resp.status == 403
    error = json.loads(refused.value.content)["error"]
    assert error["errors"][0] == {"message": "User-rate limit exceeded.",
                                  "domain": "usageLimits", "reason": "userRateLimitExceeded"}
    assert refused.value.resp["retry-after"] == "30"
    mapped = client.classify_http_error(refused.value)
    assert isinstance(mapped, TemporaryError) and mapped.retry_after == 30
    assert emulator.state.quota.charged == {"gmail": 10}  # the refusal was not charged
    assert emulator.state.quota.refused == {"gmail": 1}


async def test_batched_calls_are_charged_one_by_one(gmail: Any, emulator: Emulator) -> None:
    """Inside a batch each call is charged its units; those past the budget fail alone."""
    emulator.state.quota = QuotaPolicy({"gmail": 12}, window_s=30, retry_after=False)
    ids = [m["id"] for m in (await _list(gmail))["messages"]]  # 5 units, 7 left
    answers: dict[str, int] = {}

    def answer(request_id: str, response: Any, exc: HttpError | None) -> None:
        answers[request_id] = exc.resp.status if exc else 200

    batch = gmail.new_batch_http_request(callback=answer)
    for mid in ids:
        batch.add(gmail.users().messages().get(userId="me", id=mid, format="metadata"),
                  request_id=mid)
    await asyncio.to_thread(batch.execute)
    assert sorted(answers.values()) == [200, 403, 403]


async def test_people_and_forced_429_answer_resource_exhausted(emulator: Emulator) -> None:
    """People refuses with 429 RESOURCE_EXHAUSTED; `status=429` makes Gmail do the same."""
    grant = seed_demo_user(emulator.state, 2)
    people = _service(emulator, "people", grant.refresh_token)
    emulator.state.quota = QuotaPolicy({"people": 1}, window_s=30)
    request = people.people().connections().list(resourceName="people/me",
                                                 personFields="names")
    await asyncio.to_thread(request.execute)
    with pytest.raises(HttpError) as refused:
        await asyncio.to_thread(request.execute)
    people.close()
    assert refused.value.resp.status == 429
    error = json.loads(refused.value.content)["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert error["details"][0]["reason"] == "RATE_LIMIT_EXCEEDED"
    assert isinstance(client.classify_http_error(refused.value), TemporaryError)


async def test_the_quota_is_set_through_the_admin_route(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """PUT sets a policy, GET shows it with its counters, DELETE lifts it; bad bodies are 400."""
    url = emulator.url + "/_emulator/quota"
    async with http.put(url, json={"per_user": {"gmail": 100}, "window_s": 2}) as resp:
        assert resp.status == 200
    assert emulator.state.quota is not None and emulator.state.quota.per_user == {"gmail": 100}
    async with http.get(url) as resp:
        assert (await resp.json())["charged"] == {}
    for bad in ({"per_user": {"mail": 1}}, {"per_user": {"gmail": 0}},
                {"per_user": {"gmail": 5}, "status": 500}, [1]):
        async with http.put(url, json=bad) as resp:
            assert resp.status == 400 and (await resp.json())["error"] == "bad_request"
    assert emulator.state.quota.per_user == {"gmail": 100}  # refused bodies changed nothing
    async with http.delete(url) as resp:
        assert resp.status == 200
    assert emulator.state.quota is None


def test_a_rate_with_a_bounded_burst_admits_the_burst_then_only_the_rate() -> None:
    """With `burst_s`, a user's quota is a rate (per_user / window_s a second) holding at
    most `burst_s` of it: a burst of that size is admitted at once, the next call is
    refused with the time it must wait, and from then on only the rate gets through."""
    policy = QuotaPolicy({"gmail": 15_000}, window_s=60, burst_s=4)  # 250 units/s, 1,000
    get = "gmail.users.messages.get"
    for _ in range(200):
        policy.admit(get, "u", now=0.0)
    with pytest.raises(GoogleApiError) as refused:
        policy.admit(get, "u", now=0.0)
    assert refused.value.code == 403 and refused.value.headers["Retry-After"] == "1"
    admitted = 0
    for step in range(1, 1001):  # 10 s in 10 ms steps, asking for twice the rate
        for _ in range(2):
            try:
                policy.admit(get, "u", now=step / 100)
                admitted += 5
            except GoogleApiError:
                pass
    assert 2_450 <= admitted <= 2_505
    assert policy.charged["gmail"] == 1_000 + admitted and policy.refused["gmail"] > 900
    policy.admit(get, "another user", now=10.0)  # each user has a bucket of their own
