"""Staff access under Google's exceptions, and the access log a user may see.

Google lets humans read a user's data only for security, legal compliance, or with the
user's documented consent (and aggregates for operations). Staff reads go through the
same purpose-checked path as the app's, named after the operator, with a written
justification, and each lands in the account's access log — which the app can show the
user (`GET /v1/accounts/{id}/access-log`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from gwsync.core.timeutil import rfc3339
from gwsync.domain import purpose
from gwsync.domain.api import AccessLogEntry, AccessLogPage
from gwsync.storage.models import AccessLog
from gwsync.storage.records import BadCursorError, ReadResult, RecordStore
from gwsync.web.answers import answer, read_answer
from gwsync.web.http import HttpError, deps_of
from gwsync.web.ownership import account_of
from gwsync.web.parse import (
    Cursor,
    Integer,
    Prose,
    QueryModel,
    Text,
    known_features,
    parse_body,
    parse_query,
)

STAFF_USES = purpose.EXCEPTIONS | {purpose.AGGREGATE}
BAD_CURSOR = ("bad_cursor", "cursor must be one this API returned")


class StaffRead(BaseModel):
    """A staff read: the exception it falls under, who reads, and why, in writing."""

    model_config = ConfigDict(extra="forbid")
    REFUSALS: ClassVar[Mapping[str, tuple[str, str]]] = {"cursor": BAD_CURSOR}
    use: Annotated[str, Text(80)]
    justification: Annotated[str, Prose(2000, min_length=10)]
    operator: Annotated[str, Text(100)]
    feature: Annotated[str, Text(40)] | None = None
    kind: Annotated[str, Text(40)] | None = None
    cursor: Cursor | None = None
    limit: Annotated[int, Integer(1, 1000)] = 100


class AccessLogQuery(QueryModel):
    """`?cursor=` of the access log: an entry id this API returned."""

    REFUSALS = {"cursor": BAD_CURSOR}
    cursor: Cursor | None = None


async def staff_read(store: RecordStore, account_id: str, body: StaffRead) -> ReadResult:
    """Read one account's records as staff; refused (and audited) outside the exceptions."""
    use = body.use if body.use in STAFF_USES else f"staff:{body.use}"[:80]
    return await store.read(account_id, use=use, actor=f"staff:{body.operator}",
                            feature=body.feature, kind=body.kind,
                            cursor=None if body.cursor is None else str(body.cursor),
                            limit=body.limit, staff=True, justification=body.justification)


async def admin_access(request: web.Request) -> web.Response:
    account = await account_of(request)
    body = await parse_body(request, StaffRead)
    if body.feature:
        known_features([body.feature])
    try:
        result = await staff_read(deps_of(request).store, account.id, body)
    except purpose.LimitedUseViolation as refused:
        raise HttpError(403, "limited_use_violation", refused.decision.reason) from None
    except BadCursorError:
        raise HttpError(400, *BAD_CURSOR) from None
    return read_answer(result)


def log_entry(row: AccessLog) -> AccessLogEntry:
    return AccessLogEntry(at=rfc3339(row.at), use=row.use, decision=row.decision,
                          reason=row.reason, actor=row.actor, justification=row.justification,
                          feature=row.feature, record_count=row.record_count)


async def access_log(request: web.Request) -> web.Response:
    """Who read this account's data, when, for what, and whether it was allowed."""
    account = await account_of(request)
    before = parse_query(request, AccessLogQuery).cursor
    query = select(AccessLog).where(AccessLog.account_id == account.id)
    if before is not None:
        query = query.where(AccessLog.id < before)
    async with deps_of(request).sessions() as session:
        rows = list(await session.scalars(query.order_by(AccessLog.id.desc()).limit(101)))
    next_cursor = str(rows[99].id) if len(rows) > 100 else None
    return answer(AccessLogPage(entries=[log_entry(r) for r in rows[:100]],
                                next_cursor=next_cursor))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/admin/accounts/{account_id}/access", admin_access)
    router.add_get("/v1/accounts/{account_id}/access-log", access_log)


async def read_from_cli(settings: Any, account_id: str, body: StaffRead) -> ReadResult:
    """`gwsync access`: the same staff read, from an operator's shell on a server."""
    from gwsync.tasks.deps import Deps

    deps = await Deps.open(settings)
    try:
        return await staff_read(deps.store, account_id, body)
    finally:
        await deps.close()


def render(result: ReadResult) -> Any:
    from rich.table import Table

    if result.counts is not None:
        table = Table("feature", "records", title="counts only (aggregate_ops)")
        for name, count in sorted(result.counts.items()):
            table.add_row(name, str(count))
        return table
    table = Table("feature", "kind", "id", "content", title="records (audited)")
    for item in result.items:
        table.add_row(item["feature"], item["kind"], item["id"], str(item["content"]))
    return table
