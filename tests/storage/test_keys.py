"""Data keys per feature: a withdrawn feature's key goes with it, the account's stays."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from gwsync.core.timeutil import rfc3339, utcnow
from gwsync.domain.pages import Page, Upsert
from gwsync.storage import accounts, crypto, keys, purge
from gwsync.storage.models import Account, FeatureKey, Record
from gwsync.tasks.deps import Deps
from tests.erasure_proof import held_data_keys
from tests.storage.conftest import CONTACTS

MARKER = "FeatKeyMarkerP3"


def _page() -> Page:
    return Page(upserts=[Upsert("contact", "people/c1",
                                {"name": MARKER})])


async def test_a_features_records_are_encrypted_under_its_own_key(
    deps: Deps, account_id: str
) -> None:
    """A feature's first write creates its key; its rows do not open under the account's."""
    await deps.store.write_page(account_id, 1, CONTACTS, _page(), epoch=1)
    async with deps.sessions() as session:
        names = list(await session.scalars(select(FeatureKey.feature)))
        assert len(names) == 1 and names[0].startswith("contacts@")
        row = await session.scalar(select(Record))
        assert row is not None
        own = await keys.cipher(session, deps.keyring, account_id)
    with pytest.raises(crypto.DecryptionError):
        own.decrypt(crypto.record_row(row.kind, row.external_id), row.content)


async def test_withdrawing_a_feature_shreds_its_key_at_once_and_keeps_the_grant(
    deps: Deps, account_id: str
) -> None:
    """From the moment a feature's erasure is recorded, no key the database holds opens a
    backup of its rows; the account's grant still opens."""
    await deps.store.write_page(account_id, 1, CONTACTS, _page(), epoch=1)
    async with deps.sessions() as session:
        backup = [(r.kind, r.external_id, r.content) for r in await session.scalars(
            select(Record).where(Record.kind == "contact"))]
    before = (await held_data_keys(deps))[account_id]

    def opened(held: list[bytes]) -> list[bytes]:
        found = []
        for kind, external_id, blob in backup:
            for key in held:
                try:
                    found.append(crypto.RowCipher(account_id, key).decrypt(
                        crypto.record_row(kind, external_id), blob))
                except crypto.DecryptionError:
                    continue
        return found

    assert any(MARKER.encode() in p for p in opened(before))
    async with deps.sessions.begin() as session:
        account = await session.get(Account, account_id)
        assert account is not None
        erasure = await purge.begin(session, deps.keyring, [account], subject_hash="h",
                                    trigger="scope_withdrawn", scope={"features": ["contacts"]})
    assert erasure.counts == {"feature_keys": 1}
    assert opened((await held_data_keys(deps))[account_id]) == []
    async with deps.sessions() as session:
        account = await session.get(Account, account_id)
        assert account is not None
        assert (await accounts.grant(session, deps.keyring, account)).refresh_token == "1//secret"


async def test_the_retention_sweep_shreds_the_keys_of_months_that_are_over(
    deps: Deps, account_id: str
) -> None:
    """Records are encrypted per month of expiry; erasing what expired before now destroys
    the keys of months already over, so a backup of those rows opens under no key held,
    while records still within retention read on."""
    now = utcnow()
    past = now - timedelta(days=40)
    await deps.store.write_page(account_id, 1, CONTACTS, Page(upserts=[
        Upsert("contact", "people/old", {"name": MARKER}, expires_at=past),
        Upsert("contact", "people/new", {"name": "Kept"})]), epoch=1)
    async with deps.sessions() as session:
        old = await session.scalar(select(Record).where(Record.external_id == "people/old"))
        assert old is not None
        names = set(await session.scalars(select(FeatureKey.feature)))
    assert names == {keys.period_key("contacts", past), keys.period_key("contacts",
                                                                         now + CONTACTS.retention)}
    async with deps.sessions.begin() as session:
        account = await session.get(Account, account_id)
        assert account is not None
        erasure = await purge.begin(session, deps.keyring, [account], subject_hash="h",
                                    trigger="retention",
                                    scope={"expired_before": rfc3339(now)})
    assert erasure.counts == {"period_keys": 1}
    for key in (await held_data_keys(deps))[account_id]:
        with pytest.raises(crypto.DecryptionError):
            crypto.RowCipher(account_id, key).decrypt(
                crypto.record_row(old.kind, old.external_id), old.content)
    await purge.delete_rows(deps.sessions, erasure)
    result = await deps.store.read(account_id, use="feature:contacts", actor="test")
    assert [i["id"] for i in result.items] == ["people/new"]
