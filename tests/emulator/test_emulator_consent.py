"""The emulator's consent screen and authorisation-code grant behave like Google's."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from urllib.parse import urlencode

import aiohttp
import google_auth_httplib2
import httplib2
import jwt
import pytest
from google.oauth2 import id_token as google_id_token

from tests.consent_form import consent, open_form, submit
from tests.emulator.support import CONTACTS_RO, Emulator

AUTH = "https://www.googleapis.com/auth/"
DRIVE_FILE = AUTH + "drive.file"
FREEBUSY = AUTH + "calendar.freebusy"
GMAIL_META = AUTH + "gmail.metadata"
REDIRECT = "https://app.example/oauth/done"
VERIFIER = "v" * 43 + "-verifier-of-this-test"


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _auth_url(emulator: Emulator, scopes: list[str], **extra: str) -> str:
    params = {"client_id": emulator.state.client_id, "redirect_uri": REDIRECT,
              "response_type": "code", "scope": " ".join(scopes), "state": "st-123",
              "access_type": "offline", "code_challenge": _challenge(VERIFIER),
              "code_challenge_method": "S256", **extra}
    return f"{emulator.url}/o/oauth2/v2/auth?{urlencode(params)}"


async def _exchange(http: aiohttp.ClientSession, emulator: Emulator, code: str,
                    verifier: str | None = VERIFIER, **extra: str) -> tuple[int, dict]:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "client_id": emulator.state.client_id,
            "client_secret": emulator.state.client_secret, **extra}
    if verifier is not None:
        form["code_verifier"] = verifier
    async with http.post(f"{emulator.url}/token", data=form) as resp:
        return resp.status, await resp.json()


@pytest.fixture
def alice(emulator: Emulator) -> str:
    return emulator.state.add_user("alice@example.com").user


async def test_page_shows_a_ticked_checkbox_per_scope_but_none_for_sign_in(
    emulator: Emulator, http: aiohttp.ClientSession, alice: str
) -> None:
    """Each API scope is a checkbox labelled with Google's description; openid is not."""
    form = await open_form(http, _auth_url(emulator, ["openid", CONTACTS_RO, DRIVE_FILE]))
    assert form.boxes == {CONTACTS_RO: True, DRIVE_FILE: True}
    assert any("contacts" in label for label in form.labels)
    assert form.hidden["user"] == alice and form.hidden["state"] == "st-123"


async def test_login_hint_picks_the_user_among_several(
    emulator: Emulator, http: aiohttp.ClientSession, alice: str
) -> None:
    """With several users, login_hint names the one consenting; without it, the page asks."""
    emulator.state.add_user("bob@example.com")
    hinted = await open_form(http, _auth_url(emulator, [CONTACTS_RO],
                                             login_hint="bob@example.com"))
    assert hinted.hidden["user"] == "bob@example.com"
    unhinted = await open_form(http, _auth_url(emulator, [CONTACTS_RO]))
    assert "user" not in unhinted.hidden and unhinted.text_inputs == ["user"]


@pytest.mark.parametrize(("change", "status", "error"), [
    ({"client_id": "nope"}, 401, "invalid_client"),
    ({"redirect_uri": ""}, 400, "invalid_request"),
    ({"response_type": "token"}, 400, "unsupported_response_type"),
    ({"scope": ""}, 400, "invalid_request"),
    ({"scope": AUTH + "not.a.scope"}, 400, "invalid_scope"),
    ({"code_challenge_method": "S512"}, 400, "invalid_request"),
])
async def test_bad_authorisation_requests_get_an_error_page(
    emulator: Emulator, http: aiohttp.ClientSession, alice: str,
    change: dict[str, str], status: int, error: str
) -> None:
    """Like Google, a malformed request shows an HTML error page and issues no code."""
    async with http.get(_auth_url(emulator, [CONTACTS_RO], **change)) as resp:
        assert resp.status == status
        assert resp.content_type == "text/html"
        assert f"Error {status}: {error}" in await resp.text()


async def test_approving_a_subset_grants_exactly_the_ticked_scopes(
    emulator: Emulator, http: aiohttp.ClientSession, alice: str
) -> None:
    """Un-ticked scopes are not granted; the token response's scope says what was."""
    url = _auth_url(emulator, [CONTACTS_RO, DRIVE_FILE, FREEBUSY])
    redirect = await consent(http, url, [CONTACTS_RO, DRIVE_FILE])
    assert redirect["state"] == "st-123"
    status, body = await _exchange(http, emulator, redirect["code"])
    assert status == 200, body
    assert body["scope"].split() == sorted([CONTACTS_RO, DRIVE_FILE])
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    refreshed = emulator.state.refresh(body["refresh_token"], emulator.state.client_id,
                                       emulator.state.client_secret)
    assert refreshed["scope"] == body["scope"]


async def test_a_wrong_or_missing_verifier_is_invalid_grant(
    emulator: Emulator, http: aiohttp.ClientSession, alice: str
) -> None:
    """PKCE: the verifier must hash to the challenge, or no token is issued."""
    for verifier, description in (("w" * 43, "Invalid code verifier."),
                                  (None, "Missing code verifier.")):
        redirect = await consent(http, _auth_url(emulator, [CONTACTS_RO]), [CONTACTS_RO])
        status, body = await _exchange(http, emulator, redirect["code"], verifier)
        assert (status, body) == (400, {"error": "invalid_grant",
                                        "error_description": description})
    assert len(emulator.state.grants) == 1  # only the one add_user issued


async def test_a_code_is_single_use(
    emulator: Emulator, http: aiohttp.ClientSession, alice: str
) -> None:
    """The second exchange of a code is refused with invalid_grant."""
    redirect = await consent(http, _auth_url(emulator, [CONTACTS_RO]), [CONTACTS_RO])
    assert (await _exchange(http, emulator, redirect["code"]))[0] == 200
    status, body = await _exchange(http, emulator, redirect["code"])
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_the_redirect_uri_and_client_must_match(
    emulator: Emulator, http: aiohttp.ClientSession, alice: str
) -> None:
    """A code is redeemed only with its own redirect_uri and by its authenticated client."""
    redirect = await consent(http, _auth_url(emulator, [CONTACTS_RO]), [CONTACTS_RO])
    status, body = await _exchange(http, emulator, redirect["code"],
                                   redirect_uri="https://evil.example/")
    assert (status, body["error"]) == (400, "redirect_uri_mismatch")
    redirect = await consent(http, _auth_url(emulator, [CONTACTS_RO]), [CONTACTS_RO])
    status, body = await _exchange(http, emulator, redirect["code"], client_secret="bad")
    assert (status, body["error"]) == (401, "invalid_client")


async def test_include_granted_scopes_unions_earlier_grants(
    emulator: Emulator, http: aiohttp.ClientSession, alice: str
) -> None:
    """Incremental consent covers earlier grants too; without the flag only what was ticked."""
    first = await consent(http, _auth_url(emulator, [CONTACTS_RO]), [CONTACTS_RO])
    assert (await _exchange(http, emulator, first["code"]))[0] == 200
    more = await consent(http, _auth_url(emulator, [GMAIL_META],
                                         include_granted_scopes="true"), [GMAIL_META])
    assert (await _exchange(http, emulator, more["code"]))[1]["scope"].split() == sorted(
        [CONTACTS_RO, GMAIL_META])
    alone = await consent(http, _auth_url(emulator, [FREEBUSY]), [FREEBUSY])
    assert (await _exchange(http, emulator, alone["code"]))[1]["scope"] == FREEBUSY


async def test_cancel_redirects_with_access_denied(
    emulator: Emulator, http: aiohttp.ClientSession, alice: str
) -> None:
    """Denying consent sends the user back with error=access_denied and the state."""
    url = _auth_url(emulator, [CONTACTS_RO])
    redirect = await submit(http, url, await open_form(http, url), [], action="deny")
    assert redirect == {"error": "access_denied", "state": "st-123"}


async def test_online_access_gets_no_refresh_token(
    emulator: Emulator, http: aiohttp.ClientSession, alice: str
) -> None:
    """Only access_type=offline yields a refresh token."""
    redirect = await consent(http, _auth_url(emulator, [CONTACTS_RO], access_type="online"),
                             [CONTACTS_RO])
    status, body = await _exchange(http, emulator, redirect["code"])
    assert status == 200 and "refresh_token" not in body and body["access_token"]


async def test_openid_yields_an_id_token_google_auth_verifies_from_either_certs_endpoint(
    emulator: Emulator, http: aiohttp.ClientSession, alice: str
) -> None:
    """With `openid email` asked, the exchange returns an RS256 id_token about the user's
    stable sub, for the client, that google-auth verifies against both of Google's certs
    endpoints (v1: PEM certificates, v3: JWKS); `email` maps to its URL in `scope`."""
    url = _auth_url(emulator, ["openid", "email", CONTACTS_RO])
    status, body = await _exchange(http, emulator, (await consent(http, url, [CONTACTS_RO]))[
        "code"])
    assert status == 200, body
    assert set(body["scope"].split()) == {"openid", AUTH + "userinfo.email", CONTACTS_RO}
    for path in ("/oauth2/v1/certs", "/oauth2/v3/certs"):
        connection = httplib2.Http(timeout=5)
        try:
            claims = await asyncio.to_thread(
                google_id_token.verify_token, body["id_token"],
                google_auth_httplib2.Request(connection),
                audience=emulator.state.client_id, certs_url=emulator.url + path)
        finally:
            connection.close()
        assert claims["sub"] == emulator.state.user(alice).sub
        assert (claims["iss"], claims["email"]) == ("https://accounts.google.com", alice)
    assert jwt.get_unverified_header(body["id_token"])["alg"] == "RS256"


async def test_no_openid_no_id_token(
    emulator: Emulator, http: aiohttp.ClientSession, alice: str
) -> None:
    """A consent that did not ask for `openid` gets no id_token."""
    redirect = await consent(http, _auth_url(emulator, [CONTACTS_RO]), [CONTACTS_RO])
    status, body = await _exchange(http, emulator, redirect["code"])
    assert status == 200 and "id_token" not in body
