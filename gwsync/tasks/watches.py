"""Push watches' lifecycle: opened after a feature's first sync, renewed before they
expire, stopped when the account is erased.

A channel row is written fenced by the account generation, so a watch opened while an
erasure begins is stopped again at Google instead of being stored. A notification is
only ever acted on through a stored row, so once an erasure deleted the rows, a late
notification finds nothing and changes nothing.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from typing import Any

from arq import Retry
from googleapiclient.discovery import Resource

from gwsync.connectors import client, oauth, quota, watches
from gwsync.connectors.errors import GoogleError, TemporaryError
from gwsync.core import logs
from gwsync.core.settings import Settings
from gwsync.core.timeutil import utcnow
from gwsync.domain import features
from gwsync.storage import accounts, channels, keys, purge
from gwsync.storage.models import Account, Erasure, SyncState, WatchChannel
from gwsync.tasks.deps import Deps
from gwsync.tasks.liveness import Live
from gwsync.tasks.outcomes import Skip
from gwsync.tasks.retry import backoff

log = logs.get("gwsync.watches")
WATCH = "watch_feature"
MAX_TRIES = 3
_told_polling: set[str] = set()


def enabled(settings: Settings, feature: str) -> bool:
    """Watched, and the deployment says where Google should notify."""
    if not watches.declared(feature):
        return False
    if watches.WATCHED[feature][0] == "gmail":
        # Pushes are authenticated by Pub/Sub's OIDC token, or else by the URL token.
        return bool(settings.gmail_push_topic and settings.gmail_push_subscription
                    and (settings.push_oidc or settings.push_token))
    return settings.public_url is not None


def _tell_polling_once(feature: str) -> None:
    if feature not in _told_polling:
        _told_polling.add(feature)
        log.info("push_disabled", feature=feature, reason="push settings unset; polling only")


async def after_sync(deps: Deps, account_id: str, feature: str, generation: int) -> None:
    """A sync succeeded: queue a watch if the feature is watched and has no channel yet."""
    if feature not in watches.WATCHED:
        return
    if not enabled(deps.settings, feature):
        _tell_polling_once(feature)
        return
    async with deps.sessions() as session:
        if await channels.of_feature(session, account_id, feature):
            return
    await enqueue(deps, account_id, feature, generation)


async def enqueue(deps: Deps, account_id: str, feature: str, generation: int,
                  replacing: str | None = None) -> bool:
    """One queued watch job per account and feature (its id names both, so an erasure
    drops it with the account's other jobs; the queue registers it in the account's job
    index, so the erasure finds it without reading the whole queue)."""
    return await deps.queue.enqueue_account_job(
        WATCH, account_id, feature, generation, replacing,
        job_id=f"{deps.queue.prefix}:watch:{account_id}:{feature}")


def _valid_args(account_id: Any, feature: Any, generation: Any, replacing: Any) -> bool:
    return (isinstance(account_id, str) and len(account_id) == 36
            and feature in watches.WATCHED and isinstance(generation, int)
            and not isinstance(generation, bool)
            and (replacing is None or isinstance(replacing, str)))


async def watch_feature(ctx: dict[str, Any], account_id: str, feature: str, generation: int,
                        replacing: str | None = None) -> dict[str, Any]:
    """Open a watch of one feature (or replace the channel `replacing`)."""
    deps: Deps = ctx["deps"]
    if not _valid_args(account_id, feature, generation, replacing):
        log.warning("bad_job_args", job=WATCH)
        return {"outcome": "bad_args"}
    if not enabled(deps.settings, feature):
        return {"outcome": "disabled"}
    bound = log.bind(account_id=account_id, feature=feature)
    try:
        return await _watch(deps, account_id, features.get(feature), generation, replacing)
    except Skip as why:
        bound.info("watch_skipped", reason=str(why))
        return {"outcome": "skipped", "reason": str(why)}
    except (accounts.FencedError, keys.KeyShreddedError):
        return {"outcome": "fenced"}
    except TemporaryError as exc:
        if ctx.get("job_try", 1) < MAX_TRIES:
            raise Retry(defer=exc.retry_after
                        or backoff(deps.settings, ctx.get("job_try", 1))) from None
        bound.warning("watch_failed", category=str(exc.category), detail=exc.detail)
        return {"outcome": "failed", "category": str(exc.category)}
    except GoogleError as exc:  # polling goes on; the cron or next sync tries again
        bound.warning("watch_failed", category=str(exc.category), detail=exc.detail)
        return {"outcome": "failed", "category": str(exc.category)}


async def _target(deps: Deps, account_id: str, feature: features.Feature, generation: int,
                  replacing: str | None) -> tuple[str, str | None]:
    """(refresh token, sync cursor) of an account that may be watched now."""
    async with deps.sessions() as session:
        account = await session.get(Account, account_id)
        if account is None or account.status != accounts.ACTIVE:
            raise Skip("account not active")
        if account.generation != generation:
            raise Skip("account generation moved on")
        if feature.scope not in account.granted_scopes.split():
            raise Skip("feature scope not granted")
        state = await session.get(SyncState, (account_id, feature.name))
        if state is None or state.stage != "incremental" or not state.cursor:
            raise Skip("feature not synced yet")
        existing = {c.channel_id for c in await channels.of_feature(session, account_id,
                                                                    feature.name)}
        if replacing is None and existing:
            raise Skip("already watched")
        if replacing is not None and replacing not in existing:
            raise Skip("channel already replaced")
        grant = await accounts.grant(session, deps.keyring, account)
    return grant.refresh_token, state.cursor


async def _service(deps: Deps, refresh_token: str, feature: features.Feature) -> Resource:
    """A client with a fresh access token of `feature`'s scope only."""
    token = await oauth.access_token(deps.oauth, refresh_token, feature.scope)
    return client.service(watches.WATCHED[feature.name][0], token.token, deps.endpoints,
                          deps.settings.http_timeout_s)


async def _watch(deps: Deps, account_id: str, feature: features.Feature, generation: int,
                 replacing: str | None) -> dict[str, Any]:
    refresh_token, cursor = await _target(deps, account_id, feature, generation, replacing)
    await Live(deps.queue, account_id)()
    service = await _service(deps, refresh_token, feature)
    try:
        row = await _open(deps, service, account_id, feature.name, cursor)
        try:
            old = await _save(deps, row, generation, replacing)
        except accounts.FencedError:
            await _stop_quietly(service, row, quota.Budget(deps.limiter, account_id))
            raise
        if old is not None and feature.name != "mail_activity":
            # Gmail has one watch per mailbox: the renewal above *is* the new watch.
            await _stop_quietly(service, old, quota.Budget(deps.limiter, account_id))
    finally:
        service.close()
    log.info("watch_opened", account_id=account_id, feature=feature.name,
             renewal=replacing is not None, expires_at=row.expires_at.isoformat())
    return {"outcome": "renewed" if replacing else "watching", "channel_id": row.channel_id}


async def _open(deps: Deps, service: Resource, account_id: str, feature: str,
                cursor: str | None) -> WatchChannel:
    """Ask Google for the watch; the row to store (not yet stored)."""
    settings, channel_id = deps.settings, str(uuid.uuid4())
    budget = quota.Budget(deps.limiter, account_id, Live(deps.queue, account_id))
    if feature == "mail_activity":
        watch = await watches.watch_mailbox(service, settings.gmail_push_topic or "", budget)
        email = await watches.mailbox_address(service, budget)
        return WatchChannel(channel_id=channel_id, account_id=account_id, feature=feature,
                            address_hash=watches.address_hash(deps.keyring.pseudonyms.subkey("mailbox-address"),
                                                            email),
                            expires_at=watch.expires_at, created_at=utcnow())
    secret = secrets.token_urlsafe(32)
    api = watches.WATCHED[feature][0]
    address = f"{settings.public_url}/webhooks/google/{api}"
    watch = await watches.watch_channel(service, feature, channel_id, address, secret,
                                        settings.watch_ttl_s, cursor, budget)
    return WatchChannel(channel_id=channel_id, account_id=account_id, feature=feature,
                        token_hash=watches.token_hash(secret), resource_id=watch.resource_id,
                        expires_at=watch.expires_at, created_at=utcnow())


async def _save(deps: Deps, row: WatchChannel, generation: int,
                replacing: str | None) -> WatchChannel | None:
    """Store the new channel and forget the one it replaces (returned, for stopping)."""
    async with deps.sessions.begin() as session:
        await accounts.fence(session, row.account_id, generation)
        old = await channels.find(session, replacing) if replacing else None
        session.add(row)
        if old is not None:
            await channels.remove(session, old.channel_id)
            session.expunge(old)
    return old


async def _stop_quietly(service: Resource, row: WatchChannel,
                        budget: quota.Budget = quota.UNMETERED) -> bool:
    """Stop at Google, best effort: a channel that outlives us is ignored when it calls."""
    try:
        if row.feature == "mail_activity":
            await watches.stop_mailbox(service, budget)
        else:
            await watches.stop_channel(service, row.feature, row.channel_id, row.resource_id,
                                       budget)
    except GoogleError as exc:
        log.info("watch_stop_failed", feature=row.feature, detail=exc.detail)
        return False
    return True


async def renew_watches(ctx: dict[str, Any]) -> dict[str, Any]:
    """Cron: queue a replacement for every channel that ends within the renewal margin."""
    deps: Deps = ctx["deps"]
    before = utcnow() + timedelta(seconds=deps.settings.watch_renew_margin_s)
    async with deps.sessions() as session:
        due = await channels.expiring(session, before)
    queued = 0
    for row, generation in due:
        if enabled(deps.settings, row.feature):
            queued += await enqueue(deps, row.account_id, row.feature, generation,
                                    replacing=row.channel_id)
    if due:
        log.info("watches_renewing", due=len(due), queued=queued)
    return {"due": len(due), "queued": queued}


async def stop_for_erasure(deps: Deps, erasure: Erasure) -> int:
    """Stop the erased accounts' channels at Google, best effort; returns how many stopped.

    Stopping needs an access token of the same user and client, so this runs in the erase
    job before the sealed grants are revoked (after revocation Google stops delivering for
    the grant anyway [unconfirmed], and a channel unknown here is refused when it calls).
    The sealed grants are not keyed by account, so each channel is tried with each grant
    until one stops it; Gmail's ``users.stop`` names no channel (it stops the mailbox of
    whoever calls), so it is called once with every grant that has a Gmail watch here.
    """
    tokens = purge.sealed_tokens(deps.keyring, erasure)
    if not tokens or not erasure.account_ids:
        return 0
    async with deps.sessions() as session:
        rows = await channels.of_accounts(session, erasure.account_ids)
    stopped = 0
    for row in (r for r in rows if r.feature != "mail_activity"):
        for refresh_token in tokens:
            if await _stop_with(deps, row, refresh_token):
                stopped += 1
                break
    mailbox = next((r for r in rows if r.feature == "mail_activity"), None)
    if mailbox is not None:
        for refresh_token in tokens:
            stopped += await _stop_with(deps, mailbox, refresh_token)
    if rows:
        log.info("watches_stopped", erasure_id=erasure.id, channels=len(rows), stopped=stopped)
    return stopped


async def _stop_with(deps: Deps, row: WatchChannel, refresh_token: str) -> bool:
    try:
        service = await _service(deps, refresh_token, features.get(row.feature))
    except GoogleError:
        return False
    try:
        return await _stop_quietly(service, row, quota.Budget(deps.limiter, row.account_id))
    finally:
        service.close()

