"""The outbox of events for the main app: written with the change, sent by the worker.

An event is added in the transaction of the change it reports, so a change that rolls
back leaves no event and a committed one always has its event: nothing is lost between
the database and the app, and nothing is announced that did not happen. The worker
(gwsync/tasks/app_webhooks.py) claims due events, posts them and deletes what was
delivered; an event that fails waits longer each time and is given up after a limit.
A given-up event can be queued again (`redeliver`, `gwsync webhooks redeliver`) while it
keeps its body.

What is kept, and for how long (docs/architecture.md §9): the body names the app's user
id, so it is sealed under the keyring; it lives until the event is delivered, or, once
given up, until `GWSYNC_APP_WEBHOOK_KEEP_FAILED_S` after the event was written
(`forget_given_up`). An account's erasure deletes its events, except the two that report
that erasure (`account.revoked`, `erasure.verified`), which the app still has to hear about.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gwsync.core.keyring import Keyring
from gwsync.core.timeutil import rfc3339, utcnow
from gwsync.storage import crypto
from gwsync.storage.db import SessionFactory
from gwsync.storage.models import AppWebhook

HELD, PENDING, FAILED = "held", "pending", "failed"
#: The event types gwsync sends (README.md, Webhooks).
TYPES = ("account.connected", "feature.needs_permission", "sync.completed",
         "account.revoked", "erasure.verified")
#: A retry never waits longer than this.
BACKOFF_CAP_S = 3600.0


@dataclass(frozen=True)
class Outbox:
    """Adds events when the app's webhook is configured; without one, adds nothing."""

    #: The keyring that seals bodies; None when no webhook is configured.
    ring: Keyring | None

    @property
    def enabled(self) -> bool:
        return self.ring is not None

    async def add(self, session: AsyncSession, type_: str, account_id: str,
                  user_id: str | None, *, erasure_id: str | None = None, held: bool = False,
                  data: dict[str, Any] | None = None) -> str | None:
        """Add one event to `session`'s transaction; `held` waits for `release`."""
        if self.ring is None:
            return None
        if type_ not in TYPES:
            raise ValueError(f"unknown event type {type_!r}")
        event_id = f"msg_{uuid.uuid4().hex}"
        body: dict[str, Any] = {"type": type_, "timestamp": rfc3339(utcnow()),
                                "account_id": account_id, "user_id": user_id}
        if erasure_id is not None:
            body["erasure_id"] = erasure_id
        body["data"] = data or {}
        session.add(AppWebhook(
            id=event_id, type=type_, account_id=account_id, erasure_id=erasure_id,
            status=HELD if held else PENDING, attempts=0,
            next_attempt_at=None if held else utcnow(), created_at=utcnow(),
            body_ciphertext=crypto.seal(self.ring, _label(event_id),
                                        json.dumps(body, separators=(",", ":")).encode())))
        return event_id


def _label(event_id: str) -> str:
    return f"app_webhook:{event_id}"


def body_of(ring: Keyring, event: AppWebhook) -> str:
    """The JSON body to send, exactly as signed."""
    if event.body_ciphertext is None:
        raise LookupError(event.id)
    return crypto.unseal(ring, _label(event.id), event.body_ciphertext).decode()


async def release(session: AsyncSession, erasure_id: str) -> None:
    """The erasure is verified: its held `erasure.verified` events become due."""
    await session.execute(update(AppWebhook).where(
        AppWebhook.erasure_id == erasure_id, AppWebhook.status == HELD,
    ).values(status=PENDING, next_attempt_at=utcnow()))


def _not_this_erasure(account_ids: Sequence[str], erasure_id: str) -> ColumnElement[bool]:
    return (AppWebhook.account_id.in_(account_ids)
            & or_(AppWebhook.erasure_id.is_(None), AppWebhook.erasure_id != erasure_id))


async def forget_accounts(session: AsyncSession, account_ids: Sequence[str],
                          erasure_id: str) -> int:
    """Delete the accounts' events but those reporting this erasure; how many went."""
    result = await session.execute(
        delete(AppWebhook).where(_not_this_erasure(account_ids, erasure_id)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]  # DML gives a CursorResult


async def count_left(session: AsyncSession, account_ids: Sequence[str],
                     erasure_id: str) -> int:
    """What `forget_accounts` should have left none of (the erasure's verification)."""
    left = await session.scalar(select(func.count()).select_from(AppWebhook)
                                .where(_not_this_erasure(account_ids, erasure_id)))
    return int(left or 0)


async def claim_due(sessions: SessionFactory, limit: int, lease_s: float) -> list[AppWebhook]:
    """Take up to `limit` due events for one delivery try each.

    A claim moves the event's next try `lease_s` ahead with a compare-and-set on its
    attempts, so two workers never post one event at once, and one whose worker died
    is tried again after the lease.
    """
    now = utcnow()
    async with sessions() as session:
        due = list(await session.scalars(
            select(AppWebhook).where(AppWebhook.status == PENDING,
                                     AppWebhook.next_attempt_at <= now)
            .order_by(AppWebhook.next_attempt_at, AppWebhook.created_at).limit(limit)))
    claimed = []
    for event in due:
        async with sessions.begin() as session:
            result = await session.execute(update(AppWebhook).where(
                AppWebhook.id == event.id, AppWebhook.status == PENDING,
                AppWebhook.attempts == event.attempts,
            ).values(attempts=event.attempts + 1,
                     next_attempt_at=now + timedelta(seconds=lease_s)))
        if result.rowcount == 1:  # type: ignore[attr-defined]  # DML gives a CursorResult
            event.attempts += 1
            claimed.append(event)
    return claimed


async def delivered(sessions: SessionFactory, event: AppWebhook) -> None:
    async with sessions.begin() as session:
        await session.execute(delete(AppWebhook).where(AppWebhook.id == event.id))


def next_delay(base_s: float, attempts: int) -> float:
    """Exponential, capped, half of it random: receivers that failed together spread out."""
    step = float(min(base_s * 2 ** (max(attempts, 1) - 1), BACKOFF_CAP_S))
    return step / 2 + random.uniform(0, step / 2)


async def failed(sessions: SessionFactory, event: AppWebhook, error: str, *,
                 max_attempts: int, base_s: float) -> bool:
    """Schedule the next try, or give the event up past `max_attempts` (True then).

    A given-up event keeps its type, account, erasure and error for the ops page, and its
    sealed body until `forget_given_up` drops it, so it can be redelivered meanwhile.
    """
    give_up = event.attempts >= max_attempts
    values: dict[str, Any] = {"last_error": error[:100]}
    if give_up:
        values.update(status=FAILED, next_attempt_at=None)
    else:
        values["next_attempt_at"] = utcnow() + timedelta(
            seconds=next_delay(base_s, event.attempts))
    async with sessions.begin() as session:
        await session.execute(update(AppWebhook).where(
            AppWebhook.id == event.id, AppWebhook.attempts == event.attempts).values(**values))
    return give_up


def _chosen(ids: Sequence[str] | None, since: datetime | None) -> ColumnElement[bool]:
    """Given-up events, all of them or those named by id or written since a time."""
    chosen = AppWebhook.status == FAILED
    if ids is not None:
        chosen &= AppWebhook.id.in_(ids)
    if since is not None:
        chosen &= AppWebhook.created_at >= since
    return chosen


@dataclass(frozen=True)
class Redelivered:
    """What `redeliver` did: events queued again, and those too old to be (no body)."""

    queued: int
    expired: int


async def redeliver(sessions: SessionFactory, *, ids: Sequence[str] | None = None,
                    since: datetime | None = None) -> Redelivered:
    """Queue given-up events again, due now, with a fresh retry budget; an event whose
    body was already dropped cannot be sent again and is counted as expired."""
    async with sessions.begin() as session:
        result = await session.execute(
            update(AppWebhook).where(_chosen(ids, since), AppWebhook.body_ciphertext.is_not(None))
            .values(status=PENDING, attempts=0, next_attempt_at=utcnow(), last_error=None))
        expired = await session.scalar(select(func.count()).select_from(AppWebhook)
                                       .where(_chosen(ids, since)))
    return Redelivered(int(result.rowcount or 0),  # type: ignore[attr-defined]
                       int(expired or 0))


async def forget_given_up(sessions: SessionFactory, before: datetime) -> int:
    """Drop the bodies of given-up events written before `before` (the keep window): the
    row stays for the ops page, naming no user; how many bodies went."""
    async with sessions.begin() as session:
        result = await session.execute(update(AppWebhook).where(
            AppWebhook.status == FAILED, AppWebhook.created_at < before,
            AppWebhook.body_ciphertext.is_not(None)).values(body_ciphertext=None))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]  # DML gives a CursorResult


@dataclass(frozen=True)
class Undelivered:
    """Events not yet delivered, by status and type, and the oldest one's creation."""

    counts: dict[str, dict[str, int]]
    oldest: datetime | None


async def undelivered(session: AsyncSession) -> Undelivered:
    """Counts only (the ops snapshot): no id, no body."""
    rows = await session.execute(
        select(AppWebhook.status, AppWebhook.type, func.count(), func.min(AppWebhook.created_at))
        .where(AppWebhook.status != HELD)
        .group_by(AppWebhook.status, AppWebhook.type))
    counts: dict[str, dict[str, int]] = {}
    oldest: datetime | None = None
    for status, type_, count, first in rows.all():
        counts.setdefault(str(status), {})[str(type_)] = int(count)
        if status == PENDING and first is not None and (oldest is None or first < oldest):
            oldest = first
    return Undelivered(counts, oldest)
