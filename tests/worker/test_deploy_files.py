"""The alert rules and the Grafana dashboard in deploy/ name only metrics gwsync exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from gwsync.worker import metrics, ops_metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
#: Suffixes Prometheus adds to counter and histogram samples.
SUFFIXES = ("_bucket", "_count", "_sum", "_created")


def exported() -> set[str]:
    """Every sample name the worker and web registries and the state gauges can expose."""
    names = set(ops_metrics.names())
    for family in metrics.REGISTRY.collect():
        names |= {family.name, *(family.name + s for s in ("_total", *SUFFIXES))}
    return names


def named_in(expressions: list[str]) -> set[str]:
    return {m for e in expressions for m in re.findall(r"\bgwsync_[a-z0-9_]+", e)}


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _targets() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "gwsync.json").read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]


def test_alert_rules_name_only_exported_metrics() -> None:
    """Every gwsync_* metric in an alert expression is one gwsync exports."""
    expressions = [rule["expr"] for rule in _rules()]
    assert named_in(expressions) and named_in(expressions) <= exported()


def test_alert_rules_cover_the_issue() -> None:
    """There are alerts for a growing queue, error rate, overdue erasures and quota."""
    names = {rule["alert"] for rule in _rules()}
    assert {"GwsyncQueueGrowing", "GwsyncJobErrorRate", "GwsyncErasureOverdue",
            "GwsyncQuotaSaturated"} <= names
    assert all(rule["annotations"]["summary"] for rule in _rules())


def test_dashboard_names_only_exported_metrics() -> None:
    """Every gwsync_* metric in a dashboard query is one gwsync exports."""
    assert named_in(_targets()) and named_in(_targets()) <= exported()


def test_the_check_catches_an_unknown_metric() -> None:
    """A misspelt metric is not in the exported set (the check above can fail)."""
    assert not named_in(["rate(gwsync_jobs_totl[5m])"]) <= exported()
