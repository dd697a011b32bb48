"""Cross-Account Protection: signed events from the emulator erase the accounts they name."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from gwsync.emulator import risc as emulator_risc
from gwsync.emulator import signing
from gwsync.emulator.seed import seed_demo_user
from gwsync.storage import purge
from gwsync.storage.models import Account, Erasure, SecurityEvent
from gwsync.tasks.deps import Deps
from gwsync.web import risc as risc_web
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
    """tokens-revoked and account-disabled find accounts by Google sub and erase them."""
    for i, kind in enumerate(["oauth/event-type/tokens-revoked",
                              "risc/event-type/account-disabled"]):
        grant = seed_demo_user(emulator.state, 1, email=f"u{i}@example.com")
        sub = emulator.state.user(grant.user).sub
        resp = await api.post("/v1/accounts", json={
            "user_id": f"user-{i}", "refresh_token": grant.refresh_token, "google_sub": sub})
        assert resp.status == 201
        assert (await _deliver(api, emulator, event=kind, user=grant.user))["status"] == 202
    triggers = sorted(e.trigger for e in await _erasures(deps))
    assert triggers == ["risc_account_disabled", "risc_tokens_revoked"]


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
    forger = signing.KeySet()
    forged = [
        (forger.sign({"iss": f"{emulator.url}/", "aud": emulator.state.client_id,
                      "iat": int(time.time()), "jti": "f", "events": events}), "invalid_key"),
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


async def _connected(api: TestClient, emulator: Emulator, i: int = 0) -> tuple[str, str]:
    """An account registered with its Google sub: (emulator user, account id)."""
    grant = seed_demo_user(emulator.state, 1, email=f"s{i}@example.com")
    resp = await api.post("/v1/accounts", json={
        "user_id": f"user-s{i}", "refresh_token": grant.refresh_token,
        "google_sub": emulator.state.user(grant.user).sub})
    assert resp.status == 201
    return grant.user, (await resp.json())["account_id"]


async def _events(deps: Deps) -> list[SecurityEvent]:
    async with deps.sessions() as session:
        return list(await session.scalars(select(SecurityEvent)))


async def test_account_purged_is_not_a_google_event_and_erases_nothing(
    api: TestClient, deps: Deps, emulator: Emulator
) -> None:
    """An event type Google does not send is accepted (RFC 8935), recorded as ignored,
    and acted on in no way."""
    user, account_id = await _connected(api, emulator)
    answer = await _deliver(api, emulator, event="risc/event-type/account-purged", user=user)
    assert answer["status"] == 202
    assert await _erasures(deps) == []
    assert [e.outcome for e in await _events(deps)] == ["ignored"]


@pytest.mark.parametrize("kind", ["risc/event-type/sessions-revoked",
                                  "risc/event-type/account-credential-change-required",
                                  "risc/event-type/account-enabled"])
async def test_events_that_do_not_end_the_grant_are_recorded_against_the_account(
    api: TestClient, deps: Deps, emulator: Emulator, kind: str
) -> None:
    """sessions-revoked, account-credential-change-required and account-enabled leave the
    grant alone (gwsync holds no session; nothing was disabled) and are recorded with the
    account they name, for ops to see."""
    user, account_id = await _connected(api, emulator)
    assert (await _deliver(api, emulator, event=kind, user=user))["status"] == 202
    assert await _erasures(deps) == []
    [event] = await _events(deps)
    assert (event.accounts_matched, event.outcome) == (1, kind.rsplit("/", 1)[-1])
    async with deps.sessions() as session:
        assert (await session.get(Account, account_id)).status == "active"


async def _pieces(token: str) -> AsyncIterator[bytes]:
    half = len(token) // 2
    yield token[:half].encode()
    await asyncio.sleep(0.2)
    yield token[half:].encode()


async def test_a_body_that_arrives_in_pieces_is_read_whole(
    api: TestClient, deps: Deps, emulator: Emulator
) -> None:
    """A SET sent in two chunks, the second after a pause, is verified and acted on."""
    user, _ = await _connected(api, emulator)
    token = emulator_risc.security_event(f"{emulator.url}/", emulator.state.client_id,
                                         emulator_risc.event_for(
                                             "oauth/event-type/tokens-revoked",
                                             emulator_risc.subject_for_user(
                                                 emulator.state, user)))
    resp = await api.post(RECEIVER, data=_pieces(token),
                          headers={"Content-Type": "application/secevent+jwt"})
    assert resp.status == 202, await resp.text()
    assert [e.trigger for e in await _erasures(deps)] == ["risc_tokens_revoked"]


async def test_a_failure_while_acting_lets_googles_retry_act(
    api: TestClient, deps: Deps, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When beginning the erasure fails, nothing of the event is kept: the redelivery of
    the same jti is not a duplicate, and erases."""
    user, account_id = await _connected(api, emulator)
    real_begin = purge.begin

    async def failing(*args: Any, **kwargs: Any) -> Erasure:
        monkeypatch.setattr(purge, "begin", real_begin)
        raise RuntimeError("database went away mid-erasure")
    monkeypatch.setattr(purge, "begin", failing)
    first = await _deliver(api, emulator, event="oauth/event-type/tokens-revoked", user=user,
                           jti="retried")
    assert first["status"] == 500
    assert await _events(deps) == []
    again = await _deliver(api, emulator, event="oauth/event-type/tokens-revoked", user=user,
                           jti="retried")
    assert again["status"] == 202 and '"accepted"' in again["body"]
    [erasure] = await _erasures(deps)
    assert erasure.account_ids == [account_id]


async def test_an_event_from_a_few_seconds_ahead_is_accepted_one_from_far_ahead_is_not(
    api: TestClient, deps: Deps, emulator: Emulator
) -> None:
    """Google's clock may run a little ahead of ours (60 s is accepted); an `iat` an hour
    in the future is refused 400 and changes nothing."""
    user, _ = await _connected(api, emulator)
    far = await _deliver(api, emulator, event="oauth/event-type/tokens-revoked", user=user,
                         iat=int(time.time()) + 3600)
    assert far["status"] == 400 and await _events(deps) == []
    near = await _deliver(api, emulator, event="oauth/event-type/tokens-revoked", user=user,
                          iat=int(time.time()) + 60)
    assert near["status"] == 202, near
    assert [e.trigger for e in await _erasures(deps)] == ["risc_tokens_revoked"]


async def test_unreachable_google_keys_answer_503_so_google_retries(
    api: TestClient, deps: Deps, emulator: Emulator
) -> None:
    """Google's keys answering 503 make the receiver answer 503 keys_unavailable, and the
    event, delivered again once they are back, is acted on."""
    user, _ = await _connected(api, emulator)
    emulator.state.fault_plan.add(signing.JWKS_PATH, 503)
    answer = await _deliver(api, emulator, event="oauth/event-type/tokens-revoked", user=user,
                            jti="later")
    assert answer["status"] == 503 and "keys_unavailable" in answer["body"]
    assert await _events(deps) == []
    verifier = api.server.app[risc_web.VERIFIER]
    verifier.clock = lambda: time.monotonic() + 60  # Google retries a minute later
    again = await _deliver(api, emulator, event="oauth/event-type/tokens-revoked", user=user,
                           jti="later")
    assert again["status"] == 202


async def test_the_same_event_delivered_twice_at_once_erases_once(
    api: TestClient, deps: Deps, emulator: Emulator
) -> None:
    """Two concurrent deliveries of one jti: both 202, one record, one erasure."""
    user, _ = await _connected(api, emulator)
    token = emulator_risc.security_event(
        f"{emulator.url}/", emulator.state.client_id, emulator_risc.event_for(
            "oauth/event-type/tokens-revoked", emulator_risc.subject_for_user(
                emulator.state, user)), jti="twice-at-once")
    answers = await asyncio.gather(*(api.post(RECEIVER, data=token) for _ in range(2)))
    assert [a.status for a in answers] == [202, 202]
    assert len(await _erasures(deps)) == 1 and len(await _events(deps)) == 1


async def test_one_event_looks_its_accounts_up_once(
    api: TestClient, deps: Deps, emulator: Emulator
) -> None:
    """An erasing event finds (and locks) the accounts it names with one query, not one
    for the accounts it names and another for those it erases."""
    user, _ = await _connected(api, emulator)
    lookups: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "google_sub_hash IN" in statement:
            lookups.append(statement)
    sa_event.listen(deps.engine.sync_engine, "before_cursor_execute", seen)
    try:
        answer = await _deliver(api, emulator, event="oauth/event-type/tokens-revoked",
                                user=user)
    finally:
        sa_event.remove(deps.engine.sync_engine, "before_cursor_execute", seen)
    assert answer["status"] == 202 and len(await _erasures(deps)) == 1
    assert len(lookups) == 1, lookups


async def test_a_set_of_two_events_erases_only_the_account_an_erasing_event_names(
    api: TestClient, deps: Deps, emulator: Emulator
) -> None:
    """One SET with tokens-revoked about one account and sessions-revoked about another:
    both are recorded as matched, only the first is erased."""
    doomed_user, doomed_id = await _connected(api, emulator, 0)
    spared_user, spared_id = await _connected(api, emulator, 1)
    events = {**emulator_risc.event_for("oauth/event-type/tokens-revoked",
                                        emulator_risc.subject_for_user(emulator.state,
                                                                       doomed_user)),
              **emulator_risc.event_for("risc/event-type/sessions-revoked",
                                        emulator_risc.subject_for_user(emulator.state,
                                                                       spared_user))}
    token = emulator_risc.security_event(f"{emulator.url}/", emulator.state.client_id, events)
    assert (await api.post(RECEIVER, data=token)).status == 202
    [erasure] = await _erasures(deps)
    assert erasure.account_ids == [doomed_id]
    [recorded] = await _events(deps)
    assert (recorded.accounts_matched, recorded.outcome) == (2, "erasure")
    async with deps.sessions() as session:
        assert (await session.get(Account, spared_id)).status == "active"
