"""Accounts: the encrypted grant, the granted scopes, and the fence every write checks."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gwsync.core import keyring
from gwsync.core.keyring import Keyring
from gwsync.core.timeutil import utcnow
from gwsync.domain.features import FEATURES
from gwsync.storage import crypto, keys
from gwsync.storage.models import Account, SyncState

ACTIVE = "active"
ERASING = "erasing"
ERASED = "erased"


class FencedError(RuntimeError):
    """The account was erased (or is being erased) since this work began, or another run
    took over this sync's lease (gwsync/storage/leases.py): write nothing."""


class UnknownAccountError(LookupError):
    """No account has this id."""


def _ring(ring: Keyring | None) -> Keyring:
    return ring if ring is not None else keyring.installed()


def subject_hash(user_id: str, ring: Keyring | None = None) -> str:
    """The only form in which a subject appears in receipts and tombstones: a keyed
    pseudonym (HMAC under the pseudonym key), so a list of user ids cannot be hashed to
    find who was erased. Without `ring`, the process's keyring (set when Deps open)."""
    return _ring(ring).pseudonyms.hash("subject", user_id)


def token_hashes(refresh_token: str, ring: Keyring | None = None) -> tuple[str, str]:
    """How Cross-Account Protection events identify a token — its first 16 characters, or
    SHA-512 of SHA-512 — each kept only as a keyed pseudonym of that form."""
    prefix = prefix_hash(refresh_token[:16], ring)
    return prefix, sha512x2_hash(sha512x2(refresh_token), ring)


def sha512x2(refresh_token: str) -> str:
    """Google's `hash_base64_sha512_sha512` token identifier."""
    inner = hashlib.sha512(refresh_token.encode()).digest()
    return base64.b64encode(hashlib.sha512(inner).digest()).decode()


def sha512x2_hash(identifier: str, ring: Keyring | None = None) -> str:
    return _ring(ring).pseudonyms.hash("token-sha512x2", identifier)


def google_sub_hash(sub: str, ring: Keyring | None = None) -> str:
    """How a Google account id (`sub`) is kept: enough to match security events, no more."""
    return _ring(ring).pseudonyms.hash("google-sub", sub)


def legacy_subject_hash(user_id: str) -> str:
    """The bare SHA-256 subject of before keyed pseudonyms: tombstones and receipts of
    erased users keep it (their user id is gone, so it cannot be re-computed)."""
    return hashlib.sha256(f"gwsync-subject:{user_id}".encode()).hexdigest()


def legacy_google_sub_hash(sub: str) -> str:
    """The bare SHA-256 stored before keyed pseudonyms; `sub` is not kept, so these cannot
    be re-computed and are still matched (gwsync/web/risc.py) until the user consents again."""
    return hashlib.sha256(f"gwsync-google-sub:{sub}".encode()).hexdigest()


def prefix_hash(prefix: str, ring: Keyring | None = None) -> str:
    return _ring(ring).pseudonyms.hash("token-prefix", prefix)


@dataclass(frozen=True)
class Grant:
    refresh_token: str
    granted_scopes: frozenset[str]


async def create(
    session: AsyncSession,
    ring: Keyring,
    *,
    user_id: str,
    refresh_token: str,
    granted_scopes: frozenset[str],
    google_sub: str | None = None,
) -> Account:
    """A new account with its own data key; the refresh token is stored only encrypted."""
    account_id = str(uuid.uuid4())
    prefix, hashed_sha512x2 = token_hashes(refresh_token, ring)
    account = Account(
        id=account_id, user_id=user_id, subject_hash=subject_hash(user_id, ring),
        status=ACTIVE, generation=1, granted_scopes=" ".join(sorted(granted_scopes)),
        token_prefix_hash=prefix, token_sha512x2=hashed_sha512x2,
        google_sub_hash=google_sub_hash(google_sub, ring) if google_sub else None,
    )
    session.add(account)
    await session.flush()
    cipher = await keys.create(session, ring, account_id)
    account.grant_ciphertext = cipher.encrypt(crypto.grant_row(), refresh_token.encode())
    for name in FEATURES:
        session.add(SyncState(account_id=account_id, feature=name))
    return account


async def get(session: AsyncSession, account_id: str) -> Account:
    account = await session.get(Account, account_id)
    if account is None:
        raise UnknownAccountError(account_id)
    return account


async def grant(session: AsyncSession, ring: Keyring, account: Account) -> Grant:
    if account.grant_ciphertext is None:
        raise keys.KeyShreddedError(account.id)
    cipher = await keys.cipher(session, ring, account.id)
    token = cipher.decrypt(crypto.grant_row(), account.grant_ciphertext).decode()
    return Grant(token, frozenset(account.granted_scopes.split()))


async def replace_grant(
    session: AsyncSession, ring: Keyring, account: Account, refresh_token: str
) -> None:
    """Store a newer refresh token (an incremental consent) under the account's data key.

    The token hashes follow, so Cross-Account Protection events name the live token.
    """
    cipher = await keys.cipher(session, ring, account.id)
    account.grant_ciphertext = cipher.encrypt(crypto.grant_row(), refresh_token.encode())
    account.token_prefix_hash, account.token_sha512x2 = token_hashes(refresh_token, ring)


async def fence(session: AsyncSession, account_id: str, generation: int) -> None:
    """Lock the account row for this transaction, or raise if its generation moved on.

    The UPDATE takes the row lock that an erasure's generation bump also needs, so
    either this transaction commits before the erasure begins, or it writes nothing.
    """
    result = await session.execute(
        update(Account)
        .where(Account.id == account_id, Account.generation == generation,
               Account.status == ACTIVE)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]  # DML gives a CursorResult
        raise FencedError(account_id)


async def lock(session: AsyncSession, account_ids: Sequence[str]) -> None:
    """Take the accounts' row locks before reading them, so that two erasures of one
    account run one after the other and the second sees what the first did.

    An UPDATE first: PostgreSQL locks the rows until commit, and SQLite takes its write
    lock at once (waiting for it) rather than failing on a stale read later. One row at a
    time in id order, so two erasures of overlapping accounts never deadlock.
    """
    for account_id in sorted(set(account_ids)):
        await session.execute(update(Account).where(Account.id == account_id)
                              .values(updated_at=utcnow())
                              .execution_options(synchronize_session=False))


async def for_user(session: AsyncSession, user_id: str) -> list[Account]:
    rows = await session.scalars(select(Account).where(Account.user_id == user_id))
    return list(rows)
