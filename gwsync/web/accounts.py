"""`/v1/accounts` and `/v1/users`: connect, status, sync, disconnect, erase a user.

Bad input is refused before anything is touched: each handler validates, then acts.
"""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gwsync.connectors import oauth
from gwsync.core import logs
from gwsync.core.timeutil import rfc3339
from gwsync.domain import features, scopes
from gwsync.domain.api import AccountStatus, Connected, ErasureEntry, ErasureStarted, SyncQueued
from gwsync.storage import accounts, purge
from gwsync.storage.models import Account, Erasure, Record, SyncState, is_source_record
from gwsync.tasks import enable, erase
from gwsync.tasks.deps import Deps
from gwsync.web.answers import answer
from gwsync.web.http import HttpError, deps_of, token_endpoint_errors
from gwsync.web.ownership import account_of
from gwsync.web.parse import FeatureNames, Scopes, Text, Token, known_features, parse_body

log = logs.get("gwsync.api")


class ConnectBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"user_id": "user-42", "refresh_token": "1//0example-refresh-token",
         "granted_scopes": ["https://www.googleapis.com/auth/contacts.readonly"]}]})
    user_id: Annotated[str, Text(200)]
    refresh_token: Token
    granted_scopes: Scopes | None = None
    #: The Google account's `sub`, when the app signed the user in with Google: lets
    #: Cross-Account Protection events that name the account (not the token) find it.
    google_sub: Annotated[str, Text(255)] | None = None


class SyncBody(BaseModel):
    model_config = ConfigDict(extra="forbid",
                              json_schema_extra={"examples": [{"features": ["contacts"]}]})
    features: FeatureNames | None = None


async def _granted(request: web.Request, body: ConnectBody) -> frozenset[str]:
    if body.granted_scopes is not None:
        return scopes.parse(body.granted_scopes)
    deps = deps_of(request)
    with token_endpoint_errors("Google does not accept this grant"):
        return await oauth.granted_scopes(deps.oauth, body.refresh_token, deps.http)


async def connect(request: web.Request) -> web.Response:
    body = await parse_body(request, ConnectBody)
    granted = await _granted(request, body)
    deps = deps_of(request)
    async with deps.sessions.begin() as session:
        account = await accounts.create(session, deps.keyring, user_id=body.user_id,
                                        refresh_token=body.refresh_token, granted_scopes=granted,
                                        google_sub=body.google_sub)
        await enable.announce_connected(deps, session, account)
    queued = await enable.enqueue_enabled(deps_of(request), account, list(features.FEATURES))
    log.info("account_connected", account_id=account.id, syncs_queued=len(queued))
    return answer(Connected.model_validate({
        "account_id": account.id, "features": enable.feature_report(granted),
        "syncs_queued": queued}), status=201)


#: The account's answer lists this many of its most recent erasures; older receipts stay
#: at /v1/erasures/{id}. (Retention sweeps add one each time records expire.)
ERASURES_LISTED = 50


async def _erasures_of(session: AsyncSession, account: Account,
                       limit: int | None = None) -> list[Erasure]:
    return await purge.erasures_of(session, account, limit)


def _erasure_entry(erasure: Erasure) -> ErasureEntry:
    return ErasureEntry(
        erasure_id=erasure.id, trigger=erasure.trigger, status=erasure.state,
        whole_account=purge.is_whole(erasure), requested_at=rfc3339(erasure.requested_at),
        verified_at=rfc3339(erasure.completed_at) if erasure.state == "verified" else None)


async def status(request: web.Request) -> web.Response:
    account = await account_of(request)
    async with deps_of(request).sessions() as session:
        erasures = await _erasures_of(session, account, ERASURES_LISTED)
        states = {s.feature: s for s in await session.scalars(
            select(SyncState).where(SyncState.account_id == account.id))}
        counts = dict((await session.execute(
            select(Record.feature, func.count()).where(Record.account_id == account.id,
                                                       is_source_record())
            .group_by(Record.feature))).all())
    granted = frozenset(account.granted_scopes.split())
    report = enable.feature_report(granted)
    for name, entry in report.items():
        state = states.get(name)
        entry.update({
            "status": state.status if state else None, "stage": state.stage if state else None,
            "last_sync": rfc3339(state.last_synced_at) if state else None,
            "record_count": counts.get(name, 0),
            "last_error": ({"category": state.error_category, "detail": state.last_error}
                           if state and state.error_category else None),
        })
    return answer(AccountStatus.model_validate({
        "account_id": account.id, "status": account.status, "granted_scopes": sorted(granted),
        "features": report, "erasures": [_erasure_entry(e) for e in erasures]}))


async def sync(request: web.Request) -> web.Response:
    account = await account_of(request)
    body = await parse_body(request, SyncBody)
    names = known_features(body.features if body.features is not None
                            else list(features.FEATURES))
    if account.status != accounts.ACTIVE:
        raise HttpError(409, "account_not_active", "this account is not active",
                       status=account.status)
    queued = await enable.enqueue_enabled(deps_of(request), account, names)
    skipped = sorted(set(names) - set(queued))
    return answer(SyncQueued(queued=queued, skipped=skipped), status=202)


async def disconnect(request: web.Request) -> web.Response:
    """Erase the account; one already erased or being erased answers with that erasure.

    Whoever began it (the app, the user, Google revoking the grant), the app gets the
    erasure whose receipt to fetch, so a retried or late DELETE is harmless.
    """
    account = await account_of(request)
    if account.status != accounts.ACTIVE:
        async with deps_of(request).sessions() as session:
            whole = [e for e in await _erasures_of(session, account) if purge.is_whole(e)]
        if not whole:
            raise HttpError(409, "account_not_active", "this account is not active",
                           status=account.status)
        return answer(ErasureStarted(erasure_id=whole[0].id, status=whole[0].state))
    deps = deps_of(request)
    erasure_id, began = await erase.disconnect(deps, account.id, account.subject_hash)
    if erasure_id is None:
        raise HttpError(409, "account_not_active", "this account is not active")
    return await _begun(deps, erasure_id, 202 if began else 200)


async def _begun(deps: Deps, erasure_id: str, status: int = 202) -> web.Response:
    async with deps.sessions() as session:
        begun = await session.get(Erasure, erasure_id)
    return answer(ErasureStarted(erasure_id=erasure_id,
                                 status=begun.state if begun else "requested"), status=status)


async def erase_user(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]
    if not 1 <= len(user_id) <= 200:
        raise HttpError(400, "invalid_user_id", "user_id must be 1..200 characters")
    deps = deps_of(request)
    async with deps.sessions() as session:
        ids = [a.id for a in await accounts.for_user(session, user_id)]
    subject = accounts.subject_hash(user_id, deps.keyring)
    erasure_id = await erase.request(deps, ids, subject_hash=subject, trigger="user_request")
    return await _begun(deps, erasure_id)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/accounts", connect)
    router.add_get("/v1/accounts/{account_id}", status)
    router.add_post("/v1/accounts/{account_id}/sync", sync)
    router.add_delete("/v1/accounts/{account_id}", disconnect)
    router.add_post("/v1/users/{user_id}/erasure", erase_user)
