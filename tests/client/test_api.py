"""`gwsync.client.Client` drives the whole `/v1` API with typed answers, and turns every
refusal into an `ApiError` carrying gwsync's error code."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gwsync.client import ApiError, Client
from gwsync.domain.features import FEATURES
from gwsync.emulator.seed import seed_demo_user
from tests.conftest import REDIRECT_URIS, Emulator, RunWorker
from tests.consent_form import consent
from tests.helpers import USER, client


async def test_consent_start_and_callback_connect_the_user(
    api: TestClient, emulator: Emulator, run_worker: RunWorker
) -> None:
    """start_consent gives the consent URL; finish_consent (naming the user) creates the
    account with the ticked features enabled; status reports them after the first syncs."""
    emulator.state.add_user("client@example.com", [{"names": [{"displayName": "Ann"}]}])
    gw = client(api)
    started = await gw.start_consent(USER, ["contacts"], REDIRECT_URIS[0])
    assert started.url and not started.already_granted
    assert started.scopes == [FEATURES["contacts"].scope]
    async with aiohttp.ClientSession() as http:
        redirect = await consent(http, started.url, started.scopes, user="client@example.com")
    connected = await gw.finish_consent(USER, state=redirect["state"], code=redirect["code"])
    assert connected.features["contacts"].enabled
    assert connected.syncs_queued == ["contacts"]
    await run_worker()
    status = await gw.status(connected.account_id, USER)
    assert (status.status, status.features["contacts"].status) == ("active", "ok")
    again = await gw.start_consent(USER, ["contacts"], REDIRECT_URIS[0])
    assert again.already_granted and again.url is None


async def test_sync_counts_and_access_log(
    api: TestClient, emulator: Emulator, run_worker: RunWorker
) -> None:
    """sync queues the covered features and skips the rest; counts never carry contents; the
    access log pages list every read, the refused one included."""
    gw = client(api)
    grant = seed_demo_user(emulator.state, 3, scopes=(FEATURES["contacts"].scope,))
    account_id = (await gw.connect(USER, grant.refresh_token)).account_id
    await run_worker()
    queued = await gw.sync(account_id, USER, ["contacts", "mail_activity"])
    assert (queued.queued, queued.skipped) == (["contacts"], ["mail_activity"])
    assert (await gw.counts(account_id, USER)).counts == {"contacts": 3}
    with pytest.raises(ApiError):
        await anext(gw.read(account_id, USER, use="advertising"))
    entries = [e async for page in gw.access_log(account_id, USER) for e in page.entries]
    assert [(e.use, e.decision) for e in entries] == [
        ("advertising", "refused"), ("aggregate_ops", "allowed")]


async def test_erase_user_and_its_receipt(
    api: TestClient, emulator: Emulator, run_worker: RunWorker
) -> None:
    """erase_user begins one erasure of every account; erasure reads its verified receipt."""
    gw = client(api)
    grant = seed_demo_user(emulator.state, 2)
    account_id = (await gw.connect(USER, grant.refresh_token)).account_id
    begun = await gw.erase_user(USER)
    await run_worker()
    answer = await gw.erasure(begun.erasure_id, USER)
    assert (answer.status, answer.receipt.trigger) == ("verified", "user_request")
    assert answer.receipt.verification["ok"] is True
    entries = (await gw.status(account_id, USER)).erasures
    assert [(e.erasure_id, e.trigger) for e in entries] == [(begun.erasure_id, "user_request")]


async def test_refusals_raise_api_error_with_the_code(api: TestClient) -> None:
    """An unknown account, another user's view, a bad token: ApiError with gwsync's error;
    an id with a slash is one path segment, never another route."""
    gw = client(api)
    with pytest.raises(ApiError) as unknown:
        await gw.status("no-such-account", USER)
    assert (unknown.value.status, unknown.value.error) == (404, "unknown_account")
    with pytest.raises(ApiError) as slashed:
        await gw.disconnect("x/sync", USER)
    assert slashed.value.status == 404
    async with Client(str(api.make_url("")), "not-the-token") as stranger:
        with pytest.raises(ApiError) as refused:
            await stranger.erase_user(USER)
        assert (refused.value.status, refused.value.error) == (401, "unauthorized")
        assert await stranger.ready()  # readiness is public
