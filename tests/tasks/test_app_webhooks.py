"""Webhooks to the main app: written with their change, signed, delivered at least once."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from gwsync.core.settings import Settings
from gwsync.core.timeutil import utcnow
from gwsync.domain.features import FEATURES
from gwsync.storage import accounts, outbox
from gwsync.storage.models import Account, AppWebhook
from gwsync.tasks import app_webhooks, enable, erase, recover
from gwsync.tasks.deps import Deps
from gwsync.tasks.sync import SyncRun
from gwsync.web.ops_metrics import exposition
from gwsync.worker.app import create_worker, worker_options
from tests.conftest import Emulator, RunWorker
from tests.consent_form import consent
from tests.erasure_proof import ErasureProof
from tests.helpers import (
    USER,
    client,
    close_worker,
    connect,
    eventually,
    run_gwsync,
    sync_again,
    sync_state,
    synced_user,
)
from tests.webhook_receiver import SECRET, Receiver, serve_receiver

CONTACTS = FEATURES["contacts"].scope
DRIVE = FEATURES["shared_files"].scope


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async for r in serve_receiver():
        yield r


@pytest.fixture
def settings(settings: Settings, receiver: Receiver) -> Settings:
    """The deployment, with the main app's webhook pointed at the test's receiver."""
    return settings.model_copy(update={
        "app_webhook_url": receiver.url, "app_webhook_secret": SecretStr(SECRET),
        "app_webhook_max_attempts": 3, "app_webhook_backoff_s": 60.0})


@pytest.fixture
def run_worker(run_worker: RunWorker, settings: Settings) -> RunWorker:
    """The burst worker without its delivery cron, so each test decides when to deliver."""
    crons = [c for c in worker_options(settings)["cron_jobs"]
             if not c.name.endswith(":deliver_app_webhooks")]

    async def run(**overrides: Any) -> Any:
        return await run_worker(cron_jobs=crons, **overrides)

    return run


async def events(deps: Deps) -> list[AppWebhook]:
    async with deps.sessions() as session:
        return list(await session.scalars(select(AppWebhook).order_by(AppWebhook.created_at)))


async def deliver(deps: Deps) -> dict[str, Any]:
    return await app_webhooks.deliver_app_webhooks({"deps": deps})


async def make_due(deps: Deps) -> None:
    """Skip the backoff wait: every pending event is due now."""
    async with deps.sessions.begin() as session:
        await session.execute(update(AppWebhook).where(AppWebhook.status == "pending")
                              .values(next_attempt_at=AppWebhook.created_at))


async def test_a_connected_account_is_announced_signed(
    api, deps: Deps, emulator: Emulator, receiver: Receiver
) -> None:
    """`account.connected` reaches the app with a signature `standardwebhooks` verifies."""
    grant = emulator.state.add_user("c@example.com", [], [CONTACTS])
    account_id = await connect(api, grant.refresh_token)
    assert (await deliver(deps))["delivered"] == 1
    [event] = receiver.verified
    assert event.webhook_id.startswith("msg_") and receiver.unsigned == 0
    assert event.body["type"] == "account.connected"
    assert (event.body["account_id"], event.body["user_id"]) == (account_id, USER)
    assert event.body["data"]["enabled_features"] == ["contacts"]
    assert "shared_files" in event.body["data"]["needs_permission"]
    assert await events(deps) == []  # delivered: gone from the outbox


async def test_nothing_is_written_without_a_webhook(
    api, deps: Deps, emulator: Emulator, receiver: Receiver
) -> None:
    """With no webhook configured, a connect writes no event and the cron sends nothing."""
    unset = deps.settings.model_copy(update={"app_webhook_url": None,
                                             "app_webhook_secret": None})
    opened = await Deps.open(unset)
    assert not opened.outbox.enabled
    await opened.close()
    plain = Deps(**{**deps.__dict__, "outbox": type(deps.outbox)(None)})
    grant = emulator.state.add_user("n@example.com", [], [CONTACTS])
    async with plain.sessions.begin() as session:
        account = await accounts.create(session, plain.keyring, user_id="u-n",
                                        refresh_token=grant.refresh_token,
                                        granted_scopes=frozenset({CONTACTS}))
        await enable.announce_connected(plain, session, account)
    assert await events(deps) == []
    assert (await deliver(plain)) == {"outcome": "disabled"} and receiver.attempts == []


async def test_delivery_is_retried_after_the_app_fails(
    api, deps: Deps, emulator: Emulator, receiver: Receiver
) -> None:
    """A 500 from the app keeps the event; a later try sends it again with the same id."""
    grant = emulator.state.add_user("r@example.com", [], [CONTACTS])
    await connect(api, grant.refresh_token)
    receiver.fail_next = 2
    assert (await deliver(deps))["retry"] == 1
    [waiting] = await events(deps)
    assert (waiting.status, waiting.attempts, waiting.last_error) == ("pending", 1, "http_500")
    assert (await deliver(deps)).get("retry") is None  # backing off: not due yet
    for _ in range(2):
        await make_due(deps)
        await deliver(deps)
    assert [status for _, status in receiver.attempts] == [500, 500, 204]
    assert len({webhook_id for webhook_id, _ in receiver.attempts}) == 1
    assert len(receiver.verified) == 1 and await events(deps) == []


async def test_an_event_is_given_up_after_the_retry_limit_and_shown_to_ops(
    api, deps: Deps, emulator: Emulator, receiver: Receiver
) -> None:
    """Past GWSYNC_APP_WEBHOOK_MAX_ATTEMPTS the event stops, keeps its sealed body (to be
    redelivered), and is counted."""
    grant = emulator.state.add_user("g@example.com", [], [CONTACTS])
    await connect(api, grant.refresh_token)
    receiver.fail_next = -1
    outcomes = []
    for _ in range(5):
        await make_due(deps)
        outcomes.append(await deliver(deps))
    assert [o.get("retry", 0) + o.get("given_up", 0) for o in outcomes] == [1, 1, 1, 0, 0]
    assert len(receiver.attempts) == 3
    [dead] = await events(deps)
    assert (dead.status, dead.attempts) == ("failed", 3) and dead.body_ciphertext is not None
    snap = await deps.snapshot()
    assert snap.app_webhooks == {"failed": {"account.connected": 1}}
    text = exposition(snap).decode()
    assert 'gwsync_app_webhooks_undelivered{kind="account.connected",status="failed"} 1.0' in text
    admin = deps.settings.admin_token.get_secret_value()
    resp = await api.get("/ops", headers={"Authorization": f"Bearer {admin}"})
    assert 'data-metric="app_webhooks_failed">1<' in await resp.text()


async def _given_up(api: TestClient, deps: Deps, emulator: Emulator, receiver: Receiver,
                    email: str) -> AppWebhook:
    """Connect an account and fail its `account.connected` until it is given up."""
    grant = emulator.state.add_user(email, [], [CONTACTS])
    await connect(api, grant.refresh_token, f"user-{email}")
    receiver.fail_next = -1
    for _ in range(3):
        await make_due(deps)
        await deliver(deps)
    receiver.fail_next = 0
    [dead] = [e for e in await events(deps) if e.status == "failed"
              and outbox.body_of(deps.keyring, e).find(f"user-{email}") > 0]
    return dead




async def test_a_given_up_event_is_redelivered_by_the_cli_and_counted_by_status(
    api: TestClient, deps: Deps, emulator: Emulator, receiver: Receiver, settings: Settings
) -> None:
    """`gwsync status` counts a given-up event; `gwsync webhooks redeliver --id` queues it
    again, and the next delivery sends it, signed, with its original webhook-id."""
    dead = await _given_up(api, deps, emulator, receiver, "back@example.com")
    code, out, err = await run_gwsync(settings, "status")
    assert code == 0, err
    assert re.search(r"app webhooks given up\W+1\b", out), out
    code, out, err = await run_gwsync(settings, "webhooks", "redeliver", "--id", dead.id)
    assert (code, out.strip()) == (0, "queued 1 given-up webhook(s) for delivery"), err
    code, out, _ = await run_gwsync(settings, "status")
    assert re.search(r"app webhooks pending\W+1\b", out) and re.search(
        r"app webhooks given up\W+0\b", out), out
    assert (await deliver(deps))["delivered"] == 1
    assert [e.webhook_id for e in receiver.verified] == [dead.id]
    assert receiver.verified[0].body["type"] == "account.connected"
    assert await events(deps) == []


async def test_redeliver_since_chooses_by_time_and_cannot_send_a_dropped_body(
    api: TestClient, deps: Deps, emulator: Emulator, receiver: Receiver, settings: Settings
) -> None:
    """`--since` queues only events written since then; an event past
    GWSYNC_APP_WEBHOOK_KEEP_FAILED_S lost its body to the retention sweep and is reported
    as too old, exit 1."""
    old = await _given_up(api, deps, emulator, receiver, "old@example.com")
    new = await _given_up(api, deps, emulator, receiver, "new@example.com")
    week_ago = utcnow() - timedelta(days=8)
    async with deps.sessions.begin() as session:
        await session.execute(update(AppWebhook).where(AppWebhook.id == old.id)
                              .values(created_at=week_ago))
    code, out, err = await run_gwsync(settings, "webhooks", "redeliver", "--since",
                                  (week_ago + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert (code, out.strip()) == (0, "queued 1 given-up webhook(s) for delivery"), err
    assert {e.id: e.status for e in await events(deps)} == {old.id: "failed", new.id: "pending"}
    await recover.sweep_retention({"deps": deps})  # the keep window (7 days) is over for `old`
    [kept] = [e for e in await events(deps) if e.id == old.id]
    assert kept.body_ciphertext is None and kept.status == "failed"
    code, out, _ = await run_gwsync(settings, "webhooks", "redeliver", "--id", old.id)
    assert code == 1 and "1 too old to send" in out
    code, _, err = await run_gwsync(settings, "webhooks", "redeliver")
    assert code == 2 and "--since" in err


async def test_a_sync_is_announced_with_counts_only(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker, receiver: Receiver
) -> None:
    """`sync.completed` names the feature and counts — no contact's name or resource id."""
    grant, account_id = await synced_user(api, emulator.state, run_worker, 4,
                                          marker="Zanzibar-Marker")
    await deliver(deps)
    done_by_feature = {e["data"]["feature"]: e for e in receiver.of_type("sync.completed")}
    done = done_by_feature["contacts"]
    assert (done["account_id"], done["user_id"]) == (account_id, USER)
    assert done["data"] == {"feature": "contacts", "mode": "full", "records_upserted": 4,
                            "records_removed": 0, "records_held": 4}
    raw = " ".join(d.raw for d in receiver.verified)
    assert "Zanzibar" not in raw and "people/" not in raw and "@" not in raw


async def test_a_fenced_sync_writes_no_event(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker, receiver: Receiver
) -> None:
    """A state change that fails (the account moved on, its commit refused) takes its event
    with it, and an event that cannot commit takes its change."""
    grant, account_id = await synced_user(api, emulator.state, run_worker, 2)
    await deliver(deps)
    receiver.verified.clear()
    stale = SyncRun(deps, account_id, FEATURES["contacts"], generation=0, job_try=1)
    with pytest.raises(accounts.FencedError):
        await stale._set_state(status="ok", announce=("sync.completed", {"mode": "full"}))
    assert await events(deps) == []
    current = SyncRun(deps, account_id, FEATURES["contacts"], generation=1, job_try=1)

    def refuse_commit(session: Session) -> None:
        if any(isinstance(o, AppWebhook) for o in session.new):
            raise RuntimeError("commit refused")

    event.listen(Session, "before_commit", refuse_commit)
    try:
        with pytest.raises(RuntimeError, match="commit refused"):
            await current._set_state(status="error", announce=("sync.completed", {}))
    finally:
        event.remove(Session, "before_commit", refuse_commit)
    assert await events(deps) == [] and (await sync_state(deps, account_id)).status == "ok"
    await current._set_state(status="ok", announce=("sync.completed", {"mode": "full"}))
    assert [e.type for e in await events(deps)] == ["sync.completed"]


async def test_a_lost_permission_is_announced_once(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker, receiver: Receiver
) -> None:
    """A scope withdrawn at Google: `feature.needs_permission`, then the features' erasure."""
    grant = emulator.state.add_user("p@example.com", [{"names": [{"displayName": "A"}]}],
                                    [CONTACTS, DRIVE])
    account_id = await connect(api, grant.refresh_token)
    await run_worker()
    emulator.state.withdraw_scopes(grant.refresh_token, [CONTACTS])
    assert await deps.queue.enqueue_sync(account_id, "contacts", 1)
    await run_worker()
    await deliver(deps)
    [lost] = receiver.of_type("feature.needs_permission")
    assert lost["data"] == {"feature": "contacts", "scope": CONTACTS}
    assert (lost["account_id"], lost["user_id"]) == (account_id, USER)
    [verified] = receiver.of_type("erasure.verified")
    assert verified["data"] == {"trigger": "scope_withdrawn", "whole_account": False,
                                "features": ["contacts"]}
    await sync_again(deps, account_id, "contacts", run_worker)  # skipped: scope not granted
    await deliver(deps)
    assert len(receiver.of_type("feature.needs_permission")) == 1


async def test_a_revocation_at_google_is_announced_then_its_erasure_verified(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker, receiver: Receiver
) -> None:
    """Revoked at the emulator: `account.revoked`, then `erasure.verified` with the same
    erasure id; the retained events keep no identifier in clear, so the proof still holds."""
    grant, account_id = await synced_user(api, emulator.state, run_worker, 3,
                                          marker="Revoked-Marker")
    await deliver(deps)
    proof = await ErasureProof.capture(deps, account_id, marker="Revoked-Marker")
    emulator.state.revoke_user(grant.user)
    await sync_again(deps, account_id, "contacts", run_worker)
    async with deps.sessions() as session:
        account = await session.get(Account, account_id)
    assert account.status == "erased"
    # Undelivered yet: both events survive the erasure, sealed, naming nobody in clear.
    assert sorted(e.type for e in await events(deps)) == ["account.revoked", "erasure.verified"]
    await proof.assert_erased()
    await deliver(deps)
    revoked, verified = receiver.verified[-2:]
    assert [revoked.body["type"], verified.body["type"]] == ["account.revoked",
                                                             "erasure.verified"]
    assert revoked.body["erasure_id"] == verified.body["erasure_id"]
    assert {revoked.body["user_id"], verified.body["user_id"]} == {USER}
    assert revoked.body["data"] == {"reason": "invalid_grant"}
    assert verified.body["data"] == {"trigger": "invalid_grant", "whole_account": True}
    gw = client(api)  # what the app sees, through the client only
    status = await gw.status(account_id, verified.body["user_id"])
    assert [(e.erasure_id, e.trigger) for e in status.erasures] == [
        (verified.body["erasure_id"], "invalid_grant")]
    answer = await gw.erasure(verified.body["erasure_id"], verified.body["user_id"])
    receipt = answer.receipt
    assert answer.status == "verified" and receipt.verification["ok"]
    assert receipt.verification["remaining"]["app_webhooks"] == 0
    assert await events(deps) == []


async def test_an_erasure_drops_the_accounts_other_events(
    api, deps: Deps, emulator: Emulator, run_worker: RunWorker, receiver: Receiver
) -> None:
    """Undelivered events of an erased account go with it, but the erasure's own."""
    grant, account_id = await synced_user(api, emulator.state, run_worker, 2)
    receiver.fail_next = -1
    await deliver(deps)
    assert {e.type for e in await events(deps)} == {"account.connected", "sync.completed"}
    erasure_id, began = await erase.disconnect(deps, account_id, accounts.subject_hash(USER))
    assert began
    [held] = [e for e in await events(deps) if e.type == "erasure.verified"]
    assert held.status == "held"
    await make_due(deps)
    await deliver(deps)
    assert held.id not in {i for i, _ in receiver.attempts}  # not before it is verified
    await run_worker()
    left = await events(deps)
    assert [(e.type, e.erasure_id, e.status) for e in left] == [
        ("erasure.verified", erasure_id, "pending")]
    receiver.fail_next = 0
    await make_due(deps)
    await deliver(deps)
    assert receiver.types()[-1:] == ["erasure.verified"]


async def test_the_worker_delivers_on_its_own(
    api, deps: Deps, settings: Settings, emulator: Emulator, receiver: Receiver
) -> None:
    """The worker's cron sends what the outbox holds, without being asked."""
    grant = emulator.state.add_user("w@example.com", [], [CONTACTS])
    await connect(api, grant.refresh_token)
    worker = create_worker(settings, handle_signals=False, poll_delay=0.05)
    running = asyncio.ensure_future(worker.async_run())
    try:
        await eventually(lambda: _has(receiver, "account.connected"), within_s=10)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await close_worker(worker)


async def _has(receiver: Receiver, type_: str) -> bool:
    return bool(receiver.of_type(type_))


async def test_a_consent_for_a_new_user_is_announced(
    api, deps: Deps, emulator: Emulator, receiver: Receiver
) -> None:
    """The consent callback that creates an account announces it like `POST /v1/accounts`."""
    emulator.state.add_user("consent@example.com", [{"names": [{"displayName": "Ann"}]}])
    resp = await api.get("/v1/oauth/start", params={
        "user_id": "app-user-7", "features": "contacts,shared_files",
        "redirect_uri": "https://app.example/google/done"})
    started = await resp.json()
    async with aiohttp.ClientSession() as http:
        redirect = await consent(http, started["url"], [CONTACTS])
    answer = await api.get("/v1/oauth/callback", params={"user_id": "app-user-7", **redirect})
    assert answer.status == 201, await answer.text()
    await deliver(deps)
    [connected] = receiver.of_type("account.connected")
    assert (connected["account_id"], connected["user_id"]) == (
        (await answer.json())["account_id"], "app-user-7")
    assert connected["data"]["enabled_features"] == ["contacts"]
