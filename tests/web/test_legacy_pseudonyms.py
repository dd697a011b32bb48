"""Pseudonyms stored before keyed ones (bare SHA-256) still match the user they name."""

from __future__ import annotations

import uuid

from aiohttp.test_utils import TestClient
from sqlalchemy import update

from gwsync.emulator.seed import seed_demo_user
from gwsync.storage import accounts
from gwsync.storage.models import Account, Erasure
from gwsync.tasks.deps import Deps
from tests.conftest import Emulator
from tests.helpers import USER, connect


async def test_an_old_receipt_and_account_still_answer_their_user_only(
    api: TestClient, deps: Deps, emulator: Emulator
) -> None:
    """A receipt and an account whose subject is the old bare SHA-256 (their user id is gone
    or not yet re-keyed) answer the user it names, and 404 to anyone else."""
    account_id = await connect(api, seed_demo_user(emulator.state, 1).refresh_token)
    legacy = accounts.legacy_subject_hash(USER)
    erasure_id = str(uuid.uuid4())
    async with deps.sessions.begin() as session:
        await session.execute(update(Account).where(Account.id == account_id)
                              .values(subject_hash=legacy))
        session.add(Erasure(id=erasure_id, subject_hash=legacy, trigger="disconnect",
                            state="verified", account_ids=[], scope={}, steps={}, counts={},
                            verification={}))
    for path in (f"/v1/erasures/{erasure_id}", f"/v1/accounts/{account_id}"):
        assert (await api.get(path, params={"user_id": USER})).status == 200, path
        assert (await api.get(path, params={"user_id": "someone-else"})).status == 404, path
    assert accounts.subject_hash(USER, deps.keyring) != legacy
