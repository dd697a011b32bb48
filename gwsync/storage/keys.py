"""Per-account data keys: created with the account, destroyed first when it is erased."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from gwsync.storage import crypto
from gwsync.storage.models import DataKey


class KeyShreddedError(LookupError):
    """The account's data key is gone: its data can never be read or written again."""


async def create(session: AsyncSession, master: bytes, account_id: str) -> crypto.RowCipher:
    data_key = crypto.new_data_key()
    session.add(DataKey(account_id=account_id,
                        wrapped_key=crypto.wrap_key(master, account_id, data_key)))
    return crypto.RowCipher(account_id, data_key)


async def cipher(session: AsyncSession, master: bytes, account_id: str) -> crypto.RowCipher:
    wrapped = await session.scalar(
        select(DataKey.wrapped_key).where(DataKey.account_id == account_id)
    )
    if wrapped is None:
        raise KeyShreddedError(account_id)
    return crypto.RowCipher(account_id, crypto.unwrap_key(master, account_id, wrapped))


async def destroy(session: AsyncSession, account_id: str) -> int:
    result = await session.execute(delete(DataKey).where(DataKey.account_id == account_id))
    return result.rowcount or 0
