"""`/metrics` after real work: the numbers agree with the database and Redis, and no label
carries an identifier."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from gwsync.core import metrics
from gwsync.storage.models import AccessLog, Account, Record, is_source_record
from gwsync.tasks.deps import Deps
from tests.conftest import ADMIN, ADMIN_TOKEN, API_TOKEN, MASTER_KEY, Emulator, RunWorker
from tests.helpers import USER, synced_user

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

#: The only label names a gwsync metric may use: each holds values from a closed set.
#: `use` holds only named uses (`storage.purpose.metric_label`); anything else is `unknown`.
ALLOWED_LABELS = {"route", "status", "kind", "decision", "task", "outcome", "reason", "api",
                  "method", "feature", "category", "state", "queue", "le", "use"}


async def test_metrics_need_the_admin_token(api: TestClient) -> None:
    """Fleet sizes and error rates are for staff: no token, or the app's, is refused."""
    assert (await api.get("/metrics", headers={"Authorization": ""})).status == 401
    refused = await api.get("/metrics")  # the client presets the app's API token
    assert refused.status == 401 and (await refused.json())["error"] == "unauthorized"
    assert (await api.get("/metrics", headers=ADMIN)).status == 200


async def scrape(api: TestClient) -> Samples:
    resp = await api.get("/metrics", headers=ADMIN)
    assert resp.status == 200
    text = await resp.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def counter(name: str, **labels: str) -> float:
    """The current value of a counter in this process's registry (0 when never bumped)."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def _db_count(deps: Deps, query: Any) -> int:
    async with deps.sessions() as session:
        return int(await session.scalar(query) or 0)


async def test_metrics_agree_with_the_database_after_a_sync_and_a_refusal(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """After a sync and a refused read, records, accounts, refusals and job counts match."""
    synced_before = counter("gwsync_records_synced_total", feature="contacts")
    ok_before = counter("gwsync_jobs_total", task="sync_feature", outcome="ok")
    calls_before = counter("gwsync_google_api_calls_total", api="people",
                           method="people.people.connections.list", status="ok")
    _grant, account_id = await synced_user(api, emulator.state, run_worker, 7)
    refused = await api.get(f"/v1/accounts/{account_id}/records",
                            params={"user_id": USER, "use": "ai_training"})
    assert refused.status == 403
    samples = await scrape(api)

    stored = await _db_count(deps, select(func.count()).select_from(Record)
                             .where(Record.feature == "contacts", is_source_record()))
    assert stored == 7
    assert value(samples, "gwsync_records_stored", feature="contacts") == stored
    assert counter("gwsync_records_synced_total", feature="contacts") - synced_before == 7
    assert value(samples, "gwsync_accounts", status="active") == await _db_count(
        deps, select(func.count()).select_from(Account).where(Account.status == "active"))
    assert value(samples, "gwsync_refused_reads_24h", kind="forbidden") == await _db_count(
        deps, select(func.count()).select_from(AccessLog)
        .where(AccessLog.decision == "refused")) == 1
    assert counter("gwsync_jobs_total", task="sync_feature", outcome="ok") - ok_before >= 1
    # page size 3: 7 contacts take 3 pages, each one call to people.connections.list
    assert counter("gwsync_google_api_calls_total", api="people",
                   method="people.people.connections.list", status="ok") - calls_before == 3
    assert value(samples, "gwsync_ops_snapshot_up") == 1


async def test_queue_gauges_agree_with_redis(api: TestClient, deps: Deps,
                                            emulator: Emulator) -> None:
    """Jobs queued but not yet run show as the queue depth, which is the queue's ZCARD."""
    from gwsync.emulator.seed import seed_demo_user
    from tests.helpers import connect

    await connect(api, seed_demo_user(emulator.state, 2).refresh_token)
    samples = await scrape(api)
    depth = await deps.queue.redis.zcard(deps.queue.queue_name)
    assert depth >= 1
    assert value(samples, "gwsync_queue_depth", queue=deps.queue.queue_name) == depth
    assert value(samples, "gwsync_jobs_in_progress", queue=deps.queue.queue_name) == 0
    assert value(samples, "gwsync_syncs_behind_schedule", feature="contacts") == 1


async def test_erasure_metrics_follow_the_erasure(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """A pending erasure is counted with its age; once verified, its duration is observed."""
    _grant, account_id = await synced_user(api, emulator.state, run_worker, 2)
    observed = counter("gwsync_erasure_duration_seconds_count")
    resp = await api.delete(f"/v1/accounts/{account_id}", params={"user_id": USER})
    assert resp.status == 202
    pending = await scrape(api)
    unverified = {labels: v for (name, labels), v in pending.items()
                  if name == "gwsync_erasures" and ("state", "verified") not in labels}
    assert sum(unverified.values()) == 1
    assert value(pending, "gwsync_erasure_oldest_pending_seconds") >= 0
    await run_worker()
    done = await scrape(api)
    assert value(done, "gwsync_erasures", state="verified") == 1
    assert sum(v for (name, labels), v in done.items()
               if name == "gwsync_erasures" and ("state", "verified") not in labels) == 0
    assert value(done, "gwsync_erasures_overdue") == 0
    assert counter("gwsync_erasure_duration_seconds_count") - observed == 1
    assert counter("gwsync_jobs_total", task="erase", outcome="verified") >= 1


async def test_no_label_holds_an_identifier(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """After connect, sync, refusals and an erasure, no label names an id, email or token."""
    grant, account_id = await synced_user(api, emulator.state, run_worker, 3)
    records, mine = f"/v1/accounts/{account_id}/records", {"user_id": USER}
    await api.get(records, params={**mine, "use": f"sell-to:{grant.refresh_token}"})
    await api.get(records, params={**mine, "use": "feature:contacts"})
    await api.delete(f"/v1/accounts/{account_id}", params=mine)
    await run_worker()
    samples = await scrape(api)
    assert ("gwsync_purpose_decisions_total", (("decision", "refused"), ("kind", "unknown"),
                                               ("use", "unknown"))) in samples
    secrets = {account_id, "user-42", grant.refresh_token, API_TOKEN, ADMIN_TOKEN, MASTER_KEY}
    for name, labels in samples:
        for label, label_value in labels:
            assert label in ALLOWED_LABELS, (name, label)
            assert "@" not in label_value, (name, label_value)
            assert not any(s in label_value for s in secrets), (name, label, label_value)
