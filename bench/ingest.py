"""Ingest: records per second of one worker process, against the plain way.

Ours is the real path: a `gwsync worker` process runs a mail_activity full sync
(messages.list pages, messages.get through Gmail's batch endpoint, one fenced bulk
upsert of encrypted rows per page). The baseline runs in the bench process the way a
first version usually looks: google-api-python-client `messages.list`, then
`messages.get` one after another, and one ORM insert and commit per record — with the
same headers stored, as plaintext JSON (no encryption: the baseline gets that for free).
Both read the same number of messages from the same emulator into the same database.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from bench.gmail_fetch import all_message_ids
from bench.harness import Deployment, mail_scope, peak_rss_mb
from bench.report import Row
from gwsync.connectors import client, oauth
from gwsync.connectors.gmail import HEADERS
from gwsync.core.timeutil import utcnow
from gwsync.domain import features
from gwsync.storage.models import Record

NAME = "ingest"


async def ours(dep: Deployment, n: int) -> tuple[float, float]:
    """A full sync of `n` messages by a fresh worker → (records/s, worker peak RSS MB)."""
    _, token = await dep.emulator.gmail_user(n)
    account_id = await dep.connect(token, mail_scope())
    worker = await dep.start_worker()
    try:
        state = await dep.sync(account_id, "mail_activity")
        rss = peak_rss_mb(worker.pid)
    finally:
        await dep.stop_workers()
    assert state.started_at and state.last_synced_at
    seconds = (state.last_synced_at - state.started_at).total_seconds()
    return n / seconds, rss


async def baseline(dep: Deployment, n: int) -> float:
    """The plain way, in this process → records/s."""
    _, refresh = await dep.emulator.gmail_user(n)
    account_id = await dep.connect(refresh, mail_scope())
    access = await oauth.access_token(dep.deps.oauth, refresh, mail_scope())
    service = client.service("gmail", access.token, dep.deps.endpoints, 30)
    feature = features.FEATURES["mail_activity"]
    started, stored = time.perf_counter(), 0
    try:
        ids = all_message_ids(service)
        for mid in ids:
            message = service.users().messages().get(
                userId="me", id=mid, format="metadata",
                metadataHeaders=list(HEADERS.values())).execute()
            async with dep.deps.sessions() as session:
                session.add(_row(account_id, feature, message))
                await session.commit()
            stored += 1
    finally:
        service.close()
    return stored / (time.perf_counter() - started)


def _row(account_id: str, feature: features.Feature, message: dict[str, Any]) -> Record:
    headers = {h["name"]: h["value"] for h in message["payload"]["headers"]}
    content = {field: headers.get(name, "") for field, name in HEADERS.items()}
    now = utcnow()
    return Record(account_id=account_id, feature=feature.name, kind="message",
                  external_id=message["id"], content=json.dumps(content).encode(),
                  data_use=feature.data_use, scope=feature.scope, source_api=feature.api,
                  source_method=feature.source_method, fetched_at=now,
                  expires_at=now + timedelta(days=30), policy_version="bench", epoch=1)


async def run(dep: Deployment, n: int) -> list[Row]:
    base = await baseline(dep, n)
    rate, _ = await ours(dep, n)
    ratio = rate / base
    return [
        Row(NAME, f"baseline: sequential messages.get + ORM insert per record ({n:,} msgs)",
            f"{base:,.0f} records/s"),
        Row(NAME, f"ours: one worker process, mail_activity full sync ({n:,} msgs)",
            f"{rate:,.0f} records/s"),
        Row(NAME, "ours ÷ baseline", f"{ratio:.1f}×", "≥ 10×", ratio >= 10),
    ]
