"""`gwsync demo` end to end, as a user runs it: real web and worker processes."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from rich.console import Console

from gwsync.devtools import demo
from gwsync.devtools.demo_errors import DemoError
from gwsync.devtools.demo_features import FeatureProgress, api_calls, check_all_enabled
from gwsync.domain.api import FeatureStatus
from gwsync.domain.features import FEATURES

REDIS_URL = os.environ.get("GWSYNC_TEST_REDIS", "redis://127.0.0.1:6379/0")
BIN = Path(sys.executable).parent
SIZES = {"--contacts": 30, "--events": 9, "--files": 5, "--messages": 40}
#: Records each feature must end with (availability: whatever free/busy merges to, > 0).
RECORDS = {"contacts": 30, "meetings": 9, "shared_files": 5, "mail_activity": 40}


def _demo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "gwsync"), "demo", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    """The caller's environment minus GWSYNC_ settings; the demo's temp dir under `tmp`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GWSYNC_")}
    return {**env, "COLUMNS": "120", "TMPDIR": str(tmp), **extra}


def _feature_rows(stdout: str) -> dict[str, list[str]]:
    """The closing table's rows: feature → [scope, class, records, API calls]."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) == 5 and cells[0] in FEATURES:
            rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """One whole demo run (it takes seconds), shared by the assertions about its output."""
    args = [str(a) for pair in SIZES.items() for a in pair]
    env = _env(tmp_path_factory.mktemp("demo"), GWSYNC_REDIS_URL=REDIS_URL)
    return _demo(env, *args)


@pytest.mark.timeout(150)
def test_demo_succeeds_through_the_consent_screen(
    demo_run: subprocess.CompletedProcess[str]
) -> None:
    """The demo exits 0 after connecting through consent with every feature's scope ticked."""
    assert demo_run.returncode == 0, demo_run.stdout + demo_run.stderr
    assert "the person ticks all 5 and clicks Continue" in demo_run.stdout
    assert "first syncs queued: " + ", ".join(FEATURES) in demo_run.stdout


@pytest.mark.timeout(150)
def test_demo_table_shows_all_five_features_with_scope_class_records_and_calls(
    demo_run: subprocess.CompletedProcess[str]
) -> None:
    """Every feature has a row with its narrowest scope, Google's class, records and calls."""
    rows = _feature_rows(demo_run.stdout)
    assert set(rows) == set(FEATURES), demo_run.stdout
    for name, (scope, klass, records, calls) in rows.items():
        info = FEATURES[name].scope_info
        assert (scope, klass) == (info.scope.rsplit("/", 1)[-1], info.klass.label)
        assert int(calls) > 0
        assert int(records) == RECORDS.get(name, int(records)) and int(records) > 0


@pytest.mark.timeout(150)
def test_demo_refuses_ai_training_and_ends_with_a_verified_receipt(
    demo_run: subprocess.CompletedProcess[str]
) -> None:
    """ai_training is refused with limited_use_violation; the erasure receipt is verified."""
    out = demo_run.stdout
    assert "use=ai_training" in out and '"error": "limited_use_violation"' in out
    assert '"state": "verified"' in out and '"ok": true' in out
    assert re.search(r"erasure verified: \d+ records deleted, .* nothing left", out), out
    assert re.search(r"the refresh_token of \S+ was revoked", out), out


@pytest.mark.timeout(150)
def test_demo_says_where_the_ops_page_and_metrics_are(
    demo_run: subprocess.CompletedProcess[str]
) -> None:
    """The last step names the ops page and both processes' metrics endpoints."""
    assert re.search(r"ops page: http://127\.0\.0\.1:\d+/ops ", demo_run.stdout), demo_run.stdout
    assert re.search(r"metrics: http://127\.0\.0\.1:\d+/metrics \(web\)", demo_run.stdout)


@pytest.mark.timeout(150)
def test_demo_without_redis_names_the_package_to_install(tmp_path: Path) -> None:
    """With no Redis answering and no redis-server on PATH, the demo exits 2 naming the package."""
    env = _env(tmp_path, GWSYNC_REDIS_URL="redis://127.0.0.1:1/0", PATH=str(BIN))
    result = _demo(env, "--contacts", "3")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "apt-get install redis-server" in result.stdout
    assert "brew install redis" in result.stdout


def test_a_failed_feature_stops_the_progress_with_its_reason() -> None:
    """A feature whose sync reports `error` raises one line naming it and Google's reason."""
    bars = FeatureProgress(Console(file=io.StringIO()), {"contacts": 3})
    report = {"contacts": FeatureStatus.model_validate({
        "enabled": True, "missing_scopes": [], "available": True, "status": "error",
        "record_count": 0, "last_error": {"category": "permanent", "detail": "HTTP 400"}})}
    with pytest.raises(DemoError, match=r"the contacts sync failed \(error\): "
                       r"permanent: HTTP 400"):
        bars.update(report)


def test_a_failed_step_anywhere_ends_the_demo_with_exit_1_and_its_reason(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    """A step failing in `demo_features` (no first sync queued) exits 1 with its own reason."""

    async def no_redis_needed(*_: object) -> str:
        return "redis://127.0.0.1:1/0"

    async def nothing_to_forget(*_: object) -> None:
        return None

    async def flow(*_: object) -> None:
        check_all_enabled(["contacts"])

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(demo, "find_or_start_redis", no_redis_needed)
    monkeypatch.setattr(demo, "forget_redis_keys", nothing_to_forget)
    monkeypatch.setattr(demo, "_flow", flow)
    assert demo.main(1) == 1
    out = capsys.readouterr().out
    assert "demo failed: no first sync was queued for: availability" in out
    assert "unexpected" not in out


def test_api_calls_are_counted_per_feature_by_declared_method() -> None:
    """Calls are attributed through each feature's methods; undeclared methods count nowhere."""
    calls = [{"method": "gmail.users.messages.get"}, {"method": "gmail.users.messages.list"},
             {"method": "calendar.freebusy.query"}, {"method": "people.people.get"}]
    assert api_calls(calls) == {"mail_activity": 2, "availability": 1}
