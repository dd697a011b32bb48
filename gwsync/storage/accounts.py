"""Accounts: the encrypted grant, the granted scopes, and the fence every write checks."""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gwsync.connectors.features import FEATURES
from gwsync.storage import crypto, keys
from gwsync.storage.models import Account, SyncState
from gwsync.timeutil import utcnow

ACTIVE = "active"
ERASING = "erasing"
ERASED = "erased"


class FencedError(RuntimeError):
    """The account was erased (or is being erased) since this work began: write nothing."""


class UnknownAccountError(LookupError):
    """No account has this id."""


def subject_hash(user_id: str) -> str:
    """The only form in which a subject appears in receipts and tombstones."""
    return hashlib.sha256(f"gwsync-subject:{user_id}".encode()).hexdigest()


def token_hashes(refresh_token: str) -> tuple[str, str]:
    """Hashes Cross-Account Protection events identify a token by (prefix, SHA-512²)."""
    prefix = prefix_hash(refresh_token[:16])
    inner = hashlib.sha512(refresh_token.encode()).digest()
    return prefix, base64.b64encode(hashlib.sha512(inner).digest()).decode()


def google_sub_hash(sub: str) -> str:
    """How a Google account id (`sub`) is kept: enough to match security events, no more."""
    return hashlib.sha256(f"gwsync-google-sub:{sub}".encode()).hexdigest()


def prefix_hash(prefix: str) -> str:
    return hashlib.sha256(prefix.encode()).hexdigest()


@dataclass(frozen=True)
class Grant:
    refresh_token: str
    granted_scopes: frozenset[str]


async def create(
    session: AsyncSession,
    master: bytes,
    *,
    user_id: str,
    refresh_token: str,
    granted_scopes: frozenset[str],
    google_sub: str | None = None,
) -> Account:
    """A new account with its own data key; the refresh token is stored only encrypted."""
    account_id = str(uuid.uuid4())
    prefix, sha512x2 = token_hashes(refresh_token)
    account = Account(
        id=account_id, user_id=user_id, subject_hash=subject_hash(user_id), status=ACTIVE,
        generation=1, granted_scopes=" ".join(sorted(granted_scopes)),
        token_prefix_hash=prefix, token_sha512x2=sha512x2,
        google_sub_hash=google_sub_hash(google_sub) if google_sub else None,
    )
    session.add(account)
    await session.flush()
    cipher = await keys.create(session, master, account_id)
    account.grant_ciphertext = cipher.encrypt(crypto.grant_row(), refresh_token.encode())
    for name in FEATURES:
        session.add(SyncState(account_id=account_id, feature=name))
    return account


async def get(session: AsyncSession, account_id: str) -> Account:
    account = await session.get(Account, account_id)
    if account is None:
        raise UnknownAccountError(account_id)
    return account


async def grant(session: AsyncSession, master: bytes, account: Account) -> Grant:
    if account.grant_ciphertext is None:
        raise keys.KeyShreddedError(account.id)
    cipher = await keys.cipher(session, master, account.id)
    token = cipher.decrypt(crypto.grant_row(), account.grant_ciphertext).decode()
    return Grant(token, frozenset(account.granted_scopes.split()))


async def replace_grant(
    session: AsyncSession, master: bytes, account: Account, refresh_token: str
) -> None:
    """Store a newer refresh token (an incremental consent) under the account's data key.

    The token hashes follow, so Cross-Account Protection events name the live token.
    """
    cipher = await keys.cipher(session, master, account.id)
    account.grant_ciphertext = cipher.encrypt(crypto.grant_row(), refresh_token.encode())
    account.token_prefix_hash, account.token_sha512x2 = token_hashes(refresh_token)


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
    if result.rowcount != 1:
        raise FencedError(account_id)


async def for_user(session: AsyncSession, user_id: str) -> list[Account]:
    rows = await session.scalars(select(Account).where(Account.user_id == user_id))
    return list(rows)
