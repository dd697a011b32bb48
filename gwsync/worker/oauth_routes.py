"""`/v1/oauth/start` and `/v1/oauth/callback`: connecting a Google account through consent.

The main app calls both with its bearer token: `start` gives it the URL to send the
browser to; Google redirects the browser to the app, which forwards `code` and `state`
to `callback`. A user who already has an account is asked only for the scopes it
misses, and the new grant is merged into that account.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from aiohttp import web

from gwsync.connectors import consent, features
from gwsync.connectors.consent import TokenResponse
from gwsync.storage import accounts
from gwsync.storage.models import Account
from gwsync.tasks import grants
from gwsync.worker import logging
from gwsync.worker.api import (
    _enqueue_enabled,
    _feature_report,
    _known_features,
    token_endpoint_errors,
)
from gwsync.worker.deps import Deps
from gwsync.worker.oauth_state import Flow, FlowStore, InvalidStateError
from gwsync.worker.web import ApiError, deps_of

log = logging.get("gwsync.oauth")


def _flows(deps: Deps) -> FlowStore:
    return FlowStore(deps.queue.redis, deps.settings.redis_prefix, deps.settings.master_key)


def _required(query: Mapping[str, str], name: str, max_len: int) -> str:
    value = query.get(name, "").strip()
    if not 1 <= len(value) <= max_len:
        raise ApiError(400, f"invalid_{name}", f"{name} is required (1..{max_len} characters)")
    return value


def _redirect_uri(query: Mapping[str, str]) -> str:
    uri = _required(query, "redirect_uri", 2000)
    parts = urlsplit(uri)
    if parts.scheme not in {"http", "https"} or not parts.netloc or parts.fragment:
        raise ApiError(400, "invalid_redirect_uri",
                       "redirect_uri must be an absolute http(s) URL without a fragment")
    return uri


def _feature_names(query: Mapping[str, str]) -> list[str]:
    names = list(dict.fromkeys(n.strip() for n in query.get("features", "").split(",")
                               if n.strip()))
    if not names:
        raise ApiError(400, "invalid_features", "name at least one feature (features=a,b)")
    return _known_features(names)


async def _active_account(deps: Deps, user_id: str) -> Account | None:
    async with deps.sessions() as session:
        found = [a for a in await accounts.for_user(session, user_id)
                 if a.status == accounts.ACTIVE]
    return max(found, key=lambda a: a.created_at) if found else None


async def start(request: web.Request) -> web.Response:
    query = request.query
    user_id, redirect_uri = _required(query, "user_id", 200), _redirect_uri(query)
    names = _feature_names(query)
    login_hint = query.get("login_hint", "").strip()[:320] or None
    deps = deps_of(request)
    account = await _active_account(deps, user_id)
    granted = frozenset(account.granted_scopes.split()) if account else frozenset()
    scopes = consent.missing_scopes(names, granted)
    if not scopes:
        return web.json_response({"url": None, "already_granted": True, "scopes": [],
                                  "features": names})
    verifier = consent.new_verifier()
    state = await _flows(deps).begin(Flow(user_id, tuple(names), tuple(scopes), redirect_uri,
                                          verifier, account.id if account else None))
    url = consent.authorization_url(deps.oauth, consent.ConsentRequest(
        redirect_uri, tuple(scopes), state, consent.challenge(verifier),
        prompt_consent=account is None, login_hint=login_hint))
    log.info("consent_started", features=names, scopes=len(scopes), merge=account is not None)
    return web.json_response({"url": url, "already_granted": False, "scopes": scopes,
                              "features": names})


async def _take_flow(deps: Deps, query: Mapping[str, str]) -> Flow:
    state = query.get("state", "")
    if not query.get("code") and not query.get("error"):
        raise ApiError(400, "missing_code", "forward Google's code (or error) and state")
    try:
        return await _flows(deps).take(state)
    except InvalidStateError:
        raise ApiError(400, "invalid_state",
                       "the state is unknown, expired, already used or forged") from None


async def _exchange(deps: Deps, code: str, flow: Flow) -> TokenResponse:
    with token_endpoint_errors("Google refused the code; start again"):
        return await consent.exchange_code(deps.oauth, deps.http, code=code,
                                           redirect_uri=flow.redirect_uri, verifier=flow.verifier)


async def _merge(deps: Deps, account: Account, token: TokenResponse) -> Account:
    """Fold an incremental grant into the account: the newer refresh token (if Google sent
    one; else the old one, which the grant's union also covers) and Google's scope list.

    The old token is not revoked: at Google that would revoke the whole grant, new scopes
    included.
    """
    async with deps.sessions.begin() as session:
        try:
            await accounts.fence(session, account.id, account.generation)
        except accounts.FencedError:
            raise ApiError(409, "account_not_active", "the account is being erased; "
                           "connect again once it is done") from None
        if token.refresh_token is not None:
            fresh = await accounts.get(session, account.id)
            await accounts.replace_grant(session, deps.settings.master_key, fresh,
                                         token.refresh_token)
    await grants.apply_granted(deps, account.id, token.scopes)
    async with deps.sessions() as session:
        return await accounts.get(session, account.id)


async def _create(deps: Deps, user_id: str, token: TokenResponse) -> Account:
    if token.refresh_token is None:
        raise ApiError(502, "no_refresh_token", "Google sent no refresh token; start again")
    async with deps.sessions.begin() as session:
        return await accounts.create(session, deps.settings.master_key, user_id=user_id,
                                     refresh_token=token.refresh_token,
                                     granted_scopes=token.scopes)


async def callback(request: web.Request) -> web.Response:
    deps = deps_of(request)
    flow = await _take_flow(deps, request.query)
    if request.query.get("error"):
        raise ApiError(400, "consent_denied", "the user did not grant access",
                       google_error=request.query["error"][:40])
    token = await _exchange(deps, request.query["code"], flow)
    existing = await _active_account(deps, flow.user_id)
    if existing is not None:  # first syncs of the features this consent was about
        account, status = await _merge(deps, existing, token), 200
        names = [n for n in flow.features if features.get(n).scope in flow.scopes]
    else:
        account, status = await _create(deps, flow.user_id, token), 201
        names = list(features.FEATURES)
    queued = await _enqueue_enabled(request, account, names)
    granted = frozenset(account.granted_scopes.split())
    log.info("consent_completed", account_id=account.id, merged=status == 200,
             scopes=len(granted), syncs_queued=len(queued))
    return web.json_response({"account_id": account.id, "features": _feature_report(granted),
                              "syncs_queued": queued}, status=status)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/oauth/start", start)
    router.add_get("/v1/oauth/callback", callback)
