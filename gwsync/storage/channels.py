"""Stored push channels: what a notification is checked against, and what renewal reads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from gwsync.storage import accounts
from gwsync.storage.models import Account, WatchChannel


async def find(session: AsyncSession, channel_id: str) -> WatchChannel | None:
    return await session.get(WatchChannel, channel_id)


async def of_feature(session: AsyncSession, account_id: str, feature: str) -> list[WatchChannel]:
    rows = await session.scalars(select(WatchChannel).where(
        WatchChannel.account_id == account_id, WatchChannel.feature == feature))
    return list(rows)


async def of_accounts(session: AsyncSession, account_ids: Sequence[str]) -> list[WatchChannel]:
    rows = await session.scalars(select(WatchChannel).where(
        WatchChannel.account_id.in_(account_ids)))
    return list(rows)


async def by_address(session: AsyncSession, address_hash: str) -> list[WatchChannel]:
    """Gmail watches of a mailbox (normally one; two while a renewal overlaps)."""
    rows = await session.scalars(select(WatchChannel).where(
        WatchChannel.address_hash == address_hash, WatchChannel.feature == "mail_activity"))
    return list(rows)


async def expiring(session: AsyncSession,
                   before: datetime) -> list[tuple[WatchChannel, int]]:
    """Channels of active accounts that end before `before`, with the account generation."""
    rows = await session.execute(
        select(WatchChannel, Account.generation)
        .join(Account, Account.id == WatchChannel.account_id)
        .where(WatchChannel.expires_at < before, Account.status == accounts.ACTIVE)
        .order_by(WatchChannel.expires_at))
    return [(channel, generation) for channel, generation in rows]


async def remove(session: AsyncSession, channel_id: str) -> None:
    await session.execute(delete(WatchChannel).where(WatchChannel.channel_id == channel_id))
