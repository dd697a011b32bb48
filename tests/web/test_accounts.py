"""The /v1 API refuses bad input with a clear 4xx and a machine-readable error, changing nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select, text

from gwsync.emulator.seed import seed_demo_user
from gwsync.storage.accounts import subject_hash
from gwsync.storage.models import AccessLog, Account, Erasure
from gwsync.tasks.deps import Deps
from tests.conftest import ADMIN, Emulator
from tests.erasure_triggers import cross_account_protection, revoked_at_google
from tests.helpers import USER, connect

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
    resp = await api.request(method, path, json={}, params={"user_id": USER})
    await _error(resp, 404, "unknown_account")
    assert await _counts(deps) == (0, 0, 0)


async def test_unknown_erasure_is_404(api: TestClient) -> None:
    """An erasure id nobody issued answers unknown_erasure."""
    resp = await api.get(f"/v1/erasures/{MISSING}", params={"user_id": USER})
    await _error(resp, 404, "unknown_erasure")


async def test_unknown_feature_is_400(api: TestClient, emulator: Emulator) -> None:
    """Naming a feature that is not declared, in a sync or a read, is a 400."""
    account_id = await connect(api, seed_demo_user(emulator.state, 1).refresh_token)
    resp = await api.post(f"/v1/accounts/{account_id}/sync", json={"features": ["telepathy"]},
                          params={"user_id": USER})
    body = await _error(resp, 400, "unknown_feature")
    assert body["features"] == ["telepathy"]
    resp = await api.get(f"/v1/accounts/{account_id}/records",
                         params={"user_id": USER, "feature": "telepathy",
                                 "use": "feature:telepathy"})
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
    resp = await api.get(f"/v1/accounts/{account_id}/records",
                         params={"user_id": USER, **params})
    await _error(resp, status, code)


async def test_aggregate_use_returns_counts_only(
    api: TestClient, emulator: Emulator, run_worker: Any
) -> None:
    """aggregate_ops reads counts per feature and never contents."""
    account_id = await connect(api, seed_demo_user(emulator.state, 5).refresh_token)
    await run_worker()
    resp = await api.get(f"/v1/accounts/{account_id}/records",
                         params={"user_id": USER, "use": "aggregate_ops"})
    assert await resp.json() == {"counts": {"contacts": 5}}


async def test_disconnect_twice_answers_the_same_erasure(
    api: TestClient, emulator: Emulator, deps: Deps, run_worker: Any
) -> None:
    """A repeated disconnect, before and after the erasure ends, names the erasure begun first."""
    account_id = await connect(api, seed_demo_user(emulator.state, 1).refresh_token)
    mine = {"user_id": USER}
    first = await api.delete(f"/v1/accounts/{account_id}", params=mine)
    assert first.status == 202
    erasure_id = (await first.json())["erasure_id"]
    again = await api.delete(f"/v1/accounts/{account_id}", params=mine)
    assert again.status == 200
    assert (await again.json())["erasure_id"] == erasure_id
    await run_worker()
    after = await api.delete(f"/v1/accounts/{account_id}", params=mine)
    assert (after.status, await after.json()) == (200, {"erasure_id": erasure_id,
                                                        "status": "verified"})
    async with deps.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Erasure)) == 1


@pytest.mark.parametrize(("cause", "trigger"), [(revoked_at_google, "invalid_grant"),
                                                (cross_account_protection,
                                                 "risc_token_revoked")])
async def test_an_erasure_google_caused_is_in_the_account_answer(
    api: TestClient, emulator: Emulator, deps: Deps, run_worker: Any,
    cause: Callable[..., Awaitable[None]], trigger: str,
) -> None:
    """An erasure the app did not ask for is listed in the account's answer, receipt and all."""
    grant = seed_demo_user(emulator.state, 2)
    account_id = await connect(api, grant.refresh_token)
    await run_worker()
    mine = {"user_id": USER}
    before = await api.get(f"/v1/accounts/{account_id}", params=mine)
    assert (await before.json())["erasures"] == []
    await cause(api, deps, emulator, grant, account_id)
    await run_worker()
    body = await (await api.get(f"/v1/accounts/{account_id}", params=mine)).json()
    [erasure] = body["erasures"]
    assert body["status"] == "erased"
    assert {k: erasure[k] for k in ("trigger", "status", "whole_account")} == {
        "trigger": trigger, "status": "verified", "whole_account": True}
    assert erasure["requested_at"] <= erasure["verified_at"]
    resp = await api.get(f"/v1/erasures/{erasure['erasure_id']}", params=mine)
    assert (await resp.json())["receipt"]["trigger"] == trigger
    repeated = await (await api.delete(f"/v1/accounts/{account_id}", params=mine)).json()
    assert repeated["erasure_id"] == erasure["erasure_id"]


async def test_an_account_lists_only_its_own_erasures(
    api: TestClient, emulator: Emulator, run_worker: Any
) -> None:
    """Another account of the same user, erased alone, is not in this account's list."""
    mine, other = [await connect(api, seed_demo_user(
        emulator.state, 1, email=f"{name}@example.com").refresh_token, user_id="me")
        for name in ("mine", "other")]
    me = {"user_id": "me"}
    await api.delete(f"/v1/accounts/{other}", params=me)
    await run_worker()
    assert (await (await api.get(f"/v1/accounts/{mine}", params=me)).json())["erasures"] == []
    listed = (await (await api.get(f"/v1/accounts/{other}", params=me)).json())["erasures"]
    assert [e["trigger"] for e in listed] == ["disconnect"]


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
    me = {"user_id": "me"}
    erasure_id = (await resp.json())["erasure_id"]
    body = await (await api.get(f"/v1/erasures/{erasure_id}", params=me)).json()
    assert body["status"] == "verified"
    # 2 contacts and 1 derived suggestion index per account
    assert body["receipt"]["accounts"] == 2 and body["receipt"]["counts"]["records"] == 6
    assert body["receipt"]["subject"] == subject_hash("me")
    for account_id in mine:
        erased = await api.get(f"/v1/accounts/{account_id}", params=me)
        assert (await erased.json())["status"] == "erased"
    kept = await api.get(f"/v1/accounts/{other}", params={"user_id": "someone-else"})
    assert (await kept.json())["status"] == "active"


async def test_health_and_readiness(api: TestClient) -> None:
    """/healthz says the process lives; /readyz checks database, migrations, the pseudonym
    key and Redis."""
    assert (await (await api.get("/healthz")).json())["status"] == "ok"
    ready = await (await api.get("/readyz")).json()
    assert ready == {"status": "ready", "checks": {
        "database": "ok", "migrations": "ok", "pseudonym_key": "ok", "redis": "ok"}}


@contextlib.asynccontextmanager
async def _database_at(deps: Deps, revision: str) -> AsyncIterator[None]:
    """Set the database's Alembic revision for a moment (the PostgreSQL database is shared)."""
    async with deps.engine.begin() as conn:
        before = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        await conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    try:
        yield
    finally:
        async with deps.engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = :r"),
                               {"r": before})


async def test_a_database_ahead_of_the_code_stays_ready(api: TestClient, deps: Deps) -> None:
    """A revision this code does not know (newer code migrated first) is ready, and says so."""
    async with _database_at(deps, "9999_from_a_newer_release"):
        resp = await api.get("/readyz")
        body = await resp.json()
    assert resp.status == 200, body
    assert body["checks"]["migrations"] == "ahead of this code (at 9999_from_a_newer_release)"


async def test_a_database_behind_the_code_is_not_ready(api: TestClient, deps: Deps) -> None:
    """A known revision short of head is a schema this code would fail on: 503."""
    async with _database_at(deps, "0001"):
        resp = await api.get("/readyz")
        body = await resp.json()
    assert resp.status == 503, body
    assert body["checks"]["migrations"].startswith("behind this code (at 0001, needs ")


async def test_metrics_carry_no_identifiers(api: TestClient, emulator: Emulator) -> None:
    """/metrics exposes request and purpose counters labelled by route template, not by id."""
    account_id = await connect(api, seed_demo_user(emulator.state, 1).refresh_token)
    await api.get(f"/v1/accounts/{account_id}/records",
                  params={"user_id": USER, "use": "ai_training"})
    text = await (await api.get("/metrics", headers=ADMIN)).text()
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


async def test_concurrent_disconnects_share_one_erasure(
    api: TestClient, deps: Deps, emulator: Emulator
) -> None:
    """Several DELETEs of one account at once: one begins the erasure (202), the others
    answer 200 with its id — never a second erasure, never a 5xx."""
    account_id = await connect(api, seed_demo_user(emulator.state, 1).refresh_token)
    mine = {"user_id": USER}
    answers = await asyncio.gather(*(api.delete(f"/v1/accounts/{account_id}", params=mine)
                                     for _ in range(6)))
    statuses = sorted(r.status for r in answers)
    bodies = [await r.json() for r in answers]
    assert statuses == [200] * 5 + [202], bodies
    async with deps.sessions() as session:
        erasures = list(await session.scalars(select(Erasure)))
    assert len(erasures) == 1
    assert {b["erasure_id"] for b in bodies} == {erasures[0].id}


async def test_concurrent_user_erasures_never_fail(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: Any
) -> None:
    """Erasures of one user's accounts requested at once all answer 202 and all verify."""
    for i in range(3):
        await connect(api, seed_demo_user(emulator.state, 1, email=f"c{i}@example.com")
                      .refresh_token, user_id="me")
    answers = await asyncio.gather(*(api.post("/v1/users/me/erasure") for _ in range(4)))
    assert [r.status for r in answers] == [202] * 4, [await r.text() for r in answers]
    await run_worker()
    async with deps.sessions() as session:
        states = {e.state for e in await session.scalars(select(Erasure))}
        left = await session.scalar(select(func.count()).select_from(Account)
                                    .where(Account.status != "erased"))
    assert states == {"verified"} and left == 0
