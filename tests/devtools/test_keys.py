"""`gwsync keys status` and `gwsync keys rotate`, as an operator runs them."""

from __future__ import annotations

import asyncio
import base64
import secrets

import pytest
from click.testing import CliRunner, Result

from gwsync.cli import main
from gwsync.core.settings import Settings
from gwsync.storage import accounts
from gwsync.tasks.deps import Deps
from tests.helpers import settings_env

NEW = base64.b64encode(secrets.token_bytes(32)).decode()


async def _cli(settings: Settings, *args: str, **env: str) -> Result:
    environment = settings_env(settings, **env)
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=environment)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_rotate_reports_the_old_key_unused_and_status_shows_it(
    settings: Settings, deps: Deps
) -> None:
    """Status names what the old key wraps; rotate moves it under the new primary, says the
    old key is no longer used, exits 0; a second run has nothing to do."""
    async with deps.sessions.begin() as session:
        await accounts.create(session, deps.keyring, user_id="u", refresh_token="1//t",
                              granted_scopes=frozenset())
    old = deps.keyring.primary_id
    before = await _cli(settings, "keys", "status")
    assert before.exit_code == 0, before.output
    assert old in before.output and "1 data_keys" in before.output
    ring = {"GWSYNC_ENCRYPTION_KEYS": f"new:{NEW}"}
    rotated = await _cli(settings, "keys", "rotate", "--batch", "1", **ring)
    assert rotated.exit_code == 0, rotated.output
    assert f"key {old} is no longer used" in rotated.output
    status = await _cli(settings, "keys", "status", **ring)
    assert f"key {old} protects nothing" in status.output
    again = await _cli(settings, "keys", "rotate", **ring)
    assert again.exit_code == 0, again.output


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_rotate_fails_when_a_key_is_missing_from_the_ring(
    settings: Settings, deps: Deps
) -> None:
    """Rows under a key the ring lacks are reported and rotate exits non-zero, losing none."""
    async with deps.sessions.begin() as session:
        await accounts.create(session, deps.keyring, user_id="u", refresh_token="1//t",
                              granted_scopes=frozenset())
    await _cli(settings, "keys", "rotate", GWSYNC_ENCRYPTION_KEYS=f"new:{NEW}")
    other = base64.b64encode(secrets.token_bytes(32)).decode()
    result = await _cli(settings, "keys", "rotate", GWSYNC_ENCRYPTION_KEY=other,
                        GWSYNC_ENCRYPTION_KEYS="")
    assert result.exit_code != 0 and "cannot open the database's keys" in result.output
