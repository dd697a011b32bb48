"""Named error categories, so every failure is handled by what it means, not where it arose.

Only a definite answer from Google counts as losing access: an outage, a timeout or
a 5xx is always temporary and never purges anything.
"""

from __future__ import annotations

from enum import StrEnum


class Category(StrEnum):
    TEMPORARY = "temporary"
    PERMISSION_LOST = "permission_lost"
    REVOKED = "revoked"
    CURSOR_EXPIRED = "cursor_expired"
    UNKNOWN = "unknown"
    #: Not Google's: a run that stopped without saying so (its worker died or timed out).
    STUCK = "stuck"


class GoogleError(Exception):
    """Base of every error a connector raises; `detail` never holds personal data."""

    category = Category.UNKNOWN

    def __init__(self, detail: str, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.retry_after = retry_after


class TemporaryError(GoogleError):
    """5xx, 429, rate limits, timeouts, connection failures: retry with backoff."""

    category = Category.TEMPORARY


class RevokedError(GoogleError):
    """`invalid_grant`: the grant is dead at Google. Purge."""

    category = Category.REVOKED


class PermissionLostError(GoogleError):
    """The token lacks the feature's scope: stop the feature, tell the app."""

    category = Category.PERMISSION_LOST


class CursorExpiredError(GoogleError):
    """The sync token or history id is too old: run a full sync."""

    category = Category.CURSOR_EXPIRED


class PageTokenRefusedError(CursorExpiredError):
    """Google refused a page token it handed out: list again from the first page.

    Page tokens expire (a files.list token is "typically valid for several hours") and
    Google documents no answer for an expired one but a 400 (docs/google.md §9.1).
    """


class UnknownGoogleError(GoogleError):
    """Anything else: stop and alert, change nothing."""
