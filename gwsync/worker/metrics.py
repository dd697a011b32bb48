"""Prometheus metrics, in one registry. No label ever holds a user id, email or token."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

REGISTRY = CollectorRegistry()

HTTP_REQUESTS = Counter(
    "gwsync_http_requests_total", "HTTP requests by route template and status",
    ["route", "status"], registry=REGISTRY)
PURPOSE_DECISIONS = Counter(
    "gwsync_purpose_decisions_total", "Purpose-checked reads by use kind and decision",
    ["kind", "decision"], registry=REGISTRY)
