"""`GET /v1/accounts/{id}/records`: the app's purpose-checked read.

The use is named by the caller and decided by `gwsync.domain.purpose` inside the record
store, which logs every decision; this route only maps the answers to HTTP.
"""

from __future__ import annotations

from typing import Annotated

from aiohttp import web

from gwsync.core import logs
from gwsync.domain import purpose
from gwsync.storage import accounts
from gwsync.storage.records import BadCursorError
from gwsync.web.answers import read_answer
from gwsync.web.http import HttpError, deps_of
from gwsync.web.ownership import account_of
from gwsync.web.parse import Cursor, Integer, QueryModel, Text, known_features, parse_query

log = logs.get("gwsync.api")
BAD_CURSOR = ("bad_cursor", "cursor must be one this API returned")


class RecordsQuery(QueryModel):
    """`?use=&feature=&kind=&cursor=&limit=` of a read."""

    REFUSALS = {
        "use": ("missing_use", "name the use of this read (?use=feature:<name>), "
                "at most 80 characters"),
        "feature": ("unknown_feature", "no such feature"),
        "kind": ("invalid_kind", "kind is at most 40 characters"),
        "cursor": BAD_CURSOR,
        "limit": ("invalid_limit", "limit must be 1..1000"),
    }
    use: Annotated[str, Text(80)]
    feature: Annotated[str, Text(40)] | None = None
    kind: Annotated[str, Text(40)] | None = None
    cursor: Cursor | None = None
    limit: Annotated[int, Integer(1, 1000)] = 100


async def records(request: web.Request) -> web.Response:
    account = await account_of(request)
    if account.status != accounts.ACTIVE:
        raise HttpError(410, "account_erased", "this account's data has been erased",
                       status=account.status)
    query = parse_query(request, RecordsQuery)
    if query.feature:
        known_features([query.feature])
    cursor = None if query.cursor is None else str(query.cursor)
    try:
        result = await deps_of(request).store.read(
            account.id, use=query.use, actor="app", feature=query.feature, kind=query.kind,
            cursor=cursor, limit=query.limit)
    except purpose.LimitedUseViolation as refused:
        log.warning("read_refused", account_id=account.id, use_kind=refused.decision.kind)
        raise HttpError(403, "limited_use_violation", refused.decision.reason,
                       use=query.use) from None
    except BadCursorError:
        raise HttpError(400, *BAD_CURSOR) from None
    return read_answer(result)

def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/accounts/{account_id}/records", records)
