"""Staff access under Google's exceptions: justified, named, audited, and visible to the user."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from gwsync.core.settings import Settings
from tests.conftest import ADMIN_TOKEN, Emulator, RunWorker
from tests.helpers import USER, settings_env, synced_user

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WHY = "abuse report #4711: checking reported contact spam"


async def _access(api: TestClient, account_id: str, **body: Any) -> Any:
    return await api.post(f"/admin/accounts/{account_id}/access", json=body, headers=ADMIN)


async def _log(api: TestClient, account_id: str) -> list[dict[str, Any]]:
    resp = await api.get(f"/v1/accounts/{account_id}/access-log", params={"user_id": USER})
    return (await resp.json())["entries"]


async def test_staff_routes_need_the_admin_token(
    api: TestClient, emulator: Emulator, run_worker: RunWorker
) -> None:
    """The app's own bearer token cannot open staff routes."""
    _, account_id = await synced_user(api, emulator.state, run_worker, 2)
    resp = await api.post(f"/admin/accounts/{account_id}/access",
                          json={"use": "security", "justification": WHY, "operator": "alice"})
    assert resp.status == 401
    assert await _log(api, account_id) == []


async def test_a_justified_security_read_is_served_and_shown_to_the_user(
    api: TestClient, emulator: Emulator, run_worker: RunWorker
) -> None:
    """A security read names its operator and reason, and the user's access log shows both."""
    _, account_id = await synced_user(api, emulator.state, run_worker, 3)
    resp = await _access(api, account_id, use="security", justification=WHY, operator="alice")
    assert resp.status == 200
    assert len((await resp.json())["records"]) == 3
    [entry] = await _log(api, account_id)
    assert entry["actor"] == "staff:alice" and entry["justification"] == WHY
    assert (entry["use"], entry["decision"], entry["record_count"]) == ("security", "allowed", 3)


async def test_staff_cannot_read_for_other_uses_and_the_attempt_is_logged(
    api: TestClient, emulator: Emulator, run_worker: RunWorker
) -> None:
    """A staff read for any use outside the exceptions is refused and audited."""
    _, account_id = await synced_user(api, emulator.state, run_worker, 1)
    for use in ("ai_training", "feature:contacts", "marketing"):
        resp = await _access(api, account_id, use=use, justification=WHY, operator="bob")
        assert resp.status == 403
    assert [(e["use"], e["decision"]) for e in await _log(api, account_id)] == [
        ("staff:marketing", "refused"), ("staff:feature:contacts", "refused"),
        ("staff:ai_training", "refused")]


async def test_an_unjustified_read_is_400_and_reads_nothing(
    api: TestClient, emulator: Emulator, run_worker: RunWorker
) -> None:
    """Without a written justification and an operator name, nothing is read."""
    _, account_id = await synced_user(api, emulator.state, run_worker, 1)
    for body in ({"use": "legal", "operator": "c"},
                 {"use": "legal", "justification": "short", "operator": "c"},
                 {"use": "legal", "justification": WHY}):
        assert (await _access(api, account_id, **body)).status == 400
    assert await _log(api, account_id) == []


async def test_aggregate_ops_gives_counts_only(
    api: TestClient, emulator: Emulator, run_worker: RunWorker
) -> None:
    """aggregate_ops through the staff route returns counts, never contents."""
    _, account_id = await synced_user(api, emulator.state, run_worker, 4)
    resp = await _access(api, account_id, use="aggregate_ops", justification=WHY,
                         operator="ops")
    assert await resp.json() == {"counts": {"contacts": 4}}


async def test_the_access_command_reads_as_staff_and_is_logged(
    api: TestClient, emulator: Emulator, run_worker: RunWorker, settings: Settings
) -> None:
    """`gwsync access` prints the records and leaves an entry naming the operator."""
    _, account_id = await synced_user(api, emulator.state, run_worker, 2)
    gwsync = str(Path(sys.executable).with_name("gwsync"))
    proc = await asyncio.create_subprocess_exec(
        gwsync, "access", account_id, "--use", "legal", "--justification", WHY,
        "--operator", "carol", env=settings_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-500:]
    assert "records (audited)" in out.decode()
    [entry] = await _log(api, account_id)
    assert (entry["actor"], entry["use"], entry["record_count"]) == ("staff:carol", "legal", 2)
