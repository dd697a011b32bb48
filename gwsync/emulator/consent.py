"""Google's consent screen (``/o/oauth2/v2/auth``) and the authorisation-code grant.

The page lists one checkbox per requested scope, ticked by default, so granular consent
can be exercised by a person or by a test that parses the form. Sign-in scopes
(``openid``, ``email``, ``profile``) get no checkbox: Google consents them on a separate
screen. Approving redirects to ``redirect_uri`` with a single-use code, which ``/token``
exchanges (``grant_type=authorization_code``) after checking the PKCE verifier.

Where Google is not documented, this follows the observed or RFC shape:
- a bad authorisation request is shown to the user as an HTML error page
  ("Error 400: invalid_request", "Error 401: invalid_client"), never redirected;
- with ``include_granted_scopes=true`` the new grant is the union of the user's earlier
  grants to this client and what was ticked; the emulator issues a *new* refresh token
  for that union on every offline exchange (Google may omit it when nothing new was
  granted and ``prompt=consent`` was not asked — clients must keep their old one then);
- a code is consumed by its first exchange attempt, successful or not (RFC 6749 §4.1.2
  says it must not be used twice; what Google does after a failed attempt is unknown);
- codes live 10 minutes (Google says only "short-lived");
- when the request asked for ``openid``, the exchange also returns an ``id_token``
  (OpenID Connect Core §3.1.3.3): RS256 under Google's published keys
  (`gwsync.emulator.signing`), ``iss`` ``https://accounts.google.com``, ``aud`` and
  ``azp`` the client id, the user's stable ``sub``, an hour's ``exp``, and ``email`` /
  ``email_verified`` only when ``email`` was granted. A refresh returns none here
  (Google's may; clients must not depend on it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from html import escape
from typing import Any
from urllib.parse import urlencode, urlsplit
from weakref import WeakKeyDictionary

from aiohttp import web

from gwsync.core import discovery
from gwsync.emulator import signing
from gwsync.emulator.errors import OAuthError
from gwsync.emulator.state import STATE_KEY, EmulatorState

AUTH_PATH = "/o/oauth2/v2/auth"
APPROVE_PATH = AUTH_PATH + "/approve"
CODE_TTL_S = 600
#: Consented on Google's first (sign-in) screen, never as checkboxes.
SIGN_IN = frozenset({"openid", "email", "profile",
                     "https://www.googleapis.com/auth/userinfo.email",
                     "https://www.googleapis.com/auth/userinfo.profile"})
#: The `iss` of Google's id_tokens (google-auth accepts it with or without the scheme).
ID_TOKEN_ISSUER = "https://accounts.google.com"
ID_TOKEN_TTL_S = 3600
_EMAIL_SCOPES = frozenset({"email", "https://www.googleapis.com/auth/userinfo.email"})
#: How a granted sign-in scope is written in the token response's `scope` (observed:
#: `email` comes back as the userinfo URL, `openid` as itself).
_SIGN_IN_NAMES = {"email": "https://www.googleapis.com/auth/userinfo.email",
                  "profile": "https://www.googleapis.com/auth/userinfo.profile"}
#: The request parameters the consent form carries through to the approval.
CARRIED = ("client_id", "redirect_uri", "response_type", "scope", "state", "code_challenge",
           "code_challenge_method", "access_type", "include_granted_scopes", "prompt")


class ConsentError(Exception):
    """A malformed authorisation request: Google shows an error page, not a redirect."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status, self.error, self.description = status, error, description


@dataclass(frozen=True)
class AuthRequest:
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    challenge: str | None
    method: str
    offline: bool
    include_granted: bool


@dataclass(frozen=True)
class AuthCode:
    user: str
    client_id: str
    redirect_uri: str
    scopes: frozenset[str]
    challenge: str | None
    method: str
    offline: bool
    expires_at: float
    #: The request asked for `openid`: the exchange returns an id_token.
    openid: bool = False


#: Pending codes per emulator state (kept beside it: `EmulatorState` holds no codes).
_CODES: WeakKeyDictionary[EmulatorState, dict[str, AuthCode]] = WeakKeyDictionary()


def _codes(state: EmulatorState) -> dict[str, AuthCode]:
    return _CODES.setdefault(state, {})


@cache
def scope_descriptions() -> dict[str, str]:
    """Scope URL → the sentence Google shows, from the bundled discovery documents."""
    found: dict[str, str] = {}
    for api in discovery.APIS:
        for scope, info in discovery.document(api)["auth"]["oauth2"]["scopes"].items():
            found[scope] = info.get("description", scope)
    return found


def _missing(name: str) -> ConsentError:
    return ConsentError(400, "invalid_request", f"Missing required parameter: {name}")


def _scopes(raw: str) -> tuple[str, ...]:
    asked = tuple(dict.fromkeys(raw.split()))
    if not asked:
        raise _missing("scope")
    invalid = [s for s in asked if s not in SIGN_IN and s not in scope_descriptions()]
    if invalid:
        raise ConsentError(400, "invalid_scope",
                           f"Some requested scopes were invalid. {{invalid={invalid}}}")
    return asked


def _pkce(params: Mapping[str, str]) -> tuple[str | None, str]:
    challenge = params.get("code_challenge") or None
    method = params.get("code_challenge_method") or "plain"
    if method not in {"S256", "plain"} or (method == "S256" and not challenge):
        raise ConsentError(400, "invalid_request", "Invalid code_challenge_method value.")
    return challenge, method


def validate(state: EmulatorState, params: Mapping[str, str]) -> AuthRequest:
    """Check an authorisation request as Google does before showing any consent."""
    if params.get("client_id") != state.client_id:
        raise ConsentError(401, "invalid_client", "The OAuth client was not found.")
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri:
        raise _missing("redirect_uri")
    if urlsplit(redirect_uri).scheme not in {"http", "https"}:
        raise ConsentError(400, "invalid_request", "Invalid redirect_uri.")
    if not params.get("response_type"):
        raise _missing("response_type")
    if params["response_type"] != "code":
        raise ConsentError(400, "unsupported_response_type",
                           f"Unsupported response_type: {params['response_type']}")
    challenge, method = _pkce(params)
    return AuthRequest(params["client_id"], redirect_uri, _scopes(params.get("scope", "")),
                       params.get("state"), challenge, method,
                       params.get("access_type") == "offline",
                       params.get("include_granted_scopes") == "true")


def _user_for(state: EmulatorState, hint: str) -> str | None:
    """The consenting user: named by `login_hint` (email or key), else the only user."""
    if hint:
        return next((u.key for u in state.users.values()
                     if hint.lower() in {u.email.lower(), u.key.lower()}), None)
    return next(iter(state.users)) if len(state.users) == 1 else None


def _error_page(exc: ConsentError) -> web.Response:
    body = (f"<!doctype html><title>Error {exc.status}: {escape(exc.error)}</title>"
            f"<h1>Access blocked: authorisation error</h1>"
            f"<p>Error {exc.status}: {escape(exc.error)}</p><p>{escape(exc.description)}</p>")
    return web.Response(text=body, status=exc.status, content_type="text/html")


def _checkbox(scope: str) -> str:
    label = scope_descriptions().get(scope, scope)
    return (f'<li><label><input type="checkbox" name="granted" value="{escape(scope)}" '
            f"checked> {escape(label)}</label></li>")


def render(params: Mapping[str, str], request: AuthRequest, user: str | None) -> str:
    """The consent page: one ticked checkbox per non-sign-in scope, Allow and Cancel."""
    hidden = "".join(f'<input type="hidden" name="{n}" value="{escape(params[n])}">'
                     for n in CARRIED if n in params)
    who = (f'<input type="hidden" name="user" value="{escape(user)}">' if user else
           '<label>Google account (email) <input type="text" name="user"></label>')
    boxes = "".join(_checkbox(s) for s in request.scopes if s not in SIGN_IN)
    return ("<!doctype html><title>Sign in - Google Accounts</title>"
            "<h1>gwsync emulator wants access to your Google Account</h1>"
            f'<form method="post" action="{APPROVE_PATH}">{hidden}{who}'
            f"<p>Select what it can access:</p><ul>{boxes}</ul>"
            '<button type="submit" name="action" value="deny">Cancel</button>'
            '<button type="submit" name="action" value="allow">Continue</button></form>')


async def authorize(request: web.Request) -> web.Response:
    """``GET /o/oauth2/v2/auth``: validate, then show the consent screen."""
    state = request.app[STATE_KEY]
    try:
        auth = validate(state, request.query)
    except ConsentError as exc:
        return _error_page(exc)
    user = _user_for(state, request.query.get("login_hint", ""))
    return web.Response(text=render(request.query, auth, user), content_type="text/html")


def _redirect(uri: str, params: dict[str, str]) -> web.Response:
    joiner = "&" if urlsplit(uri).query else "?"
    return web.Response(status=302, headers={"Location": uri + joiner + urlencode(params)})


def _granted(state: EmulatorState, auth: AuthRequest, user: str, ticked: list[str]
             ) -> frozenset[str]:
    if not set(ticked) <= set(auth.scopes):
        raise ConsentError(400, "invalid_request", "A ticked scope was not requested.")
    sign_in = frozenset(auth.scopes) & SIGN_IN
    scopes = frozenset(ticked) | {_SIGN_IN_NAMES.get(s, s) for s in sign_in}
    if auth.include_granted:
        for grant in state.grants.values():
            if grant.user == user and grant.client_id == auth.client_id \
                    and grant.revoked_at is None:
                scopes |= grant.scopes
    return scopes


def _issue_code(state: EmulatorState, auth: AuthRequest, user: str,
                scopes: frozenset[str]) -> str:
    code = "4/0" + secrets.token_urlsafe(48)
    _codes(state)[code] = AuthCode(user, auth.client_id, auth.redirect_uri, scopes,
                                   auth.challenge, auth.method, auth.offline,
                                   state.now() + CODE_TTL_S, "openid" in auth.scopes)
    return code


async def approve(request: web.Request) -> web.StreamResponse:
    """``POST /o/oauth2/v2/auth/approve``: Allow → code; Cancel → ``access_denied``."""
    state = request.app[STATE_KEY]
    form = await request.post()
    params = {n: str(form[n]) for n in CARRIED if n in form}
    try:
        auth = validate(state, params)
        user = _user_for(state, str(form.get("user", "")))
        if user is None:
            raise ConsentError(400, "invalid_request", "No such Google account.")
        echo = {"state": auth.state} if auth.state is not None else {}
        if form.get("action") != "allow":
            return _redirect(auth.redirect_uri, {"error": "access_denied", **echo})
        scopes = _granted(state, auth, user, [str(v) for v in form.getall("granted", [])])
    except ConsentError as exc:
        return _error_page(exc)
    code = _issue_code(state, auth, user, scopes)
    return _redirect(auth.redirect_uri, {"code": code, "scope": " ".join(sorted(scopes)),
                                        **echo})


def _verify_pkce(entry: AuthCode, verifier: str | None) -> None:
    if entry.challenge is None:
        return
    if not verifier:
        raise OAuthError(400, "invalid_grant", "Missing code verifier.")
    if entry.method == "S256":
        digest = hashlib.sha256(verifier.encode()).digest()
        verifier = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    if not hmac.compare_digest(verifier.encode(), entry.challenge.encode()):
        raise OAuthError(400, "invalid_grant", "Invalid code verifier.")


def _take_code(state: EmulatorState, params: Mapping[str, str]) -> AuthCode:
    code = params.get("code")
    if not code:
        raise OAuthError(400, "invalid_request", "Missing required parameter: code")
    entry = _codes(state).pop(code, None)
    if entry is None or entry.expires_at <= state.now() \
            or entry.client_id != params.get("client_id"):
        raise OAuthError(400, "invalid_grant", "Malformed auth code.")
    if params.get("redirect_uri") != entry.redirect_uri:
        raise OAuthError(400, "redirect_uri_mismatch", "Bad Request")
    return entry


def code_grant(state: EmulatorState, params: Mapping[str, str]) -> dict[str, Any]:
    """``grant_type=authorization_code``: a single-use, PKCE-checked code → tokens."""
    state.check_client(params.get("client_id"), params.get("client_secret"))
    entry = _take_code(state, params)
    _verify_pkce(entry, params.get("code_verifier"))
    issued = state.issue_grant(entry.user, entry.scopes)
    body = state.refresh(issued.refresh_token, state.client_id, state.client_secret)
    if entry.openid:
        body = {**body, "id_token": id_token(state, entry)}
    return {**body, "refresh_token": issued.refresh_token} if entry.offline else body


def id_token(state: EmulatorState, entry: AuthCode) -> str:
    """The OpenID Connect id_token of a code exchange, signed as Google signs it.

    Times are the wall clock's (the emulator's clock may be moved for expiries, and a
    token from the future is refused by every verifier).
    """
    now = int(time.time())
    claims: dict[str, Any] = {"iss": ID_TOKEN_ISSUER, "azp": entry.client_id,
                              "aud": entry.client_id, "sub": state.user(entry.user).sub,
                              "iat": now, "exp": now + ID_TOKEN_TTL_S}
    if entry.scopes & _EMAIL_SCOPES:
        claims |= {"email": state.user(entry.user).email, "email_verified": True}
    return signing.sign(claims)


def setup(app: web.Application) -> None:
    """Register the consent screen and its form target."""
    app.router.add_get(AUTH_PATH, authorize)
    app.router.add_post(APPROVE_PATH, approve)
