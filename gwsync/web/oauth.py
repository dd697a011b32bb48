"""`/v1/oauth/start` and `/v1/oauth/callback`: connecting a Google account through consent.

The main app calls both with its bearer token: `start` gives it the URL to send the
browser to; Google redirects the browser to the app, which forwards `code`, `state` and
the user whose browser session the redirect came back to (`user_id`) to `callback`.
The callback is refused unless that user began the flow.

Every consent asks for `openid` (and `email`, for Cross-Account Protection) beside the
features' scopes, and the id_token of the code exchange is verified: its `sub` says
which Google account consented. A consent merges into the user's account *of the same
Google account* (asked only for the scopes it misses); a consent by another Google
account is a new account, and never touches the first one's grant.
"""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from gwsync.connectors import consent, identity
from gwsync.connectors.consent import TokenResponse
from gwsync.connectors.errors import TemporaryError
from gwsync.core import logs
from gwsync.domain import features
from gwsync.domain.api import Connected, ConsentStart
from gwsync.storage import accounts
from gwsync.storage.models import Account
from gwsync.tasks import enable, grants
from gwsync.tasks.deps import Deps
from gwsync.web.answers import answer
from gwsync.web.http import HttpError, deps_of, token_endpoint_errors
from gwsync.web.oauth_state import Flow, FlowStore, InvalidStateError
from gwsync.web.parse import QueryModel, Text, known_features, parse_query

log = logs.get("gwsync.oauth")


def _flows(deps: Deps) -> FlowStore:
    return FlowStore(deps.queue.redis, deps.settings.redis_prefix, deps.keyring)


#: More names than there are features is not a request for features.
MAX_FEATURE_NAMES = 20
#: OAuth values as Google sends them: printable ASCII, no spaces.
_TOKEN_PATTERN = r"^[\x21-\x7e]+$"


def _http_url(uri: str) -> str:
    """An absolute http(s) URL with a host and no fragment (`http://[::1` does not parse)."""
    try:
        parts = urlsplit(uri)
        usable = bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:
        usable = False
    if not usable or parts.scheme not in {"http", "https"} or parts.fragment:
        raise PydanticCustomError("invalid_redirect_uri", "not an absolute http(s) URL")
    return uri


def _names(value: str) -> list[str]:
    return list(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))


def _feature_list(value: str) -> str:
    if not 1 <= len(_names(value)) <= MAX_FEATURE_NAMES:
        raise PydanticCustomError("invalid_features", "one or more feature names")
    return value


class StartQuery(QueryModel):
    """`?user_id=&features=a,b&redirect_uri=&login_hint=` of a consent start."""

    REFUSALS = {
        "user_id": ("invalid_user_id", "user_id is required (1..200 characters)"),
        "features": ("invalid_features", "name at least one feature (features=a,b)"),
        "redirect_uri": ("invalid_redirect_uri",
                         "redirect_uri must be an absolute http(s) URL without a fragment"),
        "login_hint": ("invalid_login_hint", "login_hint is at most 320 characters"),
    }
    user_id: Annotated[str, Text(200)]
    features: Annotated[str, Text(1000), AfterValidator(_feature_list)]
    redirect_uri: Annotated[str, Text(2000), AfterValidator(_http_url)]
    login_hint: Annotated[str, Text(320)] | None = None

    @property
    def feature_names(self) -> list[str]:
        """The features asked for, each once, in the order given."""
        return _names(self.features)


class CallbackQuery(QueryModel):
    """`?state=&code=` (or `&error=`) as Google sent them to the app's redirect URI, and
    `user_id`: the app's user whose browser session brought them back."""

    REFUSALS = {
        "user_id": ("invalid_user_id", "user_id must be 1..200 characters"),
        "state": ("invalid_state", "the state is unknown, expired, already used or forged"),
        "code": ("invalid_code", "code is at most 2048 printable characters"),
        "error": ("invalid_error", "error is at most 200 printable characters"),
    }
    user_id: Annotated[str, Text(200)] | None = None
    state: Annotated[str, Field(max_length=200,
                                pattern=r"^[A-Za-z0-9_-]+\.[0-9]{1,12}\.[A-Za-z0-9_-]+$")] = ""
    code: Annotated[str, Field(max_length=2048, pattern=_TOKEN_PATTERN)] | None = None
    error: Annotated[str, Field(max_length=200, pattern=_TOKEN_PATTERN)] | None = None


async def _active_account(deps: Deps, user_id: str) -> Account | None:
    async with deps.sessions() as session:
        found = [a for a in await accounts.for_user(session, user_id)
                 if a.status == accounts.ACTIVE]
    return max(found, key=lambda a: a.created_at) if found else None


def _allowed_redirect(allowed: frozenset[str], redirect_uri: str) -> None:
    """A consent sends the user back only to a URI the operator listed, exactly."""
    if not allowed:
        raise HttpError(400, "redirect_uris_not_configured", "consent through gwsync needs "
                        "GWSYNC_OAUTH_REDIRECT_URIS (the app's exact redirect URIs)")
    if redirect_uri not in allowed:
        raise HttpError(400, "redirect_uri_not_allowed",
                        "redirect_uri is not one of GWSYNC_OAUTH_REDIRECT_URIS")


async def start(request: web.Request) -> web.Response:
    query = parse_query(request, StartQuery)
    user_id, redirect_uri, login_hint = query.user_id, query.redirect_uri, query.login_hint
    names = known_features(query.feature_names)
    deps = deps_of(request)
    _allowed_redirect(deps.settings.redirect_uris, redirect_uri)
    account = await _active_account(deps, user_id)
    granted = frozenset(account.granted_scopes.split()) if account else frozenset()
    scopes = consent.missing_scopes(names, granted)
    if not scopes:
        return answer(ConsentStart(url=None, already_granted=True, scopes=[], features=names))
    verifier = consent.new_verifier()
    state = await _flows(deps).begin(Flow(user_id, tuple(names), tuple(scopes), redirect_uri,
                                          verifier, account.id if account else None))
    url = consent.authorization_url(deps.oauth, consent.ConsentRequest(
        redirect_uri, tuple(scopes), state, consent.challenge(verifier),
        prompt_consent=account is None, login_hint=login_hint))
    log.info("consent_started", features=names, scopes=len(scopes), merge=account is not None)
    return answer(ConsentStart(url=url, already_granted=False, scopes=list(scopes),
                               features=names))


async def _take_flow(deps: Deps, query: CallbackQuery) -> Flow:
    """The flow of `state`, if the user finishing it is the one who began it.

    Without this, an attacker who begins a flow as themselves and gets a victim to
    consent would attach the victim's Google data to the attacker's user. A mismatch
    still consumes the flow: the code it was for is never exchanged by anyone.
    """
    if query.user_id is None:
        raise HttpError(400, "missing_user_id", "name the user whose browser session "
                        "brought the redirect back (?user_id=)")
    if not query.code and not query.error:
        raise HttpError(400, "missing_code", "forward Google's code (or error) and state")
    try:
        flow = await _flows(deps).take(query.state)
    except InvalidStateError:
        raise HttpError(400, "invalid_state",
                       "the state is unknown, expired, already used or forged") from None
    if not hmac.compare_digest(flow.user_id.encode(), query.user_id.encode()):
        log.warning("consent_user_mismatch")
        raise HttpError(403, "consent_user_mismatch", "this consent was begun by another "
                        "user; start again from the user's own session")
    return flow


async def _exchange(deps: Deps, code: str, flow: Flow) -> TokenResponse:
    with token_endpoint_errors("Google refused the code; start again"):
        return await consent.exchange_code(deps.oauth, deps.http, code=code,
                                           redirect_uri=flow.redirect_uri, verifier=flow.verifier)


async def _google_sub(deps: Deps, token: TokenResponse) -> str:
    """The verified Google account id of the consent (never logged, stored only hashed)."""
    if token.id_token is None:
        raise HttpError(502, "no_id_token", "Google sent no id_token, so the consenting "
                        "Google account is unknown; start again")
    try:
        return await identity.verified_sub(deps.oauth, token.id_token)
    except identity.IdentityError:
        log.warning("id_token_refused")
        raise HttpError(502, "invalid_id_token", "the id_token from Google did not verify; "
                        "nothing was stored") from None
    except TemporaryError:
        raise HttpError(503, "google_unavailable", "could not fetch Google's signing "
                        "certificates; retry") from None


async def _account_of_identity(deps: Deps, user_id: str, sub: str) -> Account | None:
    """The user's active account of this Google account, if any (newest first)."""
    wanted = accounts.google_sub_hash(sub)
    async with deps.sessions() as session:
        found = [a for a in await accounts.for_user(session, user_id)
                 if a.status == accounts.ACTIVE and a.google_sub_hash == wanted]
    return max(found, key=lambda a: a.created_at) if found else None


async def _merge(deps: Deps, account: Account, token: TokenResponse) -> Account:
    """Fold an incremental grant of the *same* Google account into its account: the newer
    refresh token (if Google sent one; else the old one, which the grant's union also
    covers) and Google's scope list.

    The old token is not revoked: it belongs to the same grant, and at Google revoking it
    would revoke the whole grant, new scopes included. A different Google account's grant
    is never merged (see `_account_of_identity`), so no grant of one identity is replaced
    by another's.
    """
    async with deps.sessions.begin() as session:
        try:
            await accounts.fence(session, account.id, account.generation)
        except accounts.FencedError:
            raise HttpError(409, "account_not_active", "the account is being erased; "
                           "connect again once it is done") from None
        if token.refresh_token is not None:
            fresh = await accounts.get(session, account.id)
            await accounts.replace_grant(session, deps.keyring, fresh,
                                         token.refresh_token)
    await grants.apply_granted(deps, account.id, token.scopes)
    async with deps.sessions() as session:
        return await accounts.get(session, account.id)


async def _create(deps: Deps, user_id: str, token: TokenResponse, sub: str) -> Account:
    if token.refresh_token is None:
        raise HttpError(502, "no_refresh_token", "Google sent no refresh token for this "
                        "Google account; start again")
    async with deps.sessions.begin() as session:
        account = await accounts.create(session, deps.keyring, user_id=user_id,
                                        refresh_token=token.refresh_token,
                                        granted_scopes=token.scopes, google_sub=sub)
        await enable.announce_connected(deps, session, account)
        return account


async def callback(request: web.Request) -> web.Response:
    deps, query = deps_of(request), parse_query(request, CallbackQuery)
    flow = await _take_flow(deps, query)
    if query.error:
        raise HttpError(400, "consent_denied", "the user did not grant access",
                       google_error=query.error[:40])
    token = await _exchange(deps, query.code or "", flow)
    sub = await _google_sub(deps, token)
    existing = await _account_of_identity(deps, flow.user_id, sub)
    if existing is not None:  # first syncs of the features this consent was about
        account, status = await _merge(deps, existing, token), 200
        names = [n for n in flow.features if features.get(n).scope in flow.scopes]
    else:
        account, status = await _create(deps, flow.user_id, token, sub), 201
        names = list(features.FEATURES)
    queued = await enable.enqueue_enabled(deps_of(request), account, names)
    granted = frozenset(account.granted_scopes.split())
    log.info("consent_completed", account_id=account.id, merged=status == 200,
             scopes=len(granted), syncs_queued=len(queued))
    return answer(Connected.model_validate({
        "account_id": account.id, "features": enable.feature_report(granted),
        "syncs_queued": queued}), status=status)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/oauth/start", start)
    router.add_get("/v1/oauth/callback", callback)
