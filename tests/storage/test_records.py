"""The record store on SQLite and PostgreSQL: fenced writes, purpose-checked reads, shredding."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, update

from gwsync.core.timeutil import utcnow
from gwsync.domain.features import FEATURES
from gwsync.domain.pages import Page, Removal, Upsert
from gwsync.domain.purpose import LimitedUseViolation
from gwsync.storage import accounts, purge
from gwsync.storage.models import AccessLog, Account, Base, DataKey, Erasure, Record
from gwsync.tasks.deps import Deps
from tests.erasure_proof import ErasureProof

CONTACTS = FEATURES["contacts"]
MARKER = "Mk8StoreMarkerTz"


def _page(*names: str) -> Page:
    return Page(upserts=[Upsert("contact", f"people/{n}", {"name": n, "emails": [],
                                                           "phones": [], "notes": "private"})
                         for n in names])


def _marked_page() -> Page:
    """Two contacts, the first named with the marker (which its external id does not hold)."""
    return Page(upserts=[Upsert("contact", f"people/c{i}", {"name": name, "emails": [],
                                                            "phones": []})
                         for i, name in enumerate((f"{MARKER} Lovelace", "Grace"))])


async def _begin_erasure(deps: Deps, account_id: str) -> Erasure:
    async with deps.sessions.begin() as session:
        account = await session.get(Account, account_id)
        assert account is not None
        return await purge.begin(session, deps.keyring, [account],
                                 subject_hash=account.subject_hash, trigger="disconnect")


async def _count(deps: Deps, model: type[Base]) -> int:
    async with deps.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_migrations_match_the_models(deps: Deps) -> None:
    """The Alembic head creates exactly the schema the models declare."""
    async with deps.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
    assert diff == []


async def test_writes_store_only_declared_fields_with_purpose(deps: Deps, account_id: str) -> None:
    """A page is stored minimised, encrypted, with the feature's purpose metadata."""
    await deps.store.write_page(account_id, 1, CONTACTS, _page("c1"), epoch=1)
    async with deps.sessions() as session:
        row = await session.scalar(select(Record))
    assert row is not None
    assert b"c1" not in row.content and b"private" not in row.content
    assert (row.data_use, row.scope, row.source_api) == (
        "feature:contacts", CONTACTS.scope, "people")
    assert row.policy_version == deps.settings.policy_version
    result = await deps.store.read(account_id, use="feature:contacts", actor="test")
    assert result.items[0]["content"] == {"name": "c1", "emails": [], "phones": []}


async def test_a_record_is_unique_per_account_kind_and_id(deps: Deps, account_id: str) -> None:
    """Writing the same item twice, even in one page, leaves one row with the latest content."""
    page = Page(upserts=[Upsert("contact", "people/c1", {"name": "old"}),
                         Upsert("contact", "people/c1", {"name": "new"})])
    await deps.store.write_page(account_id, 1, CONTACTS, page, epoch=1)
    await deps.store.write_page(account_id, 1, CONTACTS, page, epoch=1)
    assert await _count(deps, Record) == 1
    result = await deps.store.read(account_id, use="feature:contacts", actor="test")
    assert result.items[0]["content"]["name"] == "new"


async def test_removals_delete(deps: Deps, account_id: str) -> None:
    """A removal in a page deletes the stored item."""
    await deps.store.write_page(account_id, 1, CONTACTS, _page("c1", "c2"), epoch=1)
    await deps.store.write_page(account_id, 1, CONTACTS,
                                Page(removals=[Removal("contact", "people/c1")]), epoch=1)
    result = await deps.store.read(account_id, use="feature:contacts", actor="test")
    assert [i["id"] for i in result.items] == ["people/c2"]


async def test_a_write_under_an_old_generation_writes_nothing(
    deps: Deps, account_id: str
) -> None:
    """Once an erasure has bumped the generation, an in-flight sync's page is refused whole."""
    await deps.store.write_page(account_id, 1, CONTACTS, _page("c1"), epoch=1)
    async with deps.sessions.begin() as session:
        account = await session.get(Account, account_id)
        assert account is not None
        await purge.begin(session, deps.keyring, [account], subject_hash="h",
                          trigger="disconnect")
    with pytest.raises(accounts.FencedError):
        await deps.store.write_page(account_id, 1, CONTACTS, _page("c2", "c3"), epoch=1)
    with pytest.raises(accounts.FencedError):
        await deps.store.write_page(account_id, 2, CONTACTS, _page("c4"), epoch=1)
    assert await _count(deps, Record) == 1


async def test_every_read_decision_is_audited(deps: Deps, account_id: str) -> None:
    """Allowed and refused reads both land in the access log, with use, decision and count."""
    await deps.store.write_page(account_id, 1, CONTACTS, _page("c1", "c2"), epoch=1)
    await deps.store.read(account_id, use="feature:contacts", actor="app")
    with pytest.raises(LimitedUseViolation):
        await deps.store.read(account_id, use="advertising", actor="app")
    async with deps.sessions() as session:
        rows = [(r.use, r.decision, r.record_count) for r in
                await session.scalars(select(AccessLog).order_by(AccessLog.id))]
    assert rows == [("feature:contacts", "allowed", 2), ("advertising", "refused", 0)]


async def test_expired_records_are_not_served(deps: Deps, account_id: str) -> None:
    """A record past its retention is never returned by a read."""
    await deps.store.write_page(account_id, 1, CONTACTS, _page("c1", "c2"), epoch=1)
    async with deps.sessions.begin() as session:
        await session.execute(update(Record).where(Record.external_id == "people/c1")
                              .values(expires_at=utcnow() - timedelta(seconds=1)))
    result = await deps.store.read(account_id, use="feature:contacts", actor="test")
    assert [i["id"] for i in result.items] == ["people/c2"]


async def test_a_records_backup_is_unreadable_once_the_key_is_shredded(
    deps: Deps, account_id: str
) -> None:
    """A copy of the records taken before erasure, readable then with the account's key,
    yields nothing once the erasure is recorded: that key is gone and no other opens it."""
    await deps.store.write_page(account_id, 1, CONTACTS, _marked_page(), epoch=1)
    await _other_account_with_a_key(deps)
    proof = await ErasureProof.capture(deps, account_id, marker=MARKER, check_redis=False)
    erasure = await _begin_erasure(deps, account_id)
    assert erasure.counts["data_keys"] == 1 and erasure.state == "shredded"
    assert await _count(deps, Record) == 2  # the rows are all still there
    await proof.assert_shredded()
    async with deps.sessions() as session:
        account = await session.get(Account, account_id)
        assert account is not None
        held = await session.scalar(select(func.count()).select_from(DataKey))
    assert account.grant_ciphertext is None
    assert held == 1  # the other account's key was tried on every row


async def test_delete_rows_leaves_a_tombstone_without_personal_data(
    deps: Deps, account_id: str
) -> None:
    """After deletion the account row keeps only its hashed subject and status, and nothing
    captured before (identifiers, the readable marker) is anywhere in the database."""
    await deps.store.write_page(account_id, 1, CONTACTS, _marked_page(), epoch=1)
    await deps.store.read(account_id, use="feature:contacts", actor="test")
    proof = await ErasureProof.capture(deps, account_id, marker=MARKER, check_redis=False)
    erasure = await _begin_erasure(deps, account_id)
    counts = await purge.delete_rows(deps.sessions, erasure)
    assert counts["records"] == 2 and counts["access_log"] == 1 and counts["sync_states"] == 5
    remaining = await purge.recount(deps.sessions, erasure)
    assert remaining and not any(remaining.values())
    async with deps.sessions() as session:
        account = await session.get(Account, account_id)
    assert account is not None
    assert (account.status, account.user_id, account.token_sha512x2) == ("erased", None, None)
    assert account.subject_hash == accounts.subject_hash("u-1")
    await proof.assert_erased()


async def _other_account_with_a_key(deps: Deps) -> str:
    async with deps.sessions.begin() as session:
        other = await accounts.create(
            session, deps.keyring, user_id="u-2", refresh_token="1//other",
            granted_scopes=frozenset({CONTACTS.scope}))
    return other.id
