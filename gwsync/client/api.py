"""`Client`: the `/v1` API as typed async methods.

Every method that is about an account or an erasure takes the user it belongs to
(`user_id`), as the API requires (a mismatch is answered as an unknown id). Answers are
parsed into `gwsync.domain.api` models; a 4xx or 5xx raises `ApiError` with the
machine-readable `error`. Reads iterate over pages, following `next_cursor`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ValidationError

from gwsync.domain.api import (
    AccessLogPage,
    AccountStatus,
    Connected,
    ConsentStart,
    ErasureAnswer,
    ErasureStarted,
    ErrorBody,
    Readiness,
    RecordCounts,
    RecordsPage,
    SyncQueued,
)

Model = TypeVar("Model", bound=BaseModel)


class ApiError(Exception):
    """gwsync refused a request: `status`, the `error` code, and the whole error body."""

    def __init__(self, status: int, body: ErrorBody) -> None:
        super().__init__(f"{status} {body.error}: {body.message}")
        self.status, self.body, self.error = status, body, body.error


def _segment(value: str) -> str:
    """A path segment: ids are quoted whole, so `a/b` or `..` cannot name another route."""
    return quote(value, safe="")


class Client:
    """gwsync's API at `base_url`, with the app's bearer token.

    Pass an `aiohttp.ClientSession` to share one (the client then leaves it open);
    otherwise use `async with Client(...) as gw:` and it opens and closes its own.
    """

    def __init__(self, base_url: str, api_token: str, *,
                 session: aiohttp.ClientSession | None = None,
                 timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_token}"}
        self._session = session
        self._owned = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owned and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _call(self, model: type[Model], method: str, path: str, *,
                    params: Mapping[str, str | None] | None = None,
                    json: Mapping[str, Any] | None = None) -> Model:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        async with self._http().request(method, self.base_url + path, params=query, json=json,
                                        headers=self._headers) as resp:
            raw = await resp.read()
            status = resp.status
        if status >= 400:
            raise ApiError(status, _error_body(status, raw))
        return model.model_validate_json(raw)

    # -- connecting ------------------------------------------------------------------------

    async def connect(self, user_id: str, refresh_token: str, *,
                      granted_scopes: Sequence[str] | None = None,
                      google_sub: str | None = None) -> Connected:
        """Register a grant the app obtained itself (`POST /v1/accounts`)."""
        body: dict[str, Any] = {"user_id": user_id, "refresh_token": refresh_token}
        if granted_scopes is not None:
            body["granted_scopes"] = list(granted_scopes)
        if google_sub is not None:
            body["google_sub"] = google_sub
        return await self._call(Connected, "POST", "/v1/accounts", json=body)

    async def start_consent(self, user_id: str, features: Sequence[str], redirect_uri: str, *,
                            login_hint: str | None = None) -> ConsentStart:
        """The URL to send the user's browser to, for exactly these features' scopes."""
        return await self._call(ConsentStart, "GET", "/v1/oauth/start", params={
            "user_id": user_id, "features": ",".join(features), "redirect_uri": redirect_uri,
            "login_hint": login_hint})

    async def finish_consent(self, user_id: str, *, state: str, code: str | None = None,
                             error: str | None = None) -> Connected:
        """Forward what Google sent to the app's redirect URI (`code` and `state`, or
        `error`), naming the user who finished the consent."""
        return await self._call(Connected, "GET", "/v1/oauth/callback", params={
            "user_id": user_id, "state": state, "code": code, "error": error})

    # -- an account --------------------------------------------------------------------------

    async def status(self, account_id: str, user_id: str) -> AccountStatus:
        """Status, scopes, per-feature sync state and the erasures that named the account."""
        return await self._call(AccountStatus, "GET", f"/v1/accounts/{_segment(account_id)}",
                                params={"user_id": user_id})

    async def sync(self, account_id: str, user_id: str,
                   features: Sequence[str] | None = None) -> SyncQueued:
        """Queue syncs of `features` (every feature the grant covers by default)."""
        body = {} if features is None else {"features": list(features)}
        return await self._call(SyncQueued, "POST",
                                f"/v1/accounts/{_segment(account_id)}/sync",
                                params={"user_id": user_id}, json=body)

    async def read(self, account_id: str, user_id: str, *, use: str,
                   feature: str | None = None, kind: str | None = None,
                   limit: int = 100) -> AsyncIterator[RecordsPage]:
        """Every page of the purpose-checked read, in order; `use` names what for
        (`feature:<name>`). A refused use raises `ApiError` (`limited_use_violation`)."""
        cursor: str | None = None
        while True:
            page = await self._call(RecordsPage, "GET", self._records(account_id), params={
                "user_id": user_id, "use": use, "feature": feature, "kind": kind,
                "limit": str(limit), "cursor": cursor})
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def counts(self, account_id: str, user_id: str,
                     feature: str | None = None) -> RecordCounts:
        """Record counts per feature (`use=aggregate_ops`): never contents."""
        return await self._call(RecordCounts, "GET", self._records(account_id), params={
            "user_id": user_id, "use": "aggregate_ops", "feature": feature})

    @staticmethod
    def _records(account_id: str) -> str:
        return f"/v1/accounts/{_segment(account_id)}/records"

    async def access_log(self, account_id: str, user_id: str) -> AsyncIterator[AccessLogPage]:
        """Every page of who read the account's data, newest first."""
        cursor: str | None = None
        while True:
            page = await self._call(
                AccessLogPage, "GET", f"/v1/accounts/{_segment(account_id)}/access-log",
                params={"user_id": user_id, "cursor": cursor})
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # -- erasing ----------------------------------------------------------------------------

    async def disconnect(self, account_id: str, user_id: str) -> ErasureStarted:
        """Revoke at Google and erase; an erasure already under way or done is returned."""
        return await self._call(ErasureStarted, "DELETE",
                                f"/v1/accounts/{_segment(account_id)}",
                                params={"user_id": user_id})

    async def erase_user(self, user_id: str) -> ErasureStarted:
        """Erase everything of a user, every account."""
        return await self._call(ErasureStarted, "POST",
                                f"/v1/users/{_segment(user_id)}/erasure")

    async def erasure(self, erasure_id: str, user_id: str) -> ErasureAnswer:
        """An erasure's state and its receipt."""
        return await self._call(ErasureAnswer, "GET", f"/v1/erasures/{_segment(erasure_id)}",
                                params={"user_id": user_id})

    # -- the process -----------------------------------------------------------------------

    async def ready(self) -> bool:
        """Whether `/readyz` answers ready (a 503 or no answer is False)."""
        try:
            await self._call(Readiness, "GET", "/readyz")
        except (ApiError, aiohttp.ClientError, ValidationError):
            return False
        return True


def _error_body(status: int, raw: bytes) -> ErrorBody:
    """The refusal as gwsync shaped it, or a stand-in when a proxy answered instead."""
    try:
        return ErrorBody.model_validate_json(raw)
    except ValidationError:
        return ErrorBody(error=f"http_{status}", message=raw[:200].decode(errors="replace"))
