"""Prometheus metrics of events, in one registry. No label ever holds a user id, email or token.

These are counters and histograms that the code bumps as things happen: each process
(web, worker) exposes its own copy of this registry — the web process on `/metrics`, the
worker on `GWSYNC_WORKER_METRICS_PORT`. Gauges of *state* (queue depth, accounts by
status, erasures by state) are not here: they are read from the database and Redis at
scrape time (`gwsync.web.ops_metrics`), so every replica reports the same truth.

Label values come from closed sets only: task names, outcomes, feature names, API method
ids from the discovery documents, HTTP status codes, use *kinds* (never the use string).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry()

#: Durations of jobs and Google calls: from a fast page to a long full sync.
SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

HTTP_REQUESTS = Counter(
    "gwsync_http_requests_total", "HTTP requests by route template and status",
    ["route", "status"], registry=REGISTRY)
PURPOSE_DECISIONS = Counter(
    "gwsync_purpose_decisions_total",
    "Purpose-checked reads by use kind, use (named uses only) and decision",
    ["kind", "use", "decision"], registry=REGISTRY)


def purpose_decision(kind: str, use_label: str, allowed: bool) -> None:
    """Count one purpose decision; `use_label` is already reduced to a closed set
    (`gwsync.domain.purpose.metric_label`), so no client text reaches a label."""
    PURPOSE_DECISIONS.labels(kind=kind, use=use_label,
                             decision="allowed" if allowed else "refused").inc()

JOBS = Counter(
    "gwsync_jobs_total", "Finished job runs by task and outcome (ok, failed, retry, error, ...)",
    ["task", "outcome"], registry=REGISTRY)
JOB_SECONDS = Histogram(
    "gwsync_job_duration_seconds", "Wall time of one job run, by task",
    ["task"], buckets=SECONDS_BUCKETS, registry=REGISTRY)
JOB_RETRIES = Counter(
    "gwsync_job_retries_total", "Job runs that asked arq to run them again (arq Retry), by task",
    ["task"], registry=REGISTRY)
JOB_DEFERRALS = Counter(
    "gwsync_job_deferrals_total",
    "Job runs put off without an error, by task and reason: `busy` (another run holds the "
    "account's lock), `quota` (fed by the quota limiter)",
    ["task", "reason"], registry=REGISTRY)

GOOGLE_CALLS = Counter(
    "gwsync_google_api_calls_total",
    "Calls to Google APIs by API, discovery method id and status (`ok`, an HTTP code, "
    "`network`)", ["api", "method", "status"], registry=REGISTRY)
GOOGLE_CALL_SECONDS = Histogram(
    "gwsync_google_api_call_duration_seconds", "Time of one Google API call, by API",
    ["api"], buckets=SECONDS_BUCKETS, registry=REGISTRY)
#: Fed by the quota limiter (issue 4): units charged against Google's per-API quotas.
QUOTA_UNITS = Counter(
    "gwsync_quota_units_total", "Quota units spent, by API (fed by the quota limiter)",
    ["api"], registry=REGISTRY)
#: Fed by the quota limiter (issue 4): time jobs spent waiting for quota to free up.
QUOTA_WAIT_SECONDS = Counter(
    "gwsync_quota_wait_seconds_total", "Seconds spent waiting for quota, by API "
    "(fed by the quota limiter)", ["api"], registry=REGISTRY)

RECORDS_SYNCED = Counter(
    "gwsync_records_synced_total", "Records written (created or updated) by syncs, by feature",
    ["feature"], registry=REGISTRY)
ERASURE_SECONDS = Histogram(
    "gwsync_erasure_duration_seconds", "Time from an erasure's request to its verification",
    buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600), registry=REGISTRY)


def google_call(request: Any, status: str, seconds: float) -> None:
    """Count one Google API call; the method id comes from the request object itself.

    google-api-python-client's `HttpRequest` carries `methodId` (e.g.
    `people.people.connections.list`); a batch or anything else counts as `other`.
    """
    method = getattr(getattr(request, "__self__", request), "methodId", None) or "other"
    api = method.split(".", 1)[0] if method != "other" else "other"
    GOOGLE_CALLS.labels(api=api, method=method, status=status).inc()
    GOOGLE_CALL_SECONDS.labels(api=api).observe(seconds)

APP_WEBHOOK_DELIVERIES = Counter(
    "gwsync_app_webhook_deliveries_total",
    "Tries to deliver an event to the main app's webhook, by event type (`kind`) and outcome "
    "(`delivered`, `retry`, `given_up`)", ["kind", "outcome"], registry=REGISTRY)
