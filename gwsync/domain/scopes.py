"""Least privilege, computed: the narrowest scope that authorises every method a feature calls.

The per-method scope lists come from the discovery documents; this module adds only
what they do not say — how sensitive and how broad each scope is, and where Google
narrows a scope by request parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum

from gwsync.core import discovery

AUTH = "https://www.googleapis.com/auth/"
#: Asked with every consent, beside the features' scopes (both non-sensitive). `openid`
#: makes the code exchange return an id_token whose `sub` says which Google account
#: consented; `email` because Cross-Account Protection sends events only about users who
#: granted `profile` or `email` (docs/google.md §9.5), and `email` adds two claims to the
#: id_token (`email`, `email_verified`) where `profile` adds name, picture and locale.
#: Neither claim is read or stored.
IDENTITY_SCOPES: tuple[str, ...] = ("openid", "email")


class ScopeClass(IntEnum):
    """Google's verification classes, least privileged first."""

    NON_SENSITIVE = 0
    SENSITIVE = 1
    RESTRICTED = 2

    @property
    def label(self) -> str:
        """As Google writes it: non-sensitive, sensitive, restricted."""
        return self.name.lower().replace("_", "-")


@dataclass(frozen=True)
class ScopeInfo:
    """One row of the ranked table."""

    scope: str
    klass: ScopeClass
    #: Within a class, smaller reaches less data.
    breadth: int
    #: Request parameters this scope forbids, with the values it forbids (None = any value).
    forbidden_params: Mapping[str, frozenset[str] | None] | None = None
    #: Set when the scope authorises a method but returns only part of its data; such a
    #: scope is chosen only for a feature that declares it accepts the limitation.
    limitation: str | None = None


def _s(name: str) -> str:
    return name if name.startswith("https://") else AUTH + name


_N, _S, _R = ScopeClass.NON_SENSITIVE, ScopeClass.SENSITIVE, ScopeClass.RESTRICTED

#: Classes from Google's restricted-scope list and API scope pages (see
#: docs/google.md §1.3). Calendar and People scopes are not on
#: the restricted list and are treated as sensitive; Google's per-scope page for them
#: could not be confirmed here.
RANKED: tuple[ScopeInfo, ...] = (
    ScopeInfo(_s("drive.file"), _N, 1,
              limitation="only files the user opened or created with this app"),
    ScopeInfo(_s("drive.appdata"), _N, 1, limitation="only the app's hidden data folder"),
    ScopeInfo(_s("calendar.freebusy"), _S, 1),
    ScopeInfo(_s("contacts.readonly"), _S, 2),
    ScopeInfo(_s("contacts.other.readonly"), _S, 2),
    ScopeInfo(_s("calendar.events.freebusy"), _S, 2,
              limitation="free/busy only: events come back without their details"),
    ScopeInfo(_s("calendar.events.readonly"), _S, 3),
    ScopeInfo(_s("calendar.events.owned.readonly"), _S, 3,
              limitation="only events on calendars the user owns, not invitations"),
    ScopeInfo(_s("calendar.readonly"), _S, 4),
    ScopeInfo(_s("directory.readonly"), _S, 4),
    ScopeInfo(_s("contacts"), _S, 5),
    ScopeInfo(_s("calendar.events"), _S, 5),
    ScopeInfo(_s("calendar"), _S, 6),
    ScopeInfo(
        _s("gmail.metadata"), _R, 1,
        forbidden_params={"format": frozenset({"full", "raw"}), "q": None},
    ),
    ScopeInfo(_s("drive.metadata.readonly"), _R, 2),
    ScopeInfo(_s("gmail.readonly"), _R, 3),
    ScopeInfo(_s("drive.readonly"), _R, 3),
    ScopeInfo(_s("drive.metadata"), _R, 4),
    ScopeInfo(_s("gmail.modify"), _R, 5),
    ScopeInfo(_s("drive"), _R, 6),
    ScopeInfo("https://mail.google.com/", _R, 7),
)
TABLE: dict[str, ScopeInfo] = {info.scope: info for info in RANKED}


class NoScopeError(LookupError):
    """No ranked scope authorises every method with the given parameters."""


def permits(info: ScopeInfo, params: Mapping[str, str]) -> bool:
    """Whether `info` allows a request with these parameters."""
    for name, forbidden in (info.forbidden_params or {}).items():
        if name in params and (forbidden is None or params[name] in forbidden):
            return False
    return True


def candidates(
    methods: Iterable[str],
    params: Mapping[str, Mapping[str, str]] | None = None,
    accepts: Iterable[str] = (),
) -> list[ScopeInfo]:
    """Every ranked scope that authorises all `methods` with their full data, least
    privileged first; a limited scope counts only when listed in `accepts`."""
    params = params or {}
    method_list = list(methods)
    if not method_list:
        return []
    accepted = set(accepts)
    common = set.intersection(*(set(discovery.method_scopes(m)) for m in method_list))
    usable = [
        TABLE[s] for s in common
        if s in TABLE
        and (TABLE[s].limitation is None or s in accepted)
        and all(permits(TABLE[s], params.get(m, {})) for m in method_list)
    ]
    return sorted(usable, key=lambda info: (info.klass, info.breadth))


def narrowest(
    methods: Iterable[str],
    params: Mapping[str, Mapping[str, str]] | None = None,
    accepts: Iterable[str] = (),
) -> ScopeInfo:
    method_list = list(methods)
    found = candidates(method_list, params, accepts)
    if not found:
        raise NoScopeError(f"no ranked scope authorises all of {sorted(method_list)}")
    return found[0]


def parse(scopes: str | Iterable[str] | None) -> frozenset[str]:
    """Scopes as Google writes them: space-separated or a list."""
    if scopes is None:
        return frozenset()
    if isinstance(scopes, str):
        return frozenset(scopes.split())
    return frozenset(s for item in scopes for s in str(item).split())
