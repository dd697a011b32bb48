"""The `/v1` intake API the main app calls: connect, status, sync, read, disconnect, erase.

Bad input is refused before anything is touched: each handler validates, then acts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import func, select

from gwsync.connectors import features, oauth, registry, scopes
from gwsync.connectors.errors import RevokedError, TemporaryError, UnknownGoogleError
from gwsync.storage import accounts, purpose
from gwsync.storage.models import Account, Erasure, Record, SyncState, is_source_record
from gwsync.storage.purge import receipt
from gwsync.storage.records import BadCursorError
from gwsync.tasks import erase
from gwsync.timeutil import rfc3339
from gwsync.worker import logging
from gwsync.worker.web import ApiError, deps_of

log = logging.get("gwsync.api")
Body = TypeVar("Body", bound=BaseModel)


class ConnectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str = Field(min_length=1, max_length=200)
    refresh_token: str = Field(min_length=1, max_length=4096)
    granted_scopes: str | list[str] | None = None
    #: The Google account's `sub`, when the app signed the user in with Google: lets
    #: Cross-Account Protection events that name the account (not the token) find it.
    google_sub: str | None = Field(default=None, min_length=1, max_length=255)


class SyncBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    features: list[str] | None = None


async def _body(request: web.Request, model: type[Body]) -> Body:
    raw = await request.read()
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise ApiError(400, "malformed_json", "the body is not valid JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = sorted({".".join(map(str, e["loc"])) or "body" for e in exc.errors()})
        raise ApiError(400, "invalid_body", "the body does not match the schema",
                       fields=fields) from None


def _known_features(names: list[str]) -> list[str]:
    unknown = sorted(set(names) - set(features.FEATURES))
    if unknown:
        raise ApiError(400, "unknown_feature", "no such feature", features=unknown)
    return names


async def _account(request: web.Request) -> Account:
    async with deps_of(request).sessions() as session:
        account = await session.get(Account, request.match_info["account_id"])
    if account is None:
        raise ApiError(404, "unknown_account", "no account has this id")
    return account


def _feature_report(granted: frozenset[str]) -> dict[str, dict[str, Any]]:
    return {name: {"enabled": not missing, "missing_scopes": missing,
                   "available": name in registry.CONNECTORS}
            for name, missing in features.coverage(granted).items()}


async def _enqueue_enabled(request: web.Request, account: Account, names: list[str]) -> list[str]:
    deps = deps_of(request)
    granted = frozenset(account.granted_scopes.split())
    queued = []
    for name in names:
        if features.get(name).scope in granted and name in registry.CONNECTORS:
            await deps.queue.enqueue_sync(account.id, name, account.generation)
            queued.append(name)
    return queued


@contextmanager
def token_endpoint_errors(refused: str) -> Iterator[None]:
    """The token endpoint's answer categories, as this API reports them."""
    try:
        yield
    except RevokedError:
        raise ApiError(400, "invalid_grant", refused) from None
    except TemporaryError:
        raise ApiError(503, "google_unavailable", "could not reach Google; retry") from None
    except UnknownGoogleError:
        raise ApiError(502, "google_refused", "Google refused the token request; check the "
                       "OAuth client configuration") from None


async def _granted(request: web.Request, body: ConnectBody) -> frozenset[str]:
    if body.granted_scopes is not None:
        return scopes.parse(body.granted_scopes)
    deps = deps_of(request)
    with token_endpoint_errors("Google does not accept this grant"):
        return await oauth.granted_scopes(deps.oauth, body.refresh_token, deps.http)


async def connect(request: web.Request) -> web.Response:
    body = await _body(request, ConnectBody)
    granted = await _granted(request, body)
    deps = deps_of(request)
    async with deps.sessions.begin() as session:
        account = await accounts.create(session, deps.settings.master_key, user_id=body.user_id,
                                        refresh_token=body.refresh_token, granted_scopes=granted,
                                        google_sub=body.google_sub)
    queued = await _enqueue_enabled(request, account, list(features.FEATURES))
    log.info("account_connected", account_id=account.id, syncs_queued=len(queued))
    return web.json_response({"account_id": account.id, "features": _feature_report(granted),
                              "syncs_queued": queued}, status=201)


async def status(request: web.Request) -> web.Response:
    account = await _account(request)
    async with deps_of(request).sessions() as session:
        states = {s.feature: s for s in await session.scalars(
            select(SyncState).where(SyncState.account_id == account.id))}
        counts = dict((await session.execute(
            select(Record.feature, func.count()).where(Record.account_id == account.id,
                                                       is_source_record())
            .group_by(Record.feature))).all())
    granted = frozenset(account.granted_scopes.split())
    report = _feature_report(granted)
    for name, entry in report.items():
        state = states.get(name)
        entry.update({
            "status": state.status if state else None, "stage": state.stage if state else None,
            "last_sync": rfc3339(state.last_synced_at) if state else None,
            "record_count": counts.get(name, 0),
            "last_error": ({"category": state.error_category, "detail": state.last_error}
                           if state and state.error_category else None),
        })
    return web.json_response({"account_id": account.id, "status": account.status,
                              "granted_scopes": sorted(granted), "features": report})


async def sync(request: web.Request) -> web.Response:
    account = await _account(request)
    body = await _body(request, SyncBody)
    names = _known_features(body.features if body.features is not None
                            else list(features.FEATURES))
    if account.status != accounts.ACTIVE:
        raise ApiError(409, "account_not_active", "this account is not active",
                       status=account.status)
    queued = await _enqueue_enabled(request, account, names)
    skipped = sorted(set(names) - set(queued))
    return web.json_response({"queued": queued, "skipped": skipped}, status=202)


async def records(request: web.Request) -> web.Response:
    account = await _account(request)
    if account.status != accounts.ACTIVE:
        raise ApiError(410, "account_erased", "this account's data has been erased",
                       status=account.status)
    query = request.query
    use = query.get("use", "").strip()
    if not use:
        raise ApiError(400, "missing_use", "name the use of this read (?use=feature:<name>)")
    feature = query.get("feature") or None
    if feature:
        _known_features([feature])
    limit = query.get("limit", "100")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        raise ApiError(400, "invalid_limit", "limit must be 1..1000")
    try:
        result = await deps_of(request).store.read(
            account.id, use=use, actor="app", feature=feature, kind=query.get("kind") or None,
            cursor=query.get("cursor"), limit=int(limit))
    except purpose.LimitedUseViolation as refused:
        log.warning("read_refused", account_id=account.id, use_kind=refused.decision.kind)
        raise ApiError(403, "limited_use_violation", refused.decision.reason,
                       use=use[:80]) from None
    except BadCursorError:
        raise ApiError(400, "bad_cursor", "cursor must be one this API returned") from None
    if result.counts is not None:
        return web.json_response({"counts": result.counts})
    return web.json_response({"records": result.items, "next_cursor": result.next_cursor})


async def disconnect(request: web.Request) -> web.Response:
    account = await _account(request)
    if account.status != accounts.ACTIVE:
        raise ApiError(409, "account_not_active", "this account is already being erased",
                       status=account.status)
    erasure_id = await erase.request(deps_of(request), [account.id],
                                     subject_hash=account.subject_hash, trigger="disconnect")
    return web.json_response({"erasure_id": erasure_id}, status=202)


async def erase_user(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]
    if not 1 <= len(user_id) <= 200:
        raise ApiError(400, "invalid_user_id", "user_id must be 1..200 characters")
    deps = deps_of(request)
    async with deps.sessions() as session:
        ids = [a.id for a in await accounts.for_user(session, user_id)]
    erasure_id = await erase.request(deps, ids, subject_hash=accounts.subject_hash(user_id),
                                     trigger="user_request")
    return web.json_response({"erasure_id": erasure_id}, status=202)


async def erasure(request: web.Request) -> web.Response:
    async with deps_of(request).sessions() as session:
        found = await session.get(Erasure, request.match_info["erasure_id"])
    if found is None:
        raise ApiError(404, "unknown_erasure", "no erasure has this id")
    return web.json_response({"status": found.state, "receipt": receipt(found)})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/accounts", connect)
    router.add_get("/v1/accounts/{account_id}", status)
    router.add_post("/v1/accounts/{account_id}/sync", sync)
    router.add_get("/v1/accounts/{account_id}/records", records)
    router.add_delete("/v1/accounts/{account_id}", disconnect)
    router.add_post("/v1/users/{user_id}/erasure", erase_user)
    router.add_get("/v1/erasures/{erasure_id}", erasure)
