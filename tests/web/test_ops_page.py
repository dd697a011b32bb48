"""The ops page, opened in a real headless Chromium, shows the numbers the database holds."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeAlias, cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from sqlalchemy import Executable, func, select

from gwsync.core.settings import Settings
from gwsync.storage.models import AccessLog, Account, Erasure, Record, is_source_record
from gwsync.tasks.deps import Deps
from gwsync.web.app import create_app
from tests.conftest import ADMIN_TOKEN, API_TOKEN, Emulator, RunWorker
from tests.devtools.test_status import populated
from tests.helpers import USER

Api: TypeAlias = "TestClient[web.Request, web.Application]"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
INSTALL = "apt-get install chromium chromium-driver"


def in_ci() -> bool:
    """`.ci/run` exports CI=true (as CI services do)."""
    return os.environ.get("CI", "").lower() in {"true", "1"}


def need_chromium(config: pytest.Config, found: str | None = CHROMIUM) -> str:
    """Chromium's path. Without it the browser test fails in CI and, elsewhere, is skipped
    loudly: the reason, with the command that installs it, is written to the terminal
    (pytest hides skip reasons unless asked with -rs)."""
    if found:
        return found
    reason = f"chromium is not installed; install it with `{INSTALL}`"
    if in_ci():
        pytest.fail(f"{reason} (CI=true: the ops page's browser test must run)")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # past the test's output capture
            reporter.write_line(f"\nSKIPPED the ops page's browser test: {reason}",
                                yellow=True, bold=True)
    pytest.skip(reason)


FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1366,900")


class Page:
    """One Chromium tab driven over the DevTools protocol (the protocol Chromium speaks
    itself, over aiohttp's websocket): commands by id, events kept until asked for."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._events: list[str] = []

    async def _next(self) -> dict[str, Any]:
        message = await asyncio.wait_for(self.ws.receive(), 30)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        data: dict[str, Any] = json.loads(message.data)
        if "method" in data:
            self._events.append(data["method"])
        return data

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and answer its result (events seen meanwhile are kept)."""
        sent = next(self._ids)
        await self.ws.send_json({"id": sent, "method": method, "params": params})
        while (data := await self._next()).get("id") != sent:
            pass
        assert "error" not in data, data["error"]
        result: dict[str, Any] = data["result"]
        return result

    async def loads(self, method: str, **params: Any) -> None:
        """Run a command that navigates, and wait until the page it leads to has loaded."""
        self._events.clear()
        result = await self.call(method, **params)
        assert not {"exceptionDetails", "errorText"} & result.keys(), result
        while "Page.loadEventFired" not in self._events:
            await self._next()

    async def js(self, expression: str) -> Any:
        """The value of `expression` evaluated in the page."""
        found = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in found, found["exceptionDetails"]
        return found["result"].get("value")

    async def fill_and_submit(self, field: str, text: str) -> None:
        """Type `text` into the form field named `field` and press its form's button."""
        await self.js(f"document.querySelector('input[name={field}]').focus()")
        await self.call("Input.insertText", text=text)
        await self.loads("Runtime.evaluate", expression=(
            f"document.querySelector('input[name={field}]').form"
            ".querySelector('button').click()"))


async def _devtools_port(profile: Path, proc: asyncio.subprocess.Process) -> int:
    """Chromium writes the port it chose into its profile once DevTools listens."""
    active = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while not active.exists() or not active.read_text().strip():
        assert proc.returncode is None and time.monotonic() < deadline, "chromium did not start"
        await asyncio.sleep(0.1)
    return int(active.read_text().split()[0])


@contextlib.asynccontextmanager
async def chromium(browser: str, tmp: Path) -> AsyncIterator[Page]:
    """Headless Chromium (its own profile, no network but ours) with one tab to drive."""
    profile = tmp / "profile"
    with (tmp / "chromium.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            browser, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
            "about:blank", stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=log)
    try:
        port = await _devtools_port(profile, proc)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                tab = next(t for t in await resp.json() if t["type"] == "page")
            async with http.ws_connect(tab["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = Page(ws)
                await page.call("Page.enable")
                yield page
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


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
async def served(settings: Settings) -> AsyncIterator[str]:
    """The real web app on a loopback TCP port a browser can reach, over plain http as
    the demo serves it (so with `GWSYNC_OPS_COOKIE_SECURE=false`)."""
    plain = await Deps.open(settings.model_copy(update={"ops_cookie_secure": False}))
    server = TestServer(create_app(plain), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()
    await plain.close()


async def _count(deps: Deps, query: Executable) -> str:
    async with deps.sessions() as session:
        return str(await session.scalar(query))


async def test_ops_page_in_chromium_shows_the_database_numbers(
    api: Api, deps: Deps, emulator: Emulator, run_worker: RunWorker, served: str,
    tmp_path: Path, pytestconfig: pytest.Config,
) -> None:
    """Signed in by typing the admin token into the form, Chromium renders queue, accounts,
    records, erasures and refusals as the database and Redis hold them (a screenshot is
    saved), and its sign-out button signs it out."""
    browser = need_chromium(pytestconfig)
    await populated(api, emulator, run_worker)
    async with chromium(browser, tmp_path) as page:
        await page.loads("Page.navigate", url=f"{served}/ops")
        assert await page.js("location.href") == f"{served}/ops/login"
        await page.fill_and_submit("token", ADMIN_TOKEN)
        assert await page.js("location.href") == f"{served}/ops"  # no token in the address
        parser = Metrics()
        parser.feed(await page.js("document.documentElement.outerHTML"))
        shot = (await page.call("Page.captureScreenshot", format="png"))["data"]
        await page.loads("Runtime.evaluate",
                         expression="document.querySelector('form[action=\"/ops/logout\"]"
                         " button').click()")
        assert await page.js("location.href") == f"{served}/ops/login"
        await page.loads("Page.navigate", url=f"{served}/ops")
        assert await page.js("location.href") == f"{served}/ops/login"  # signed out
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
    (ARTIFACTS / "ops.png").write_bytes(base64.b64decode(shot))
    assert (ARTIFACTS / "ops.png").stat().st_size > 10_000


def test_a_missing_browser_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch, pytestconfig: pytest.Config
) -> None:
    """With CI=true, no Chromium fails the browser test instead of skipping it."""
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install chromium chromium-driver"):
        need_chromium(pytestconfig, found=None)


class _Terminal:
    """Stands in for pytest's terminal reporter and capture manager, keeping the lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write_line(self, line: str, **_markup: bool) -> None:
        self.lines.append(line)

    def global_and_fixture_disabled(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()


def test_a_missing_browser_outside_ci_is_a_loud_skip_that_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside CI, no Chromium skips the browser test with the install command as reason,
    and writes that reason to the terminal."""
    monkeypatch.delenv("CI", raising=False)
    terminal = _Terminal()
    config = SimpleNamespace(pluginmanager=SimpleNamespace(get_plugin=lambda _: terminal))
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium chromium-driver"):
        need_chromium(cast(pytest.Config, config), found=None)
    assert len(terminal.lines) == 1 and INSTALL in terminal.lines[0]


def test_the_ci_entry_point_declares_ci() -> None:
    """`.ci/run` exports CI=true, so in CI the browser test can only pass or fail."""
    script = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert "export CI=true" in script.split("./bin/test")[0]


SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


async def sign_in(api: Api, token: str = ADMIN_TOKEN) -> str:
    """POST the login form; the session cookie's value (the client's jar is emptied, so
    every later request says explicitly which cookie it sends)."""
    resp = await api.post("/ops/login", data={"token": token}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/ops"
    api.session.cookie_jar.clear()
    return resp.cookies["gwsync_ops"].value


async def open_ops(api: Api, cookie: str) -> aiohttp.ClientResponse:
    """GET /ops with this cookie and no bearer token."""
    return await api.get("/ops", headers={"Authorization": "", "Cookie": f"gwsync_ops={cookie}"},
                         allow_redirects=False)


async def _attempt(api: Api, token: str) -> aiohttp.ClientResponse:
    return await api.post("/ops/login", data={"token": token}, allow_redirects=False)


async def test_ops_page_refuses_without_the_admin_token(api: Api) -> None:
    """No token redirects to sign-in; the API token, a wrong token or cookie get nothing."""
    anonymous = await api.get("/ops", headers={"Authorization": ""}, allow_redirects=False)
    assert anonymous.status == 303 and anonymous.headers["Location"] == "/ops/login"
    with_api_token = await api.get("/ops", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert with_api_token.status == 401
    assert (await with_api_token.json())["error"] == "unauthorized"
    wrong = await api.post("/ops/login", data={"token": "nope"}, allow_redirects=False)
    assert wrong.status == 401 and "gwsync_ops" not in wrong.cookies


async def test_ops_sign_in_sets_a_cookie_that_is_not_the_token(api: Api) -> None:
    """Signing in answers with a cookie that is not the token and opens /ops."""
    cookie = await sign_in(api)
    assert ADMIN_TOKEN not in cookie
    page = await open_ops(api, cookie)
    assert page.status == 200
    text = await page.text()
    assert 'http-equiv="refresh"' in text and 'data-metric="queue_depth"' in text
    bearer = await api.get("/ops", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert bearer.status == 200


async def test_ops_page_escapes_what_callers_wrote(api: Api, deps: Deps,
                                                  emulator: Emulator) -> None:
    """A refused use full of markup is shown as text, never as HTML."""
    from gwsync.emulator.seed import seed_demo_user
    from tests.helpers import connect

    account_id = await connect(api, seed_demo_user(emulator.state, 1).refresh_token)
    await api.get(f"/v1/accounts/{account_id}/records",
                  params={"use": "<script>x</script>", "user_id": USER})
    page = await api.get("/ops", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    text = await page.text()
    assert "<script>" not in text and "&lt;script&gt;x&lt;/script&gt;" in text


async def test_a_token_in_the_address_never_signs_in(api: Api) -> None:
    """`/ops/login?token=<the admin token>` sets no cookie and opens nothing: tokens in
    URLs end up in logs and browser history."""
    resp = await api.get(f"/ops/login?token={ADMIN_TOKEN}", headers={"Authorization": ""},
                         allow_redirects=False)
    assert resp.status == 400 and "gwsync_ops" not in resp.cookies
    assert "Location" not in resp.headers and 'name="token"' in await resp.text()


async def test_the_session_cookie_is_secure_httponly_strict_and_scoped_to_ops(
    api: Api,
) -> None:
    """The cookie is `Secure` by default, `HttpOnly`, `SameSite=Strict`, `Path=/ops`, and
    lives 8 hours."""
    resp = await _attempt(api, ADMIN_TOKEN)
    cookie = resp.cookies["gwsync_ops"]
    assert cookie["secure"] and cookie["httponly"]
    assert cookie["samesite"] == "Strict" and cookie["path"] == "/ops"
    assert cookie["max-age"] == str(8 * 3600)


async def test_plain_http_deployments_may_relax_secure(
    settings: Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With `GWSYNC_OPS_COOKIE_SECURE=false` (local plain http) the cookie is not `Secure`
    and keeps its other attributes."""
    plain = await Deps.open(settings.model_copy(update={"ops_cookie_secure": False}))
    async with TestClient(TestServer(create_app(plain))) as client:
        cookie = (await _attempt(client, ADMIN_TOKEN)).cookies["gwsync_ops"]
    await plain.close()
    assert not cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Strict"
    monkeypatch.delenv("GWSYNC_OPS_COOKIE_SECURE", raising=False)
    assert Settings().ops_cookie_secure is True
    monkeypatch.setenv("GWSYNC_OPS_COOKIE_SECURE", "false")
    assert Settings().ops_cookie_secure is False


def _old_signature(expires: int) -> str:
    """The cookie this page used to set: an expiry signed directly with the admin token."""
    mac = hmac.new(ADMIN_TOKEN.encode(), f"ops-session:{expires}".encode(), hashlib.sha256)
    return f"{expires}.{mac.hexdigest()}"


@pytest.mark.parametrize("cookie", [
    "9999999999.forged", "\u00b2.x", "\u00e9t\u00e9", "x" * 43, "A" * 5000, "..", "",
    _old_signature(int(time.time()) + 3600),
], ids=["forged", "unicode-digit", "non-ascii", "unknown-id", "huge", "dots", "empty",
        "old-signature"])
async def test_a_forged_or_malformed_cookie_is_simply_not_signed_in(
    api: Api, cookie: str,
) -> None:
    """A cookie the server did not issue, of any shape, sends the browser to sign in (303),
    never a 500."""
    resp = await api.get("/ops", headers={"Authorization": "", "Cookie": f"gwsync_ops={cookie}"},
                         allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/ops/login"


async def test_two_sign_ins_get_different_random_session_ids(api: Api) -> None:
    """Each sign-in gets its own random id (43 URL-safe characters), and both open /ops."""
    first, second = await sign_in(api), await sign_in(api)
    assert first != second
    assert SESSION_ID.fullmatch(first) and SESSION_ID.fullmatch(second)
    assert (await open_ops(api, first)).status == (await open_ops(api, second)).status == 200


async def test_sessions_live_in_redis_under_the_prefix_for_8_hours_without_the_id(
    api: Api, deps: Deps,
) -> None:
    """The server keeps one key per session under the deployment's prefix with an 8-hour
    TTL; neither the key nor its value is the cookie, so a copy of Redis opens nothing."""
    cookie = await sign_in(api)
    prefix = deps.settings.redis_prefix
    keys = [k async for k in deps.queue.redis.scan_iter(match=f"{prefix}:ops:session:*")]
    assert len(keys) == 1
    ttl = await deps.queue.redis.ttl(keys[0])
    assert 8 * 3600 - 60 < ttl <= 8 * 3600
    stored = (keys[0] + (await deps.queue.redis.get(keys[0]) or b"")).decode()
    assert cookie not in stored and ADMIN_TOKEN not in stored


async def test_rotating_the_admin_token_signs_everyone_out(
    api: Api, settings: Settings,
) -> None:
    """A session opened under one admin token opens nothing once the token has changed."""
    cookie = await sign_in(api)
    rotated = await Deps.open(settings.model_copy(update={
        "admin_token": SecretStr("b" + ADMIN_TOKEN[1:])}))
    async with TestClient(TestServer(create_app(rotated))) as client:
        resp = await open_ops(client, cookie)
    await rotated.close()
    assert resp.status == 303


async def test_logout_ends_the_session_on_the_server_and_clears_the_cookie(
    api: Api,
) -> None:
    """The page has a sign-out button; `POST /ops/logout` clears the cookie and ends the
    session server side, so a copy of the cookie kept elsewhere opens nothing."""
    cookie = await sign_in(api)
    page = await open_ops(api, cookie)
    assert '<form method="post" action="/ops/logout">' in await page.text()
    resp = await api.post("/ops/logout", headers={"Authorization": "",
                                                  "Cookie": f"gwsync_ops={cookie}"},
                          allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/ops/login"
    cleared = resp.cookies["gwsync_ops"]
    assert cleared.value == "" and cleared["max-age"] == "0" and cleared["path"] == "/ops"
    assert (await open_ops(api, cookie)).status == 303


async def test_the_sixth_bad_attempt_in_a_minute_is_429_and_a_success_is_not_counted(
    api: Api,
) -> None:
    """A success is not counted; five wrong tokens are 401; the sixth attempt in the
    minute, even with the right token, is 429 with a Retry-After of at most a minute."""
    await sign_in(api)
    assert [(await _attempt(api, f"wrong-{n}")).status for n in range(5)] == [401] * 5
    for token in ("wrong-6", ADMIN_TOKEN):
        refused = await _attempt(api, token)
        assert refused.status == 429 and "gwsync_ops" not in refused.cookies
        assert 0 < int(refused.headers["Retry-After"]) <= 60


async def test_the_login_limit_is_per_client_address(api: Api) -> None:
    """Another address may still sign in while 127.0.0.1 is held back."""
    for n in range(6):
        await _attempt(api, f"wrong-{n}")
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as other:
        resp = await other.post(api.make_url("/ops/login"), data={"token": ADMIN_TOKEN},
                                allow_redirects=False)
    assert resp.status == 303


@pytest.mark.parametrize(("body", "content_type", "status"), [
    (b"token=%ff%fe", "application/x-www-form-urlencoded", 400),
    (b"token=\xff", "application/x-www-form-urlencoded", 400),
    (b"token=a&token=b", "application/x-www-form-urlencoded", 400),
    (b'{"token": "x"}', "application/json", 415),
], ids=["percent-non-utf8", "raw-non-utf8", "repeated", "json"])
async def test_a_malformed_login_form_is_a_4xx_never_a_500(
    api: Api, body: bytes, content_type: str, status: int,
) -> None:
    """A form body that is not UTF-8, repeats its field, or is not a form is refused with
    a JSON error, and signs nobody in."""
    resp = await api.post("/ops/login", data=body, headers={"Content-Type": content_type},
                          allow_redirects=False)
    assert resp.status == status and "gwsync_ops" not in resp.cookies
    assert "error" in await resp.json()
