"""The alert rules and the Grafana dashboard in deploy/ name only metrics gwsync exports;
the alert rules are valid PromQL and each alert fires in its unit tests (promtool)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gwsync.core import metrics
from gwsync.web import ops_metrics

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
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
    doc = yaml.safe_load(ALERTS.read_text())
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


def _promtool() -> str:
    """promtool's path; in CI its absence fails the test, elsewhere it skips it."""
    found = shutil.which("promtool")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("promtool is not installed (bin/test installs Debian's `prometheus`)")
    pytest.skip("promtool is not installed: the alert rules are NOT checked "
                "(apt-get install prometheus)")


def _promtool_run(*args: str) -> None:
    result = subprocess.run([_promtool(), *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"


def _alerts_tested() -> set[str]:
    """Alerts some case of alerts_test.yml expects to fire (a non-empty exp_alerts)."""
    doc = yaml.safe_load(ALERTS_TEST.read_text())
    return {case["alertname"] for test in doc["tests"]
            for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}


def test_alert_rules_are_valid_for_prometheus() -> None:
    """`promtool check rules` accepts alerts.yml (PromQL parses, templates compile)."""
    _promtool_run("check", "rules", str(ALERTS))


def test_alert_rules_pass_their_unit_tests() -> None:
    """`promtool test rules alerts_test.yml` passes: each alert fires, labels and text included."""
    _promtool_run("test", "rules", str(ALERTS_TEST))


def test_every_alert_has_a_case_where_it_fires() -> None:
    """Each alert of alerts.yml is expected to fire somewhere in alerts_test.yml."""
    untested = {rule["alert"] for rule in _rules()} - _alerts_tested()
    assert not untested, f"alerts without a firing case in {ALERTS_TEST.name}: {untested}"


def test_the_scrape_config_is_valid_and_sends_the_admin_token(tmp_path: Path) -> None:
    """`promtool check config` accepts prometheus.yml, whose web job sends a bearer token
    (the web process's /metrics refuses anything else)."""
    config = ALERTS.with_name("prometheus.yml")
    for source in (config, ALERTS):
        shutil.copy(source, tmp_path / source.name)
    (tmp_path / "gwsync-admin-token").write_text("token-for-the-check\n")
    _promtool_run("check", "config", str(tmp_path / config.name))
    [web] = [job for job in yaml.safe_load(config.read_text())["scrape_configs"]
             if job["job_name"] == "gwsync-web"]
    assert web["authorization"]["type"] == "Bearer"
