"""Staff access under Google's exceptions, and the access log a user may see.

Google lets humans read a user's data only for security, legal compliance, or with the
user's documented consent (and aggregates for operations). Staff reads go through the
same purpose-checked path as the app's, named after the operator, with a written
justification, and each lands in the account's access log — which the app can show the
user (`GET /v1/accounts/{id}/access-log`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from gwsync.storage import purpose
from gwsync.storage.models import AccessLog
from gwsync.storage.records import BadCursorError, ReadResult, RecordStore
from gwsync.timeutil import rfc3339
from gwsync.worker.api import _account, _body, _known_features
from gwsync.worker.web import ApiError, deps_of

STAFF_USES = purpose.EXCEPTIONS | {purpose.AGGREGATE}


class StaffRead(BaseModel):
    model_config = ConfigDict(extra="forbid")
    use: str
    justification: str = Field(min_length=10, max_length=2000)
    operator: str = Field(min_length=1, max_length=100)
    feature: str | None = None
    kind: str | None = None
    cursor: str | None = None
    limit: int = Field(default=100, ge=1, le=1000)


async def staff_read(store: RecordStore, account_id: str, body: StaffRead) -> ReadResult:
    """Read one account's records as staff; refused (and audited) outside the exceptions."""
    use = body.use if body.use in STAFF_USES else f"staff:{body.use}"[:80]
    return await store.read(account_id, use=use, actor=f"staff:{body.operator}",
                            feature=body.feature, kind=body.kind, cursor=body.cursor,
                            limit=body.limit, staff=True, justification=body.justification)


async def admin_access(request: web.Request) -> web.Response:
    account = await _account(request)
    body = await _body(request, StaffRead)
    if body.feature:
        _known_features([body.feature])
    try:
        result = await staff_read(deps_of(request).store, account.id, body)
    except purpose.LimitedUseViolation as refused:
        raise ApiError(403, "limited_use_violation", refused.decision.reason) from None
    except BadCursorError:
        raise ApiError(400, "bad_cursor", "cursor must be one this API returned") from None
    if result.counts is not None:
        return web.json_response({"counts": result.counts})
    return web.json_response({"records": result.items, "next_cursor": result.next_cursor})


def log_entry(row: AccessLog) -> dict[str, Any]:
    return {"at": rfc3339(row.at), "use": row.use, "decision": row.decision,
            "reason": row.reason, "actor": row.actor, "justification": row.justification,
            "feature": row.feature, "record_count": row.record_count}


async def access_log(request: web.Request) -> web.Response:
    """Who read this account's data, when, for what, and whether it was allowed."""
    account = await _account(request)
    before = request.query.get("cursor", "")
    if before and not before.isdigit():
        raise ApiError(400, "bad_cursor", "cursor must be one this API returned")
    query = select(AccessLog).where(AccessLog.account_id == account.id)
    if before:
        query = query.where(AccessLog.id < int(before))
    async with deps_of(request).sessions() as session:
        rows = list(await session.scalars(query.order_by(AccessLog.id.desc()).limit(101)))
    next_cursor = str(rows[99].id) if len(rows) > 100 else None
    return web.json_response({"entries": [log_entry(r) for r in rows[:100]],
                              "next_cursor": next_cursor})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/admin/accounts/{account_id}/access", admin_access)
    router.add_get("/v1/accounts/{account_id}/access-log", access_log)


async def read_from_cli(settings: Any, account_id: str, body: StaffRead) -> ReadResult:
    """`gwsync access`: the same staff read, from an operator's shell on a server."""
    from gwsync.worker.deps import Deps

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
