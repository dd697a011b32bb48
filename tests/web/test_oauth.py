"""Connecting through consent: granular grants enable only covered features; incremental
consent asks only for what is missing and merges into the same account; the state is
signed, expiring and single-use."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from gwsync.domain.features import FEATURES
from gwsync.emulator import calendar_events as emu_calendar
from gwsync.emulator import drive as emu_drive
from gwsync.storage import accounts
from gwsync.storage.models import Account, Record, is_source_record
from gwsync.tasks.deps import Deps
from gwsync.web.oauth_state import sign, signing_key
from tests.conftest import Emulator, RunWorker
from tests.consent_form import consent

REDIRECT = "https://app.example/google/done"
ALL = ",".join(FEATURES)
GRANTED = {"contacts", "shared_files"}
TICK = [FEATURES[n].scope for n in sorted(GRANTED)]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def google_user(emulator: Emulator) -> str:
    """A Google user with data for every feature, who has granted nothing yet."""
    state = emulator.state
    user = state.add_user("consent@example.com", [{"names": [{"displayName": "Ann"}]}]).user
    emu_calendar.seed_calendar(state, user, 3)
    emu_drive.add_file(state, user, "plan.pdf")
    return user


async def _start(api: TestClient, features: str, user_id: str = "app-user-1",
                 **extra: str) -> tuple[int, dict[str, Any]]:
    resp = await api.get("/v1/oauth/start", params={
        "user_id": user_id, "features": features, "redirect_uri": REDIRECT, **extra})
    return resp.status, await resp.json()


def _params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def _callback(api: TestClient, redirect: dict[str, str],
                    user_id: str = "app-user-1") -> tuple[int, dict[str, Any]]:
    """The app forwards Google's redirect, naming the user whose session it came back to."""
    resp = await api.get("/v1/oauth/callback", params={"user_id": user_id, **redirect})
    return resp.status, await resp.json()


async def _connect(api: TestClient, http: aiohttp.ClientSession, features: str,
                   tick: list[str]) -> tuple[int, dict[str, Any]]:
    status, started = await _start(api, features)
    assert status == 200, started
    return await _callback(api, await consent(http, started["url"], tick))


async def _counts(deps: Deps) -> tuple[int, dict[str, int]]:
    async with deps.sessions() as session:
        accounts = int(await session.scalar(select(func.count()).select_from(Account)) or 0)
        records = dict((await session.execute(
            select(Record.feature, func.count()).where(is_source_record())
            .group_by(Record.feature))).all())
    return accounts, records


async def test_start_asks_for_exactly_the_features_scopes_with_pkce(
    api: TestClient, google_user: str
) -> None:
    """The consent URL is offline, incremental, PKCE S256, signed state, every scope asked."""
    status, body = await _start(api, ALL)
    assert status == 200
    params = _params(body["url"])
    assert params["scope"].split() == ["openid", "email", *body["scopes"]]
    assert body["scopes"] == [f.scope for f in FEATURES.values()]
    assert (params["access_type"], params["include_granted_scopes"], params["prompt"],
            params["code_challenge_method"], params["response_type"]) == (
        "offline", "true", "consent", "S256", "code")
    assert len(params["code_challenge"]) == 43 and params["state"].count(".") == 2


async def test_granting_two_of_five_scopes_enables_two_features_only(
    api: TestClient, deps: Deps, emulator: Emulator, http: aiohttp.ClientSession,
    run_worker: RunWorker, google_user: str
) -> None:
    """Three un-ticked features report missing_scopes; no call is made and nothing stored."""
    status, body = await _connect(api, http, ALL, TICK)
    assert status == 201, body
    missing = {n for n, f in body["features"].items() if f["missing_scopes"]}
    assert missing == set(FEATURES) - GRANTED
    assert all(body["features"][n]["missing_scopes"] == [FEATURES[n].scope] for n in missing)
    assert set(body["syncs_queued"]) == GRANTED

    await run_worker()
    called = {c["method"].split(".")[0] for c in emulator.state.calls()}
    assert called == {"people", "drive"}
    assert (await _counts(deps))[1] == {"contacts": 1, "shared_files": 1}
    resp = await api.get(f"/v1/accounts/{body['account_id']}", params={"user_id": "app-user-1"})
    report = await resp.json()
    for name in missing:
        assert report["features"][name]["missing_scopes"] == [FEATURES[name].scope]
        assert report["features"][name]["record_count"] == 0
        assert report["features"][name]["last_sync"] is None


async def test_adding_a_feature_later_asks_only_its_scope_and_merges(
    api: TestClient, deps: Deps, emulator: Emulator, http: aiohttp.ClientSession,
    run_worker: RunWorker, google_user: str
) -> None:
    """Incremental consent asks for the one missing scope and enables it on the same account."""
    _, first = await _connect(api, http, ALL, TICK)
    account_id = first["account_id"]
    async with deps.sessions() as session:
        old_hash = (await session.get(Account, account_id)).token_prefix_hash
    await run_worker()

    status, started = await _start(api, "meetings,contacts")
    params = _params(started["url"])
    assert status == 200 and started["scopes"] == [FEATURES["meetings"].scope]
    assert params["scope"] == "openid email " + FEATURES["meetings"].scope
    assert params["include_granted_scopes"] == "true" and "prompt" not in params
    redirect = await consent(http, started["url"], [FEATURES["meetings"].scope])
    status, body = await _callback(api, redirect)
    assert status == 200, body
    assert body["account_id"] == account_id and body["syncs_queued"] == ["meetings"]
    assert body["features"]["meetings"] == {"enabled": True, "missing_scopes": [],
                                            "available": True}
    assert body["features"]["contacts"]["enabled"] is True
    async with deps.sessions() as session:
        assert (await session.get(Account, account_id)).token_prefix_hash != old_hash
    emulator.state.calls(clear=True)
    await run_worker()
    assert {c["method"] for c in emulator.state.calls()} == {"calendar.events.list"}
    assert (await _counts(deps)) == (1, {"contacts": 1, "shared_files": 1, "meetings": 3})


async def test_start_when_everything_asked_is_granted_needs_no_consent(
    api: TestClient, http: aiohttp.ClientSession, google_user: str
) -> None:
    """Asking again for granted features yields no URL."""
    await _connect(api, http, ALL, TICK)
    status, body = await _start(api, "contacts")
    assert (status, body["url"], body["already_granted"]) == (200, None, True)


async def test_a_replayed_state_is_refused_and_changes_nothing(
    api: TestClient, deps: Deps, http: aiohttp.ClientSession, google_user: str
) -> None:
    """The state is single-use: the second callback is 400 invalid_state."""
    _, started = await _start(api, ALL)
    redirect = await consent(http, started["url"], TICK)
    assert (await _callback(api, redirect))[0] == 201
    before = await _counts(deps)
    status, body = await _callback(api, redirect)
    assert (status, body["error"]) == (400, "invalid_state")
    assert await _counts(deps) == before


async def test_forged_or_expired_states_are_refused_and_the_flow_survives(
    api: TestClient, deps: Deps, http: aiohttp.ClientSession, google_user: str
) -> None:
    """A state with a bad signature or past expiry is refused without consuming the flow."""
    _, started = await _start(api, ALL)
    redirect = await consent(http, started["url"], TICK)
    nonce, expires, mac = redirect["state"].split(".")
    key = signing_key(deps.keyring)
    bad = [f"{nonce}.{expires}.{mac[:-2]}AA", f"{nonce}.{int(expires) + 60}.{mac}",
           sign(key, nonce, int(time.time()) - 1), sign(b"k" * 32, nonce, int(expires)),
           "", "not-a-state"]
    for state in bad:
        status, body = await _callback(api, {**redirect, "state": state})
        assert (status, body["error"]) == (400, "invalid_state"), state
    assert await _counts(deps) == (0, {})
    assert (await _callback(api, redirect))[0] == 201


async def test_the_stored_flow_is_sealed_and_expires(
    api: TestClient, deps: Deps, google_user: str
) -> None:
    """Redis holds the flow under <prefix>:oauth:<nonce> with a TTL and no user id in clear."""
    _, started = await _start(api, ALL, user_id="visible-user-id")
    nonce = _params(started["url"])["state"].split(".")[0]
    key = f"{deps.settings.redis_prefix}:oauth:{nonce}"
    assert 0 < await deps.queue.redis.ttl(key) <= 600
    assert b"visible-user-id" not in await deps.queue.redis.get(key)


async def test_a_denied_consent_creates_nothing(
    api: TestClient, deps: Deps, google_user: str
) -> None:
    """Google's error=access_denied ends the flow with 400 and no account."""
    _, started = await _start(api, ALL)
    state = _params(started["url"])["state"]
    status, body = await _callback(api, {"error": "access_denied", "state": state})
    assert (status, body["error"]) == (400, "consent_denied")
    assert await _counts(deps) == (0, {})


@pytest.mark.parametrize(("params", "error"), [
    ({"user_id": "u", "features": "contacts,telepathy", "redirect_uri": REDIRECT},
     "unknown_feature"),
    ({"user_id": "u", "features": "", "redirect_uri": REDIRECT}, "invalid_features"),
    ({"features": "contacts", "redirect_uri": REDIRECT}, "invalid_user_id"),
    ({"user_id": "u", "features": "contacts"}, "invalid_redirect_uri"),
    ({"user_id": "u", "features": "contacts", "redirect_uri": "/relative"},
     "invalid_redirect_uri"),
    ({"user_id": "u", "features": "contacts", "redirect_uri": "javascript:alert(1)"},
     "invalid_redirect_uri"),
])
async def test_bad_start_requests_are_400(
    api: TestClient, deps: Deps, params: dict[str, str], error: str
) -> None:
    """Unknown features, a missing user or a non-http(s) redirect_uri are refused."""
    resp = await api.get("/v1/oauth/start", params=params)
    assert resp.status == 400 and (await resp.json())["error"] == error
    assert not [k async for k in deps.queue.redis.scan_iter(
        match=f"{deps.settings.redis_prefix}:oauth:*")]


async def test_a_redirect_uri_the_operator_did_not_list_is_refused(
    api: TestClient, deps: Deps
) -> None:
    """Only the exact URIs of GWSYNC_OAUTH_REDIRECT_URIS may receive the user back: a
    well-formed but unlisted one (another host, another path, a query added) is a 400."""
    for uri in ("https://evil.example/google/done", REDIRECT + "/x", REDIRECT + "?next=/",
                REDIRECT.replace("https", "http")):
        resp = await api.get("/v1/oauth/start", params={
            "user_id": "u", "features": "contacts", "redirect_uri": uri})
        assert resp.status == 400
        assert (await resp.json())["error"] == "redirect_uri_not_allowed"
    assert not [k async for k in deps.queue.redis.scan_iter(
        match=f"{deps.settings.redis_prefix}:oauth:*")]


async def test_consent_without_listed_redirect_uris_names_the_variable(
    api: TestClient, deps: Deps
) -> None:
    """With GWSYNC_OAUTH_REDIRECT_URIS unset, consent through gwsync is refused, naming it."""
    deps.settings.oauth_redirect_uris = None
    resp = await api.get("/v1/oauth/start", params={
        "user_id": "u", "features": "contacts", "redirect_uri": REDIRECT})
    body = await resp.json()
    assert resp.status == 400 and body["error"] == "redirect_uris_not_configured"
    assert "GWSYNC_OAUTH_REDIRECT_URIS" in body["message"]


async def test_a_callback_without_a_code_keeps_the_flow(
    api: TestClient, deps: Deps, http: aiohttp.ClientSession, google_user: str
) -> None:
    """A callback missing the code is 400 and leaves the state usable."""
    _, started = await _start(api, ALL)
    redirect = await consent(http, started["url"], TICK)
    status, body = await _callback(api, {"state": redirect["state"]})
    assert (status, body["error"]) == (400, "missing_code")
    assert (await _callback(api, redirect))[0] == 201


async def test_a_consent_finished_by_another_user_is_refused(
    api: TestClient, deps: Deps, emulator: Emulator, http: aiohttp.ClientSession,
    google_user: str
) -> None:
    """An attacker who starts a flow as themselves and gets a victim to consent gains
    nothing: the app forwards the callback as the victim, the flow is the attacker's, so
    it is 403 consent_user_mismatch, the code is never exchanged, and no account exists."""
    _, started = await _start(api, ALL, user_id="attacker")
    redirect = await consent(http, started["url"], TICK, user=google_user)
    grants_before = len(emulator.state.grants)
    status, body = await _callback(api, {**redirect, "user_id": "victim"})
    assert (status, body["error"]) == (403, "consent_user_mismatch")
    assert await _counts(deps) == (0, {})
    assert len(emulator.state.grants) == grants_before  # the code was never exchanged
    status, body = await _callback(api, {**redirect, "user_id": "attacker"})
    assert (status, body["error"]) == (400, "invalid_state")  # the flow died with the refusal
    assert await _counts(deps) == (0, {})


async def test_a_callback_must_name_its_user(
    api: TestClient, deps: Deps, http: aiohttp.ClientSession, google_user: str
) -> None:
    """A callback without user_id is 400 missing_user_id and leaves the flow usable."""
    _, started = await _start(api, ALL)
    redirect = await consent(http, started["url"], TICK)
    resp = await api.get("/v1/oauth/callback", params=redirect)
    assert (resp.status, (await resp.json())["error"]) == (400, "missing_user_id")
    assert (await _callback(api, redirect))[0] == 201


async def _account(deps: Deps, account_id: str) -> Account:
    async with deps.sessions() as session:
        account = await session.get(Account, account_id)
    assert account is not None
    return account


async def test_consent_asks_for_openid_and_keeps_only_a_hash_of_the_google_sub(
    api: TestClient, deps: Deps, emulator: Emulator, http: aiohttp.ClientSession,
    google_user: str
) -> None:
    """The consent URL asks for `openid email` besides the features' scopes; the account
    keeps the keyed hash of the verified `sub`, and neither the sub nor the email."""
    status, started = await _start(api, ALL)
    assert _params(started["url"])["scope"].split()[:2] == ["openid", "email"]
    status, body = await _callback(api, await consent(http, started["url"], TICK))
    assert status == 201, body
    account = await _account(deps, body["account_id"])
    user = emulator.state.user(google_user)
    assert account.google_sub_hash == accounts.google_sub_hash(user.sub)
    row = repr({c.key: getattr(account, c.key) for c in Account.__table__.columns})
    assert user.sub not in row and user.email not in row


async def test_a_consent_by_another_google_account_never_takes_over_the_first(
    api: TestClient, deps: Deps, emulator: Emulator, http: aiohttp.ClientSession,
    google_user: str
) -> None:
    """The same app user consenting as a second Google account gets a second account; the
    first keeps its own grant (same token, same sub, live at Google) and its syncs."""
    _, first = await _connect(api, http, ALL, TICK)
    before = await _account(deps, first["account_id"])
    other = emulator.state.add_user("other@example.com").user
    _, started = await _start(api, "meetings")
    status, body = await _callback(api, await consent(
        http, started["url"], [FEATURES["meetings"].scope], user=other))
    assert status == 201, body
    assert body["account_id"] != first["account_id"]
    after = await _account(deps, first["account_id"])
    assert (after.token_prefix_hash, after.google_sub_hash, after.granted_scopes) == (
        before.token_prefix_hash, before.google_sub_hash, before.granted_scopes)
    assert not [g for g in emulator.state.grants.values()
                if g.user == google_user and g.revoked_at is not None]
    second = await _account(deps, body["account_id"])
    assert second.google_sub_hash == accounts.google_sub_hash(emulator.state.user(other).sub)


async def test_a_consent_without_an_id_token_is_refused(
    api: TestClient, deps: Deps, http: aiohttp.ClientSession, google_user: str
) -> None:
    """A consent URL stripped of `openid` yields no id_token: 502 no_id_token, no account."""
    _, started = await _start(api, ALL)
    url = started["url"].replace("scope=openid%20email%20", "scope=")
    assert "openid" not in url
    status, body = await _callback(api, await consent(http, url, TICK))
    assert (status, body["error"]) == (502, "no_id_token")
    assert await _counts(deps) == (0, {})


async def test_security_events_find_an_account_connected_through_consent(
    api: TestClient, deps: Deps, emulator: Emulator, http: aiohttp.ClientSession,
    google_user: str
) -> None:
    """tokens-revoked naming the Google account by `sub` erases the account its consent
    created: the verified id_token is what makes Cross-Account Protection reach it."""
    _, body = await _connect(api, http, ALL, TICK)
    async with api.session.post(f"{emulator.url}/_emulator/risc/send", json={
            "receiver": str(api.make_url("/webhooks/google/risc")), "user": google_user,
            "event": "oauth/event-type/tokens-revoked"}) as resp:
        assert (await resp.json())["status"] == 202
    assert (await _account(deps, body["account_id"])).status != "active"
