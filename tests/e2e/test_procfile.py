"""The Procfile, run as a platform runs it: `release` to completion, then `web` and `worker`,
nothing else, on a fresh SQLite file, gives a ready service that syncs."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

from gwsync.client import Client
from gwsync.core.settings import Settings
from gwsync.devtools import processes
from gwsync.domain.api import FeatureStatus
from gwsync.emulator.seed import seed_demo_user
from tests.conftest import ADMIN_TOKEN, API_TOKEN, MASTER_KEY, REDIS_URL, Emulator
from tests.helpers import eventually, settings_env

PROCFILE = Path(__file__).parents[2] / "Procfile"
CONTACTS = 7


def _procfile() -> dict[str, str]:
    """Process type → command, as a platform reads the file."""
    lines = [line.split(":", 1) for line in PROCFILE.read_text().splitlines() if line.strip()]
    return {name.strip(): command.strip() for name, command in lines}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _platform_env(tmp_path: Path, emulator: Emulator, redis_prefix: str) -> dict[str, str]:
    """Only configuration: a database file nobody has created, the emulator as Google."""
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/fresh.db", redis_url=REDIS_URL,
        redis_prefix=redis_prefix, google_base_url=emulator.url,
        google_client_id=emulator.state.client_id,
        google_client_secret=emulator.state.client_secret, api_token=API_TOKEN,
        admin_token=ADMIN_TOKEN, encryption_key=MASTER_KEY, worker_metrics_port=0,
        port=_free_port())
    env = settings_env(settings)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


async def _start(command: str, env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec("bash", "-c", command, env=env,
                                                    stdout=out, stderr=out)


async def _synced(gw: Client, account_id: str) -> FeatureStatus | None:
    contacts = (await gw.status(account_id, "platform-user")).features["contacts"]
    return contacts if contacts.status == "ok" else None


async def test_the_procfile_alone_gives_a_ready_service_that_syncs(
    tmp_path: Path, emulator: Emulator, redis_prefix: str
) -> None:
    """release migrates the fresh file; then /readyz is 200 and a connected account syncs."""
    procfile, env = _procfile(), _platform_env(tmp_path, emulator, redis_prefix)
    assert not (tmp_path / "fresh.db").exists()
    release = await _start(procfile["release"], env, tmp_path / "release.log")
    assert await asyncio.wait_for(release.wait(), 60) == 0, (tmp_path / "release.log").read_text()
    running = [await _start(procfile[name], env, tmp_path / f"{name}.log")
               for name in ("web", "worker")]
    base = f"http://127.0.0.1:{env['PORT']}"
    try:
        async with Client(base, API_TOKEN) as gw:
            await eventually(gw.ready, within_s=60, every_s=0.25)
            grant = seed_demo_user(emulator.state, CONTACTS)
            account_id = (await gw.connect("platform-user", grant.refresh_token)).account_id
            contacts = await eventually(lambda: _synced(gw, account_id), within_s=60)
    finally:
        for proc in running:
            await processes.stop(proc)
    assert contacts.record_count == CONTACTS
    for name in ("release", "web", "worker"):
        log = (tmp_path / f"{name}.log").read_text()
        assert "no such table" not in log and "Traceback" not in log, (name, log[-2000:])
