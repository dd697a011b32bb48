"""Exceptions the emulator raises: one per wire format Google uses, and one for admin 404s.

Google speaks two error dialects: the OAuth endpoints answer RFC 6749 bodies
(``{"error": "invalid_grant", "error_description": ...}``) while the APIs answer
the ``google.rpc.Status`` JSON shape (``{"error": {"code", "message", "status"}}``).
Keeping them as separate exception types lets the state raise the right one and
lets a single middleware render it, so no handler builds error JSON by hand.
"""

from __future__ import annotations

from typing import Any

#: HTTP status → (gRPC status name, Google's generic message) for ``google.rpc.Status`` bodies.
#: The messages are the ones Google's front end uses for these codes where known; the
#: rest are plausible placeholders (a 502 from Google is in fact an HTML page).
RPC_STATUS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request is missing required authentication credential."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    409: ("ABORTED", "The operation was aborted."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: ("INTERNAL", "Internal error encountered."),
    501: ("NOT_IMPLEMENTED", "Operation is not implemented, or supported, or enabled."),
    503: ("UNAVAILABLE", "The service is currently unavailable."),
    504: ("DEADLINE_EXCEEDED", "The request deadline was exceeded."),
}


class GoogleApiError(Exception):
    """An API call failed; renders as the error body of the API that refused.

    One type for every API, because every caller handles them alike (the middleware
    renders :meth:`body`); what differs per API is only the body, described by the
    arguments: ``errors`` is the legacy ``errors[]`` list the older APIs still send
    (build items with :func:`error_item`), and ``rpc_status=False`` leaves out the gRPC
    ``status`` name, as Calendar's and Drive's older shape does.
    """

    def __init__(
        self,
        code: int,
        message: str | None = None,
        status: str | None = None,
        *,
        details: list[dict[str, Any]] | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        rpc_status: bool = True,
    ) -> None:
        default_status, default_message = RPC_STATUS.get(code, ("UNKNOWN", "Unknown error."))
        self.code = code
        self.message = message or default_message
        self.status = status or default_status
        self.details = details or []
        self.errors = errors or []
        self.headers = headers or {}
        self.rpc_status = rpc_status
        super().__init__(f"{code} {self.status}: {self.message}")

    def body(self) -> dict[str, Any]:
        """The JSON body Google sends; empty ``details`` and ``errors`` are omitted, as
        Google does."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.rpc_status:
            error["status"] = self.status
        if self.details:
            error["details"] = self.details
        if self.errors:
            error["errors"] = self.errors
        return {"error": error}


def error_item(reason: str, message: str, domain: str = "global") -> dict[str, str]:
    """One entry of the legacy ``errors[]`` list: ``{domain, reason, message}``."""
    return {"domain": domain, "reason": reason, "message": message}


def invalid_argument(message: str) -> GoogleApiError:
    """A 400 ``INVALID_ARGUMENT``: the request itself is malformed."""
    return GoogleApiError(400, message, "INVALID_ARGUMENT")


class OAuthError(Exception):
    """An OAuth endpoint refused; renders as RFC 6749 ``{"error", "error_description"}``."""

    def __init__(self, status: int, error: str, description: str | None = None) -> None:
        self.http_status = status
        self.error = error
        self.description = description
        super().__init__(f"{status} {error}: {description}")

    def body(self) -> dict[str, str]:
        """The JSON body; ``error_description`` only when there is one."""
        body = {"error": self.error}
        if self.description is not None:
            body["error_description"] = self.description
        return body


class NotFoundError(KeyError):
    """An admin call or seed named something the emulator does not hold.

    ``kind`` says what (``user``, ``contact``, ``event``, ``file``, ``message``); the
    admin routes answer 404 ``unknown_<kind>`` for every one of them alike.
    """

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(key)
        self.kind = kind
        self.key = key
