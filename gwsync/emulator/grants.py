"""OAuth as Google's authorization server keeps it: grants, the tokens minted from them.

A grant is one consent of one user to the client: a refresh token and the scopes it
covers. Access tokens are minted from a live grant (optionally down-scoped) and die with
it. The token endpoint's answers and refusals are Google's (RFC 6749 bodies, raised as
:class:`OAuthError`); the routes in `oauth` only parse requests.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gwsync.emulator.clock import iso
from gwsync.emulator.errors import OAuthError

DEFAULT_CLIENT_ID = "emulator-client-id"
DEFAULT_CLIENT_SECRET = "emulator-client-secret"
#: Google's access tokens live an hour; token responses say 3599.
ACCESS_TOKEN_TTL = 3599


@dataclass
class UserGrant:
    """One consent of one user to the client: a refresh token and the scopes it covers."""

    id: str
    user: str
    client_id: str
    scopes: frozenset[str]
    refresh_token: str
    created_at: float
    revoked_at: float | None = None


@dataclass(frozen=True)
class BearerToken:
    """A minted access token; its scopes may be a subset of its grant's (down-scoping)."""

    token: str
    grant_id: str
    user: str
    scopes: frozenset[str]
    expires_at: float


@dataclass(frozen=True)
class IssuedGrant:
    """What creating a user or a grant hands back to the caller."""

    user: str
    refresh_token: str
    scopes: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        """The admin route's response body."""
        return {"user": self.user, "refresh_token": self.refresh_token, "scopes": list(self.scopes)}


class AuthorizationServer:
    """The OAuth client it knows, every grant, every access token, and ``/revoke``'s log."""

    def __init__(self, client_id: str, client_secret: str, now: Callable[[], float]) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self._now = now
        self.access_token_ttl = ACCESS_TOKEN_TTL
        self.grants: dict[str, UserGrant] = {}
        self._by_refresh: dict[str, str] = {}
        self.access_tokens: dict[str, BearerToken] = {}
        self.revocation_log: list[dict[str, Any]] = []

    # -- grants ----------------------------------------------------------------------

    def issue_grant(self, user_key: str, scopes: Iterable[str]) -> IssuedGrant:
        """Record a consent of ``scopes`` (full scope URLs) and return its refresh token."""
        scope_set = frozenset(scopes)
        grant = UserGrant(
            id=secrets.token_hex(8),
            user=user_key,
            client_id=self.client_id,
            scopes=scope_set,
            refresh_token="1//" + secrets.token_urlsafe(48),
            created_at=self._now(),
        )
        self.grants[grant.id] = grant
        self._by_refresh[grant.refresh_token] = grant.id
        return IssuedGrant(user_key, grant.refresh_token, tuple(sorted(scope_set)))

    def withdraw_scopes(self, refresh_token: str, scopes: Iterable[str]) -> frozenset[str]:
        """Remove scopes from a live grant; returns what it still covers.

        How a single scope leaves a grant at Google (a re-consent with a box un-ticked, an
        admin policy) is not documented as one operation; what clients see is documented:
        the token response's `scope` no longer lists it, and asking for it is refused
        with `invalid_scope`. This reproduces exactly that.
        """
        grant = self._live_grant(self._by_refresh.get(refresh_token, ""))
        if grant is None:
            raise KeyError("no live grant has this refresh token")
        grant.scopes = grant.scopes - frozenset(scopes)
        return grant.scopes

    def revoke_user(self, user_key: str) -> int:
        """Revoke every live grant of the user (as at myaccount.google.com); returns how many."""
        live = [g for g in self.grants.values() if g.user == user_key and g.revoked_at is None]
        for grant in live:
            grant.revoked_at = self._now()
        return len(live)

    def forget_user(self, user_key: str) -> None:
        """Drop the user's grants and tokens entirely: they become unknown, not revoked."""
        for grant in [g for g in self.grants.values() if g.user == user_key]:
            del self.grants[grant.id]
            self._by_refresh.pop(grant.refresh_token, None)
        for token in [t for t, a in self.access_tokens.items() if a.user == user_key]:
            del self.access_tokens[token]

    def _live_grant(self, grant_id: str) -> UserGrant | None:
        grant = self.grants.get(grant_id)
        return grant if grant is not None and grant.revoked_at is None else None

    # -- the token endpoint ----------------------------------------------------------

    def check_client(self, client_id: str | None, client_secret: str | None) -> None:
        """Authenticate the OAuth client; Google answers 401 ``invalid_client``.

        The two descriptions are as observed from Google, not documented.
        """
        if client_id != self.client_id:
            raise OAuthError(401, "invalid_client", "The OAuth client was not found.")
        if client_secret != self.client_secret:
            raise OAuthError(401, "invalid_client", "Unauthorized")

    def refresh(
        self,
        refresh_token: str,
        client_id: str | None,
        client_secret: str | None,
        scope: str | None = None,
    ) -> dict[str, Any]:
        """The ``grant_type=refresh_token`` exchange: returns Google's token response body."""
        self.check_client(client_id, client_secret)
        grant = self._live_grant(self._by_refresh.get(refresh_token, ""))
        if grant is None:
            raise OAuthError(400, "invalid_grant", "Token has been expired or revoked.")
        scopes = self._narrow(grant, scope)
        token = self._mint(grant, scopes)
        return {
            "access_token": token.token,
            "expires_in": self.access_token_ttl,
            "scope": " ".join(sorted(scopes)),
            "token_type": "Bearer",
        }

    @staticmethod
    def _narrow(grant: UserGrant, scope: str | None) -> frozenset[str]:
        """Down-scope to the requested subset (RFC 6749 §6); an un-granted scope is refused.

        Google does not document down-scoping for this flow (docs/google.md §2.5); we follow
        RFC 6749 and accept only exact scope strings, no aliases (e.g. ``contacts`` does
        not let you ask for ``contacts.readonly``) — Google's alias handling is unknown.
        """
        if not scope or not scope.strip():
            return grant.scopes
        asked = frozenset(scope.split())
        missing = asked - grant.scopes
        if missing:
            raise OAuthError(
                400,
                "invalid_scope",
                f"Some requested scopes were invalid. {{invalid={sorted(missing)}}}",
            )
        return asked

    def _mint(self, grant: UserGrant, scopes: frozenset[str]) -> BearerToken:
        token = BearerToken(
            token="ya29." + secrets.token_urlsafe(40),
            grant_id=grant.id,
            user=grant.user,
            scopes=scopes,
            expires_at=self._now() + self.access_token_ttl,
        )
        self.access_tokens[token.token] = token
        return token

    def mint_access_token(self, refresh_token: str, scopes: Iterable[str] | None = None) -> str:
        """Test shortcut: an access token of the grant (optionally narrowed), no client auth."""
        scope = " ".join(scopes) if scopes is not None else None
        return str(self.refresh(refresh_token, self.client_id, self.client_secret, scope)[
            "access_token"
        ])

    def authenticate(self, access_token: str) -> BearerToken | None:
        """The live access token, or ``None`` if unknown, expired or its grant is revoked."""
        token = self.access_tokens.get(access_token)
        if token is None or token.expires_at <= self._now():
            return None
        return token if self._live_grant(token.grant_id) else None

    def revoke_token(self, token: str) -> None:
        """``/revoke``: revoke the grant behind a refresh or access token.

        The whole grant dies (its refresh token and every access token). Google's docs say
        revocation removes *all* scopes the user granted to the project, i.e. every grant
        of that user; the emulator revokes only the grant the token belongs to, so tests
        can tell grants apart — use :meth:`revoke_user` for the project-wide effect.
        Unknown or already-dead tokens → 400 ``invalid_token`` (observed, not documented).
        """
        kind, grant = self._grant_of(token)
        if grant is None:
            raise OAuthError(400, "invalid_token", "Token expired or revoked")
        grant.revoked_at = self._now()
        self.revocation_log.append(
            {"token": token, "kind": kind, "user": grant.user, "at": iso(grant.revoked_at)}
        )

    def _grant_of(self, token: str) -> tuple[str, UserGrant | None]:
        if token in self._by_refresh:
            return "refresh_token", self._live_grant(self._by_refresh[token])
        access = self.authenticate(token)
        return "access_token", (self._live_grant(access.grant_id) if access else None)

    def revocations(self) -> list[dict[str, Any]]:
        """Tokens revoked through ``/revoke`` (not admin revocations), oldest first."""
        return list(self.revocation_log)
