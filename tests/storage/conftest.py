"""What the storage specifications share: one active account with the contacts scope."""

from __future__ import annotations

import pytest

from gwsync.domain.features import FEATURES
from gwsync.storage import accounts
from gwsync.tasks.deps import Deps

CONTACTS = FEATURES["contacts"]


@pytest.fixture
async def account_id(deps: Deps) -> str:
    """An active account (user `u-1`) whose grant covers the contacts feature."""
    async with deps.sessions.begin() as session:
        account = await accounts.create(
            session, deps.keyring, user_id="u-1", refresh_token="1//secret",
            granted_scopes=frozenset({CONTACTS.scope}))
    return account.id
