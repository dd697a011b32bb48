"""The ops page, opened in a real headless Chromium, shows the numbers the database holds."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from gwsync.storage.models import AccessLog, Account, Erasure, Record, is_source_record
from gwsync.worker.deps import Deps
from gwsync.worker.web import create_app
from tests.conftest import ADMIN_TOKEN, API_TOKEN, Emulator, RunWorker
from tests.worker.test_status import populated

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _need_chromium() -> str:
    """Chromium's path; in CI its absence fails the test, elsewhere it skips it."""
    if CHROMIUM:
        return CHROMIUM
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed (bin/test installs Debian's `chromium`)")
    pytest.skip("chromium is not installed (apt-get install chromium)")


async def chromium(tmp: Path, *args: str) -> str:
    """Run headless Chromium once (its own profile, no network but ours) → stdout."""
    proc = await asyncio.create_subprocess_exec(
        _need_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'profile'}",
        "--window-size=1366,900", *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    return out.decode()


class Metrics(HTMLParser):
    """Collects the text of every element with a `data-metric` attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, str] = {}
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open = dict(attrs).get("data-metric") or self._open

    def handle_data(self, data: str) -> None:
        if self._open:
            self.found[self._open] = data.strip()
            self._open = None


@pytest.fixture
async def served(deps: Deps) -> AsyncIterator[str]:
    """The real web app on a loopback TCP port a browser can reach."""
    server = TestServer(create_app(deps), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


async def _count(deps: Deps, query: object) -> str:
    async with deps.sessions() as session:
        return str(await session.scalar(query))  # type: ignore[arg-type]


async def test_ops_page_in_chromium_shows_the_database_numbers(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker, served: str,
    tmp_path: Path,
) -> None:
    """Signed in with the admin token, Chromium renders queue, accounts, records, erasures and
    refusals as the database and Redis hold them; a screenshot is saved."""
    _need_chromium()
    await populated(api, emulator, run_worker)
    login = f"{served}/ops/login?token={ADMIN_TOKEN}"
    parser = Metrics()
    parser.feed(await chromium(tmp_path, "--dump-dom", login))
    shown = parser.found
    count = func.count()
    assert shown["accounts.active"] == await _count(
        deps, select(count).select_from(Account).where(Account.status == "active"))
    assert shown["records.contacts"] == await _count(
        deps, select(count).select_from(Record).where(Record.feature == "contacts",
                                                      is_source_record()))
    assert shown["refused.advertising"] == shown["refused_reads"] == await _count(
        deps, select(count).select_from(AccessLog).where(AccessLog.decision == "refused"))
    assert shown["erasures_pending"] == await _count(
        deps, select(count).select_from(Erasure).where(Erasure.state != "verified")) == "1"
    assert shown["queue_depth"] == str(await deps.queue.redis.zcard(deps.queue.queue_name))
    assert int(shown["finished_last_hour"]) >= 10  # two users' syncs ran
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "ops.png"
    shot.unlink(missing_ok=True)
    await chromium(tmp_path, f"--screenshot={shot}", login)
    assert shot.stat().st_size > 10_000


async def test_ops_page_refuses_without_the_admin_token(api: TestClient) -> None:
    """No token redirects to sign-in; the API token, a wrong token or cookie get nothing."""
    anonymous = await api.get("/ops", headers={"Authorization": ""}, allow_redirects=False)
    assert anonymous.status == 303 and anonymous.headers["Location"] == "/ops/login"
    with_api_token = await api.get("/ops", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert with_api_token.status == 401
    assert (await with_api_token.json())["error"] == "unauthorized"
    wrong = await api.get("/ops/login?token=nope", allow_redirects=False)
    assert wrong.status == 401 and "gwsync_ops" not in wrong.cookies
    forged = await api.get("/ops", headers={"Authorization": "",
                                            "Cookie": "gwsync_ops=9999999999.forged"},
                           allow_redirects=False)
    assert forged.status == 303


async def test_ops_sign_in_sets_a_cookie_that_is_not_the_token(api: TestClient) -> None:
    """Signing in answers with an HttpOnly, Strict cookie (not the token) and opens /ops."""
    resp = await api.post("/ops/login", data={"token": ADMIN_TOKEN}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/ops"
    cookie = resp.cookies["gwsync_ops"]
    assert ADMIN_TOKEN not in cookie.value
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/ops"
    page = await api.get("/ops", headers={"Authorization": "",
                                          "Cookie": f"gwsync_ops={cookie.value}"})
    assert page.status == 200
    text = await page.text()
    assert 'http-equiv="refresh"' in text and 'data-metric="queue_depth"' in text
    bearer = await api.get("/ops", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert bearer.status == 200


async def test_ops_page_escapes_what_callers_wrote(api: TestClient, deps: Deps,
                                                  emulator: Emulator) -> None:
    """A refused use full of markup is shown as text, never as HTML."""
    from gwsync.emulator.seed import seed_demo_user
    from tests.helpers import connect

    account_id = await connect(api, seed_demo_user(emulator.state, 1).refresh_token)
    await api.get(f"/v1/accounts/{account_id}/records", params={"use": "<script>x</script>"})
    page = await api.get("/ops", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    text = await page.text()
    assert "<script>" not in text and "&lt;script&gt;x&lt;/script&gt;" in text
