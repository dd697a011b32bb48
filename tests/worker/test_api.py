"""The /v1 API refuses bad input with a clear 4xx and a machine-readable error, changing nothing."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from gwsync.emulator.seed import seed_demo_user
from gwsync.storage.accounts import subject_hash
from gwsync.storage.models import AccessLog, Account, Erasure
from gwsync.worker.deps import Deps
from tests.conftest import Emulator
from tests.helpers import connect

MISSING = "00000000-0000-0000-0000-000000000000"


async def _counts(deps: Deps) -> tuple[int, int, int]:
    async with deps.sessions() as session:
        return tuple([int(await session.scalar(select(func.count()).select_from(m)) or 0)
                      for m in (Account, Erasure, AccessLog)])  # type: ignore[return-value]


async def _error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["error"] == code
    return body


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "Basic abc"}])
async def test_missing_or_wrong_bearer_token_is_401(
    api: TestClient, deps: Deps, headers: dict[str, str]
) -> None:
    """Every /v1 route needs the app's bearer token; without it nothing happens."""
    resp = await api.post("/v1/accounts", json={"user_id": "u", "refresh_token": "t"},
                          headers={"Authorization": "", **headers})
    await _error(resp, 401, "unauthorized")
    assert await _counts(deps) == (0, 0, 0)


@pytest.mark.parametrize(("body", "code"), [
    (b"{not json", "malformed_json"),
    (b'{"user_id": "u"}', "invalid_body"),
    (b'{"user_id": "", "refresh_token": "x"}', "invalid_body"),
    (b'{"user_id": "u", "refresh_token": "x", "extra": 1}', "invalid_body"),
    (b'[1, 2]', "invalid_body"),
])
async def test_malformed_connect_bodies_are_400(
    api: TestClient, deps: Deps, body: bytes, code: str
) -> None:
    """Malformed or incomplete JSON on connect is refused and stores nothing."""
    resp = await api.post("/v1/accounts", data=body,
                          headers={"Content-Type": "application/json"})
    await _error(resp, 400, code)
    assert await _counts(deps) == (0, 0, 0)


async def test_connect_reports_features_from_granted_scopes(
    api: TestClient, emulator: Emulator
) -> None:
    """A grant of contacts only enables contacts; the others list the scope they miss."""
    grant = emulator.state.add_user(
        "a@example.com", [], ["https://www.googleapis.com/auth/contacts.readonly"])
    resp = await api.post("/v1/accounts", json={"user_id": "u1",
                                                "refresh_token": grant.refresh_token})
    body = await resp.json()
    assert resp.status == 201
    assert body["features"]["contacts"] == {"enabled": True, "missing_scopes": [],
                                            "available": True}
    assert body["features"]["mail_activity"]["missing_scopes"] == [
        "https://www.googleapis.com/auth/gmail.metadata"]
    assert body["syncs_queued"] == ["contacts"]


async def test_connect_with_a_dead_grant_is_400(api: TestClient, deps: Deps) -> None:
    """A refresh token Google does not know is refused as invalid_grant, storing nothing."""
    resp = await api.post("/v1/accounts", json={"user_id": "u", "refresh_token": "1//dead"})
    await _error(resp, 400, "invalid_grant")
    assert await _counts(deps) == (0, 0, 0)


async def test_declared_scopes_are_taken_as_given(api: TestClient) -> None:
    """granted_scopes in the body (list or space-separated) decide which features are on."""
    resp = await api.post("/v1/accounts", json={
        "user_id": "u", "refresh_token": "1//whatever",
        "granted_scopes": "https://www.googleapis.com/auth/drive.file"})
    body = await resp.json()
    assert body["features"]["shared_files"]["enabled"] is True
    assert body["features"]["contacts"]["enabled"] is False


@pytest.mark.parametrize(("method", "path"), [
    ("GET", f"/v1/accounts/{MISSING}"),
    ("POST", f"/v1/accounts/{MISSING}/sync"),
    ("GET", f"/v1/accounts/{MISSING}/records?use=feature:contacts"),
    ("DELETE", f"/v1/accounts/{MISSING}"),
])
async def test_unknown_account_is_404(
    api: TestClient, deps: Deps, method: str, path: str
) -> None:
    """Routes on an account that does not exist answer unknown_account and change nothing."""
    await _error(await api.request(method, path, json={}), 404, "unknown_account")
    assert await _counts(deps) == (0, 0, 0)


async def test_unknown_erasure_is_404(api: TestClient) -> None:
    """An erasure id nobody issued answers unknown_erasure."""
    await _error(await api.get(f"/v1/erasures/{MISSING}"), 404, "unknown_erasure")


async def test_unknown_feature_is_400(api: TestClient, emulator: Emulator) -> None:
    """Naming a feature that is not declared, in a sync or a read, is a 400."""
    account_id = await connect(api, seed_demo_user(emulator.state, 1).refresh_token)
    resp = await api.post(f"/v1/accounts/{account_id}/sync", json={"features": ["telepathy"]})
    body = await _error(resp, 400, "unknown_feature")
    assert body["features"] == ["telepathy"]
    resp = await api.get(f"/v1/accounts/{account_id}/records",
                         params={"feature": "telepathy", "use": "feature:telepathy"})
    await _error(resp, 400, "unknown_feature")


@pytest.mark.parametrize(("params", "status", "code"), [
    ({}, 400, "missing_use"),
    ({"use": "feature:contacts", "cursor": "abc"}, 400, "bad_cursor"),
    ({"use": "feature:contacts", "limit": "0"}, 400, "invalid_limit"),
    ({"use": "ai_training"}, 403, "limited_use_violation"),
    ({"use": "advertising"}, 403, "limited_use_violation"),
    ({"use": "sale"}, 403, "limited_use_violation"),
    ({"use": "credit_decision"}, 403, "limited_use_violation"),
    ({"use": "curiosity"}, 403, "limited_use_violation"),
    ({"use": "security"}, 403, "limited_use_violation"),
    ({"use": "feature:meetings", "feature": "contacts"}, 403, "limited_use_violation"),
])
async def test_bad_or_forbidden_reads_are_refused(
    api: TestClient, emulator: Emulator, params: dict[str, str], status: int, code: str
) -> None:
    """A read without a use, with a bad cursor, or for a use Limited Use forbids is refused."""
    account_id = await connect(api, seed_demo_user(emulator.state, 1).refresh_token)
    resp = await api.get(f"/v1/accounts/{account_id}/records", params=params)
    await _error(resp, status, code)


async def test_aggregate_use_returns_counts_only(
    api: TestClient, emulator: Emulator, run_worker: Any
) -> None:
    """aggregate_ops reads counts per feature and never contents."""
    account_id = await connect(api, seed_demo_user(emulator.state, 5).refresh_token)
    await run_worker()
    resp = await api.get(f"/v1/accounts/{account_id}/records", params={"use": "aggregate_ops"})
    assert await resp.json() == {"counts": {"contacts": 5}}


async def test_disconnect_twice_is_409(
    api: TestClient, emulator: Emulator, deps: Deps
) -> None:
    """A second disconnect of an account already being erased is refused, not repeated."""
    account_id = await connect(api, seed_demo_user(emulator.state, 1).refresh_token)
    assert (await api.delete(f"/v1/accounts/{account_id}")).status == 202
    await _error(await api.delete(f"/v1/accounts/{account_id}"), 409, "account_not_active")
    async with deps.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Erasure)) == 1


async def test_user_erasure_covers_every_account_of_the_user(
    api: TestClient, emulator: Emulator, run_worker: Any, deps: Deps
) -> None:
    """POST /v1/users/{id}/erasure erases all that user's accounts and only theirs."""
    mine = [await connect(api, seed_demo_user(emulator.state, 2, email=f"m{i}@example.com")
                          .refresh_token, user_id="me") for i in range(2)]
    other = await connect(api, seed_demo_user(emulator.state, 2, email="o@example.com")
                          .refresh_token, user_id="someone-else")
    await run_worker()
    resp = await api.post("/v1/users/me/erasure")
    assert resp.status == 202
    await run_worker()
    body = await (await api.get(f"/v1/erasures/{(await resp.json())['erasure_id']}")).json()
    assert body["status"] == "verified"
    # 2 contacts and 1 derived suggestion index per account
    assert body["receipt"]["accounts"] == 2 and body["receipt"]["counts"]["records"] == 6
    assert body["receipt"]["subject"] == subject_hash("me")
    for account_id in mine:
        assert (await (await api.get(f"/v1/accounts/{account_id}")).json())["status"] == "erased"
    assert (await (await api.get(f"/v1/accounts/{other}")).json())["status"] == "active"


async def test_health_and_readiness(api: TestClient) -> None:
    """/healthz says the process lives; /readyz checks database, migrations and Redis."""
    assert (await (await api.get("/healthz")).json())["status"] == "ok"
    ready = await (await api.get("/readyz")).json()
    assert ready == {"status": "ready", "checks": {"database": "ok", "migrations": "ok",
                                                   "redis": "ok"}}


async def test_metrics_carry_no_identifiers(api: TestClient, emulator: Emulator) -> None:
    """/metrics exposes request and purpose counters labelled by route template, not by id."""
    account_id = await connect(api, seed_demo_user(emulator.state, 1).refresh_token)
    await api.get(f"/v1/accounts/{account_id}/records", params={"use": "ai_training"})
    text = await (await api.get("/metrics")).text()
    assert ('gwsync_purpose_decisions_total{decision="refused",kind="forbidden",'
            'use="ai_training"}') in text
    assert "/v1/accounts/{account_id}/records" in text
    assert account_id not in text


async def test_a_misconfigured_oauth_client_is_502_not_retryable(
    api: TestClient, emulator: Emulator, deps: Deps
) -> None:
    """When Google rejects our client credentials, connect says so (502) instead of 'retry'."""
    grant = seed_demo_user(emulator.state, 1)
    emulator.state.client_secret = "rotated"
    resp = await api.post("/v1/accounts", json={"user_id": "u",
                                                "refresh_token": grant.refresh_token})
    await _error(resp, 502, "google_refused")
    assert await _counts(deps) == (0, 0, 0)
