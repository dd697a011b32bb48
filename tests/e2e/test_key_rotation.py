"""Rotating the master key online: nothing fails meanwhile, and the old key ends up unused."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from sqlalchemy import select

from gwsync.core.keyring import DecryptionError, Keyring, LocalKeyWrapper, MasterKey
from gwsync.core.settings import Settings
from gwsync.emulator.seed import fake_contact, seed_demo_user
from gwsync.storage import crypto, purge, rotation
from gwsync.storage.models import Account, DataKey, Erasure, FeatureKey, PseudonymKey
from gwsync.tasks.deps import Deps
from gwsync.web.app import create_app
from gwsync.worker.app import create_worker
from tests.conftest import API_TOKEN, MASTER_KEY, Emulator, RunWorker
from tests.helpers import USER, Background, close_worker, connect

NEW_KEY = base64.b64encode(secrets.token_bytes(32)).decode()


def _with_keys(settings: Settings, **keys: Any) -> Settings:
    """The deployment's settings with another keyring."""
    values = {k: v for k, v in settings.model_dump().items() if k != "port"}
    return Settings(**{**values, **keys})


async def _read_all(api: TestClient, account_ids: list[str]) -> list[int]:
    statuses = []
    for account_id in account_ids:
        resp = await api.get(f"/v1/accounts/{account_id}/records",
                             params={"user_id": USER, "use": "feature:contacts"})
        statuses.append(resp.status)
    return statuses


async def _sealed_grant(deps: Deps, account_id: str) -> str:
    """An erasure begun but whose grant is still to revoke (sealed under the old key)."""
    async with deps.sessions.begin() as session:
        account = await session.get(Account, account_id)
        assert account is not None
        erasure = await purge.begin(session, deps.keyring, [account], subject_hash="s",
                                    trigger="disconnect")
    return erasure.id


async def run_worker_with(settings: Settings) -> Any:
    """A burst worker of a deployment with these settings, until its queue is empty."""
    worker = create_worker(settings, burst=True, poll_delay=0.05, handle_signals=False)
    try:
        await worker.async_run()
    finally:
        await close_worker(worker)
    return worker


async def _assert_old_key_opens_nothing(deps: Deps, old_key: str, old_id: str) -> None:
    """Every wrapped or sealed row names the new key, and the old key opens none of them."""
    old = Keyring(LocalKeyWrapper([MasterKey(old_id, base64.b64decode(old_key))]))
    async with deps.sessions() as session:
        wrapped = [(k.account_id, crypto.ACCOUNT, k.master_key_id, k.wrapped_key)
                   for k in await session.scalars(select(DataKey))]
        wrapped += [(k.account_id, k.feature, k.master_key_id, k.wrapped_key)
                    for k in await session.scalars(select(FeatureKey))]
        pseudonym = await session.scalar(select(PseudonymKey))
        sealed = [(e.id, e.revoke_ciphertext) for e in await session.scalars(
            select(Erasure).where(Erasure.revoke_ciphertext.is_not(None)))]
    assert wrapped and pseudonym is not None and sealed
    assert {k for _, _, k, _ in wrapped} == {"new"} and pseudonym.master_key_id == "new"
    for account_id, purpose, _, blob in wrapped:
        for key_id in (old_id, None):  # under its subkey, or raw as before keyrings
            with pytest.raises(DecryptionError):
                crypto.unwrap_key(old, account_id, purpose, key_id, blob)
    with pytest.raises(DecryptionError):
        old.wrapper.unwrap(old_id, "wrap", pseudonym.wrapped_key,
                           f"pseudonym-key:{pseudonym.key_id}".encode())
    for erasure_id, blob in sealed:
        assert blob is not None
        with pytest.raises(DecryptionError):
            old.unseal(f"revoke:{erasure_id}", blob)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_rotating_under_load_fails_nothing_and_retires_the_old_key(
    settings: Settings, deps: Deps, api: TestClient, emulator: Emulator, run_worker: RunWorker,
) -> None:
    """With web and worker on the ring (new, old): a rotation in batches of one beside
    syncs that write and reads that decrypt fails neither; afterwards no row is under the
    old key, the old key opens nothing, and a deployment with the new key alone reads,
    syncs and erases."""
    grants = [seed_demo_user(emulator.state, 9, marker=f"Rot{n}Mark",
                             email=f"rot{n}@example.com") for n in range(4)]
    users = [(g, await connect(api, g.refresh_token)) for g in grants]
    await run_worker()
    (doomed_grant, doomed), users = users[-1], users[:-1]
    account_ids = [a for _, a in users]
    erasure_id = await _sealed_grant(deps, doomed)
    old_id = deps.keyring.primary_id

    both = _with_keys(settings, encryption_keys=SecretStr(f"new:{NEW_KEY}"))
    deps2 = await Deps.open(both)
    web2 = TestClient(TestServer(create_app(deps2)),
                      headers={"Authorization": f"Bearer {API_TOKEN}"})
    await web2.start_server()
    try:
        assert deps2.keyring.key_ids == ("new", old_id)
        for n, (grant, account_id) in enumerate(users):
            emulator.state.add_contacts(grant.user, [fake_contact(100 + i) for i in range(7)])
            resp = await web2.post(f"/v1/accounts/{account_id}/sync", params={"user_id": USER},
                                   json={"features": ["contacts"]})
            assert resp.status == 202, n
        worker = create_worker(both, burst=True, poll_delay=0.01, handle_signals=False)
        reads: list[int] = []
        during = 0
        async with Background() as bg:
            running = bg.start(worker.async_run())
            rotating = bg.start(rotation.rotate(deps2.sessions, deps2.keyring, batch=1))
            while not (running.done() and rotating.done()):
                # A round counts as during the rotation if the rotation had not ended when
                # it began: under load one round can outlast a small rotation.
                overlapping = not rotating.done()
                reads += await _read_all(web2, account_ids)
                during += len(account_ids) if overlapping else 0
            report = await rotating
        await close_worker(worker)
        assert set(reads) == {200} and during > 0
        assert worker.jobs_failed == 0 and worker.jobs_complete >= len(account_ids)
        assert report.failed == [] and report.rewrapped["data_keys"] >= len(account_ids)
        assert old_id not in report.usage
    finally:
        await web2.close()
        await deps2.close()

    await _assert_old_key_opens_nothing(deps, MASTER_KEY, old_id)
    alone = _with_keys(settings, encryption_key=None, encryption_keys=SecretStr(f"new:{NEW_KEY}"))
    deps3 = await Deps.open(alone)
    web3 = TestClient(TestServer(create_app(deps3)),
                      headers={"Authorization": f"Bearer {API_TOKEN}"})
    await web3.start_server()
    try:
        assert deps3.keyring.key_ids == ("new",)
        for n, account_id in enumerate(account_ids):
            resp = await web3.get(f"/v1/accounts/{account_id}/records",
                                  params={"user_id": USER, "use": "feature:contacts",
                                          "limit": 100})
            assert resp.status == 200
            body = await resp.json()
            assert len(body["records"]) == 16
            assert any(f"Rot{n}Mark" in str(i["content"]) for i in body["records"])
        resp = await web3.post(f"/v1/accounts/{account_ids[0]}/sync", params={"user_id": USER})
        assert resp.status == 202
        assert (await run_worker_with(alone)).jobs_failed == 0
        async with deps3.sessions() as session:
            erasure = await session.get(Erasure, erasure_id)
            assert erasure is not None
        assert purge.sealed_tokens(deps3.keyring, erasure) == [doomed_grant.refresh_token]
        resp = await web3.delete(f"/v1/accounts/{account_ids[1]}", params={"user_id": USER})
        assert resp.status == 202
        assert (await run_worker_with(alone)).jobs_failed == 0
    finally:
        await web3.close()
        await deps3.close()
