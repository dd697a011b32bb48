"""State gauges for `/metrics`, read from the ops snapshot at scrape time.

Queue depth, accounts by status or erasures by state are facts about the database and
Redis, not about one process: computing them per scrape from the same snapshot as the
ops page means every replica reports the same numbers and nothing drifts. Labels are
statuses, states, features, error categories, use kinds and the queue name — never an id.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gwsync.domain.purpose import classify
from gwsync.storage.ops_snapshot import OpsSnapshot


def _gauge(name: str, doc: str, labels: list[str] | None = None,
           values: Iterable[tuple[list[str], float]] = ()) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels or [])
    for label_values, value in values:
        family.add_metric(label_values, value)
    return family


def _by(mapping: dict[str, int]) -> list[tuple[list[str], float]]:
    return [([key], float(value)) for key, value in mapping.items()]


def _refused_by_kind(refused: dict[str, int]) -> dict[str, int]:
    """Refused reads by use *kind*: the use string itself is the caller's and unbounded."""
    kinds: dict[str, int] = {}
    for use, count in refused.items():
        kind = str(classify(use)[0])
        kinds[kind] = kinds.get(kind, 0) + count
    return kinds


class SnapshotCollector(Collector):
    """Gauges over one snapshot; with none (the database or Redis failed) only `up` = 0."""

    def __init__(self, snap: OpsSnapshot | None) -> None:
        self.snap = snap

    def describe(self) -> Iterator[Metric]:
        return iter(_families(None))

    def collect(self) -> Iterator[Metric]:
        return iter(_families(self.snap))


def _families(s: OpsSnapshot | None) -> list[Metric]:
    up = _gauge("gwsync_ops_snapshot_up", "1 when the database and Redis answered this scrape",
                values=[([], 1.0 if s is not None else 0.0)])
    return [up, *_state_families(s)]


def _state_families(s: OpsSnapshot | None) -> list[Metric]:
    q = [s.queue_name] if s else []
    return [
        _gauge("gwsync_queue_depth", "Jobs in the arq queue (due and deferred)", ["queue"],
               [(q, s.queue_depth)] if s else []),
        _gauge("gwsync_queue_due", "Jobs in the arq queue that are due now", ["queue"],
               [(q, s.queue_due)] if s else []),
        _gauge("gwsync_jobs_in_progress", "Jobs a worker is running now", ["queue"],
               [(q, s.in_progress)] if s else []),
        _gauge("gwsync_accounts", "Accounts by status", ["status"],
               _by(s.accounts_by_status) if s else []),
        _gauge("gwsync_sync_states", "Feature syncs by status", ["status"],
               _by(s.syncs_by_status) if s else []),
        _gauge("gwsync_sync_failures", "Feature syncs whose last run failed, by error category",
               ["category"], [([f.category], f.count) for f in s.failures] if s else []),
        _gauge("gwsync_syncs_behind_schedule", "Granted features of active accounts not synced "
               "within the hour, by feature", ["feature"],
               _by(s.behind_schedule) if s else []),
        _gauge("gwsync_records_stored", "Stored records by feature", ["feature"],
               _by(s.records_by_feature) if s else []),
        _gauge("gwsync_erasures", "Erasures by state", ["state"],
               _by(s.erasures_by_state) if s else []),
        _gauge("gwsync_erasure_oldest_pending_seconds", "Age of the oldest unverified erasure",
               values=[([], s.oldest_pending_erasure_s)] if s else []),
        _gauge("gwsync_erasures_overdue", "Unverified erasures older than their deadline",
               values=[([], s.erasures_overdue)] if s else []),
        _gauge("gwsync_erasure_deadline_seconds", "How soon an erasure must be verified",
               values=[([], s.erasure_deadline_s)] if s else []),
        _gauge("gwsync_app_webhooks_undelivered", "Events for the main app not delivered "
               "yet, by status (`pending`: retrying, `failed`: given up) and event type (`kind`)",
               ["status", "kind"], [([status, t], n) for status, by_type in s.app_webhooks.items()
                                    for t, n in by_type.items()] if s else []),
        _gauge("gwsync_app_webhook_oldest_pending_seconds", "How long the oldest event still "
               "being retried has waited", values=[([], s.app_webhook_oldest_pending_s)]
               if s else []),
        _gauge("gwsync_refused_reads_24h", "Reads refused by the purpose check in the last "
               "24 h, by use kind", ["kind"], _by(_refused_by_kind(s.refused_reads)) if s else []),
    ]


def exposition(snap: OpsSnapshot | None) -> bytes:
    """The text exposition of the state gauges over `snap`."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(SnapshotCollector(snap))
    return generate_latest(registry)


def names() -> set[str]:
    """Every metric name these gauges can carry (for the deploy-file checks)."""
    return {family.name for family in _families(None)}
