"""Cross-Account Protection: signed events from the emulator erase the accounts they name."""

from __future__ import annotations

from typing import Any

import jwt
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from gwsync.emulator import risc as emulator_risc
from gwsync.emulator.seed import seed_demo_user
from gwsync.storage.models import Account, Erasure, SecurityEvent
from gwsync.worker.deps import Deps
from tests.conftest import Emulator, RunWorker
from tests.helpers import synced_user

RECEIVER = "/webhooks/google/risc"


async def _deliver(api: TestClient, emulator: Emulator, **body: Any) -> dict[str, Any]:
    """Have the emulator sign and push an event to the web app, as Google would."""
    receiver = str(api.make_url(RECEIVER))
    async with api.session.post(f"{emulator.url}/_emulator/risc/send",
                                json={"receiver": receiver, **body}) as resp:
        return await resp.json()


async def _erasures(deps: Deps) -> list[Erasure]:
    async with deps.sessions() as session:
        return list(await session.scalars(select(Erasure)))


async def test_token_revoked_by_prefix_erases_the_account(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """token-revoked naming the refresh token's prefix ends in a verified erasure."""
    grant, account_id = await synced_user(api, emulator.state, run_worker, 3)
    answer = await _deliver(api, emulator, event="oauth/event-type/token-revoked",
                            refresh_token=grant.refresh_token, alg="prefix")
    assert answer["status"] == 202
    await run_worker()
    [erasure] = await _erasures(deps)
    assert (erasure.trigger, erasure.state) == ("risc_token_revoked", "verified")
    assert erasure.account_ids == [account_id] and erasure.verification["ok"]


async def test_token_revoked_by_double_sha512_hash_erases_the_account(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """token-revoked naming base64(SHA-512(SHA-512(token))) matches the stored hash."""
    grant, _ = await synced_user(api, emulator.state, run_worker, 1)
    answer = await _deliver(api, emulator, event="oauth/event-type/token-revoked",
                            refresh_token=grant.refresh_token,
                            alg="hash_base64_sha512_sha512")
    assert answer["status"] == 202
    assert [e.trigger for e in await _erasures(deps)] == ["risc_token_revoked"]


async def test_events_naming_the_google_account_use_its_sub(
    api: TestClient, deps: Deps, emulator: Emulator
) -> None:
    """tokens-revoked, account-disabled and account-purged find accounts by Google sub."""
    for i, kind in enumerate(["oauth/event-type/tokens-revoked",
                              "risc/event-type/account-disabled",
                              "risc/event-type/account-purged"]):
        grant = seed_demo_user(emulator.state, 1, email=f"u{i}@example.com")
        sub = emulator.state.user(grant.user).sub
        resp = await api.post("/v1/accounts", json={
            "user_id": f"user-{i}", "refresh_token": grant.refresh_token, "google_sub": sub})
        assert resp.status == 201
        assert (await _deliver(api, emulator, event=kind, user=grant.user))["status"] == 202
    triggers = sorted(e.trigger for e in await _erasures(deps))
    assert triggers == ["risc_account_disabled", "risc_account_purged", "risc_tokens_revoked"]


async def test_a_redelivered_event_is_acted_on_once(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """The same jti delivered twice is accepted twice and erases once."""
    grant, _ = await synced_user(api, emulator.state, run_worker, 1)
    for _ in range(2):
        answer = await _deliver(api, emulator, event="oauth/event-type/token-revoked",
                                refresh_token=grant.refresh_token, jti="same-jti")
        assert answer["status"] == 202
    assert len(await _erasures(deps)) == 1
    async with deps.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(SecurityEvent)) == 1


async def test_verification_events_are_accepted_and_change_nothing(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """A verification event is logged and answered 202, erasing nothing."""
    grant, account_id = await synced_user(api, emulator.state, run_worker, 1)
    answer = await _deliver(api, emulator, event="risc/event-type/verification",
                            user=grant.user)
    assert answer["status"] == 202
    assert await _erasures(deps) == []
    async with deps.sessions() as session:
        assert (await session.get(Account, account_id)).status == "active"


async def test_forged_or_misaddressed_tokens_are_400(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """Wrong key, wrong audience, wrong issuer, or not a JWT: 400 and nothing happens."""
    grant, _ = await synced_user(api, emulator.state, run_worker, 1)
    events = emulator_risc.event_for("oauth/event-type/token-revoked",
                                     emulator_risc.subject_for_token(grant.refresh_token))
    forger = emulator_risc.RiscSigner()
    forged = [
        (forger.sign(f"{emulator.url}/", emulator.state.client_id, events), "invalid_key"),
        (jwt.encode({"iss": f"{emulator.url}/", "aud": emulator.state.client_id,
                     "iat": 1, "jti": "x", "events": events}, "s" * 32, algorithm="HS256",
                    headers={"kid": forger.kid}), "invalid_key"),
        ("not-a-jwt", "invalid_request"), ("", "invalid_request"),
    ]
    for token, err in forged:
        resp = await api.post(RECEIVER, data=token)
        assert resp.status == 400, token[:20]
        assert (await resp.json())["err"] == err
    misaddressed = await _deliver(api, emulator, event="oauth/event-type/token-revoked",
                                  refresh_token=grant.refresh_token, audience="someone-else")
    assert misaddressed["status"] == 400
    assert await _erasures(deps) == []
