"""Pub/Sub push authenticated as Google does it: each Gmail push carries an ID token that
Google signed for the configured audience and service account; anything else is a 4xx
that queues nothing (issue 11 item 4)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric import rsa

from gwsync.core.settings import ConfigError, Settings
from gwsync.emulator import pubsub_oidc, signing
from gwsync.emulator.mailbox import add_gmail_user, mailbox
from gwsync.emulator.push import push_of, subscribe
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator, RunWorker
from tests.helpers import connect
from tests.push_support import PUSH_TOKEN, SUBSCRIPTION, TOPIC, pubsub_body, pushing, until

__all__ = ["pushing"]
EMAIL = "olive@example.com"
AUDIENCE = "https://gwsync.example.com/webhooks/google/gmail"
SENDER = "pubsub-push@demo-project.iam.gserviceaccount.com"
URL = "/webhooks/google/gmail"


@pytest.fixture
def oidc(pushing: Settings, api: TestClient, emulator: Emulator) -> Settings:
    """Push authenticated by OIDC: the settings name the audience and service account,
    and the emulator's subscription signs each push for them (no token in its URL)."""
    pushing.push_oidc_audience = AUDIENCE
    pushing.push_oidc_email = SENDER
    subscribe(emulator.state, TOPIC, SUBSCRIPTION, str(api.make_url(URL)),
              oidc_email=SENDER, oidc_audience=AUDIENCE)
    return pushing


def _signed(emulator: Emulator, key: Any = None, **changes: Any) -> str:
    """An ID token like Pub/Sub's, with `changes` to its claims, signed by `key` (the
    emulator's Google key by default) under the emulator's key id."""
    keys, now = signing.keys(), int(time.time())
    claims = {"iss": pubsub_oidc.ISSUER, "aud": AUDIENCE, "email": SENDER,
              "email_verified": True, "sub": "1", "iat": now, "exp": now + 600, **changes}
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key or keys.key, algorithm="RS256", headers={"kid": keys.kid})


async def _watched(api: TestClient, emulator: Emulator, run_worker: RunWorker) -> str:
    grant = add_gmail_user(emulator.state, EMAIL, 1)
    account_id = await connect(api, grant.refresh_token)
    await run_worker()
    return account_id


async def test_a_push_signed_by_google_is_acted_on(
        api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker,
        oidc: Settings) -> None:
    """The emulator's Pub/Sub pushes a new message with its ID token: accepted, the sync
    is queued, and the push's URL carries no secret."""
    account_id = await _watched(api, emulator, run_worker)
    mailbox(emulator.state, EMAIL).add({"Subject": "Signed"}, "text", 1_700_000_000_000)
    await until(lambda: deps.queue.queued_jobs(account_id))
    # The emulator records a delivery once its answer is back, which may be after the
    # web has queued the sync: wait for the record rather than racing it.
    gmail = await until(lambda: [
        d for d in push_of(emulator.state).deliveries if d["api"] == "gmail"])
    assert {d["status"] for d in gmail} == {200}
    assert "token=" not in push_of(emulator.state).subscriptions[TOPIC].endpoint


async def test_a_deployment_with_oidc_and_no_url_token_watches_the_mailbox(
        api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker,
        oidc: Settings) -> None:
    """OIDC is the way to authenticate pushes, so no `GWSYNC_PUSH_TOKEN` is needed: the
    first sync still opens the Gmail watch, and a new message's push queues a sync."""
    oidc.push_token = None
    account_id = await _watched(api, emulator, run_worker)
    assert [w for w in push_of(emulator.state).active() if w["api"] == "gmail"]
    mailbox(emulator.state, EMAIL).add({"Subject": "No URL token"}, "text", 1_700_000_000_000)
    await until(lambda: deps.queue.queued_jobs(account_id))


async def test_forged_unsigned_foreign_or_expired_tokens_are_refused(
        api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker,
        oidc: Settings) -> None:
    """Each bad token gets a 4xx with a machine-readable error and queues nothing — the
    URL token too, which no longer opens the endpoint once OIDC is configured."""
    account_id = await _watched(api, emulator, run_worker)
    body = pubsub_body(EMAIL, mailbox(emulator.state, EMAIL).history_id + 100)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    unsigned = jwt.encode({"iss": pubsub_oidc.ISSUER, "aud": AUDIENCE, "email": SENDER,
                           "email_verified": True, "iat": now, "exp": now + 600},
                          None, algorithm="none")
    cases = {
        "no header": ({}, 401),
        "URL token only": ({"url": f"{URL}?token={PUSH_TOKEN}"}, 401),
        "unsigned": ({"token": unsigned}, 401),
        "forged": ({"token": _signed(emulator, other_key)}, 401),
        "wrong audience": ({"token": _signed(emulator, aud="https://elsewhere.example")}, 401),
        "expired": ({"token": _signed(emulator, iat=now - 7200, exp=now - 3600)}, 401),
        "no expiry": ({"token": _signed(emulator, exp=None)}, 401),
        "not Google's issuer": ({"token": _signed(emulator, iss="https://evil.example")}, 401),
        "another service account": ({"token": _signed(emulator, email="x@evil.example")}, 403),
        "unverified email": ({"token": _signed(emulator, email_verified=False)}, 403),
        "basic scheme": ({"header": "Basic " + _signed(emulator)}, 401),
    }
    for name, (case, status) in cases.items():
        header = case.get("header") or (f"Bearer {case['token']}" if "token" in case else None)
        resp = await api.post(case.get("url", URL), json=body,
                              headers={"Authorization": header} if header else {})
        assert resp.status == status, name
        assert (await resp.json())["error"], name
    assert await deps.queue.queued_jobs(account_id) == []
    resp = await api.post(URL, json=body, headers={"Authorization": f"Bearer {_signed(emulator)}"})
    assert (await resp.json())["status"] == "queued"  # the genuine one does queue


async def test_keys_that_cannot_be_fetched_answer_503_and_fetched_keys_are_reused(
        api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker,
        oidc: Settings) -> None:
    """Google's certs endpoint failing gets a 503 (Pub/Sub retries it); once fetched, the
    keys serve later pushes without another fetch."""
    account_id = await _watched(api, emulator, run_worker)
    body = pubsub_body(EMAIL, mailbox(emulator.state, EMAIL).history_id + 100)
    headers = {"Authorization": f"Bearer {_signed(emulator)}"}
    emulator.state.add_fault("/oauth2/v1/certs", 500)
    resp = await api.post(URL, json=body, headers=headers)
    assert (resp.status, (await resp.json())["error"]) == (503, "push_keys_unavailable")
    assert await deps.queue.queued_jobs(account_id) == []
    assert (await api.post(URL, json=body, headers=headers)).status == 200
    emulator.state.add_fault("/oauth2/v1/certs", 500, count=100)
    assert (await api.post(URL, json=body, headers=headers)).status == 200


def test_half_an_oidc_configuration_refuses_to_start(settings: Settings) -> None:
    """An audience without a service account (or the reverse) would silently fall back
    to the URL token: the web process refuses to start, naming both variables."""
    for half in ({"push_oidc_audience": AUDIENCE}, {"push_oidc_email": SENDER}):
        with pytest.raises(ConfigError, match="GWSYNC_PUSH_OIDC_AUDIENCE"):
            settings.model_copy(update=half).require("web")
    settings.model_copy(update={"push_oidc_audience": AUDIENCE,
                                "push_oidc_email": SENDER}).require("web")
