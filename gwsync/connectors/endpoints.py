"""Where Google is: its real hosts, or one origin that speaks Google's paths.

With `GWSYNC_GOOGLE_BASE_URL` set, every endpoint — APIs, batch, OAuth authorize,
token and revoke, Google's signing certificates — goes to that origin, and nothing else
is ever contacted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoints:
    token: str
    revoke: str
    authorize: str
    #: API name → root for google-api-python-client's `api_endpoint` option.
    api_roots: dict[str, str]
    batch_root: str
    #: Cross-Account Protection's discovery document (issuer, jwks_uri).
    risc_configuration: str = "https://accounts.google.com/.well-known/risc-configuration"
    #: Google's signing certificates (`{kid: PEM}`), against which id_tokens are verified.
    certs: str = "https://www.googleapis.com/oauth2/v1/certs"
    #: Replaces each discovery document's `rootUrl` (so batch URIs move too); None: Google's.
    root_url: str | None = None

    @classmethod
    def google(cls) -> Endpoints:
        return cls(
            token="https://oauth2.googleapis.com/token",
            revoke="https://oauth2.googleapis.com/revoke",
            authorize="https://accounts.google.com/o/oauth2/v2/auth",
            api_roots={
                "people": "https://people.googleapis.com/",
                "gmail": "https://gmail.googleapis.com/",
                "calendar": "https://www.googleapis.com/calendar/v3/",
                "drive": "https://www.googleapis.com/drive/v3/",
            },
            batch_root="https://gmail.googleapis.com",
        )

    @classmethod
    def at(cls, base: str) -> Endpoints:
        """Every endpoint on one origin, with Google's own paths."""
        base = base.rstrip("/")
        return cls(
            token=f"{base}/token",
            revoke=f"{base}/revoke",
            authorize=f"{base}/o/oauth2/v2/auth",
            api_roots={
                "people": f"{base}/",
                "gmail": f"{base}/",
                "calendar": f"{base}/calendar/v3/",
                "drive": f"{base}/drive/v3/",
            },
            batch_root=base,
            risc_configuration=f"{base}/.well-known/risc-configuration",
            certs=f"{base}/oauth2/v1/certs",
            root_url=f"{base}/",
        )

    @classmethod
    def from_base(cls, base: str | None) -> Endpoints:
        return cls.at(base) if base else cls.google()

    def urls(self) -> list[str]:
        return [self.token, self.revoke, self.authorize, self.batch_root,
                self.risc_configuration, self.certs, *self.api_roots.values()]
