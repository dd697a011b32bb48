"""`GET /openapi.json`: the API's OpenAPI 3.1 document, built from the models it runs on.

Every operation names the pydantic models that validate its query string and body (the
ones `parse_query` and `parse_body` use) and the models its answers are built from
(`gwsync.domain.api`, through `gwsync.web.answers`), so the document cannot say one thing
while the code does another. tests/web/test_openapi.py checks that every route the app
registers is here, and that every example validates.

The document is public, like `/healthz`: it holds no secret and no data, and a client
generator or a fuzzer must be able to read it before it holds a token. Links describe the
stateful paths (connect → status, read, sync, access log → disconnect → erasure), which
Schemathesis follows.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gwsync.domain import api
from gwsync.web import accounts, oauth, records, staff
from gwsync.web.http import MAX_PATH_PARAM
from gwsync.web.ownership import UserQuery
from gwsync.web.parse import QueryModel

REF = "#/components/schemas/{model}"
#: Security requirement names → the bearer token each one is.
APP, ADMIN = "apiToken", "adminToken"
_UUID = {"type": "string", "minLength": 1, "maxLength": MAX_PATH_PARAM}
_ERRORS = {400: "bad input: the error names what, and nothing was changed",
           401: "no valid bearer token", 404: "unknown (or another user's) resource",
           409: "the account is not active", 410: "the account's data was erased",
           413: "the body is too large",
           403: "a forbidden or unknown use; a consent begun by another user",
           415: "the form is not urlencoded", 502: "Google refused", 503: "Google unreachable"}


@dataclass(frozen=True)
class Operation:
    """One route as the document describes it."""

    method: str
    path: str
    operation_id: str
    summary: str
    ok: Mapping[int, type[BaseModel] | None]
    errors: tuple[int, ...] = (400,)
    query: type[QueryModel] | None = None
    body: type[BaseModel] | None = None
    security: str | None = APP
    #: The app names the user of an account or erasure (`?user_id=`, required).
    as_user: bool = False
    headers: tuple[str, ...] = ()
    links: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    tags: tuple[str, ...] = ("app",)


def _link(operation_id: str, **parameters: str) -> dict[str, Any]:
    return {"operationId": operation_id, "parameters": parameters}


_ACCOUNT = {"path.account_id": "$response.body#/account_id"}
_AFTER_CONNECT = {name: _link(name, **_ACCOUNT, **{"query.user_id": "$request.body#/user_id"})
                  for name in ("getAccount", "readRecords", "syncAccount", "getAccessLog",
                               "disconnectAccount")}
_SAME_ACCOUNT = {name: _link(name, **{"path.account_id": "$request.path.account_id",
                                      "query.user_id": "$request.query.user_id"})
                 for name in ("getAccount", "readRecords", "getAccessLog", "disconnectAccount")}
_TO_ERASURE = {"getErasure": _link("getErasure",
                                   **{"path.erasure_id": "$response.body#/erasure_id",
                                      "query.user_id": "$request.query.user_id"})}
_ACCOUNT_ERRORS = (400, 404)
_WEBHOOK_ERRORS = (400, 403, 404, 413)

OPERATIONS: tuple[Operation, ...] = (
    Operation("post", "/v1/accounts", "connectAccount",
              "Register a grant the app obtained itself; first syncs are queued",
              {201: api.Connected}, (400, 413, 502, 503), body=accounts.ConnectBody,
              links={201: _AFTER_CONNECT}),
    Operation("get", "/v1/accounts/{account_id}", "getAccount",
              "Status, granted scopes, per-feature sync state, and the account's erasures",
              {200: api.AccountStatus}, _ACCOUNT_ERRORS, as_user=True,
              links={200: _SAME_ACCOUNT}),
    Operation("post", "/v1/accounts/{account_id}/sync", "syncAccount",
              "Queue syncs of the features named (all by default) that the grant covers",
              {202: api.SyncQueued}, (400, 404, 409, 413), body=accounts.SyncBody, as_user=True,
              links={202: _SAME_ACCOUNT}),
    Operation("delete", "/v1/accounts/{account_id}", "disconnectAccount",
              "Disconnect: revoke at Google and erase (an erasure already under way or done "
              "answers 200 with its id)", {202: api.ErasureStarted, 200: api.ErasureStarted},
              (400, 404, 409), as_user=True, links={202: _TO_ERASURE, 200: _TO_ERASURE}),
    Operation("get", "/v1/accounts/{account_id}/records", "readRecords",
              "Purpose-checked read: name the use; a forbidden or unknown use is a 403",
              {200: None}, (400, 403, 404, 410), query=records.RecordsQuery, as_user=True),
    Operation("get", "/v1/accounts/{account_id}/access-log", "getAccessLog",
              "Who read this account's data, when, for what, and the decision",
              {200: api.AccessLogPage}, _ACCOUNT_ERRORS, query=staff.AccessLogQuery,
              as_user=True),
    Operation("post", "/v1/users/{user_id}/erasure", "eraseUser",
              "Erase everything of a user, every account", {202: api.ErasureStarted},
              (400,), links={202: {"getErasure": _link(
                  "getErasure", **{"path.erasure_id": "$response.body#/erasure_id",
                                   "query.user_id": "$request.path.user_id"})}}),
    Operation("get", "/v1/erasures/{erasure_id}", "getErasure",
              "An erasure's state and receipt (which names no person)",
              {200: api.ErasureAnswer}, (400, 404), as_user=True),
    Operation("get", "/v1/oauth/start", "startConsent",
              "The consent URL for exactly the features' scopes the user misses",
              {200: api.ConsentStart}, (400,), query=oauth.StartQuery),
    Operation("get", "/v1/oauth/callback", "finishConsent",
              "Exchange Google's code for a grant: a new account (201) or merged (200)",
              {201: api.Connected, 200: api.Connected}, (400, 403, 409, 502, 503),
              query=oauth.CallbackQuery),  # no links: only a real consent succeeds
    Operation("post", "/admin/accounts/{account_id}/access", "staffAccess",
              "Staff read under Google's exceptions, justified in writing and audited",
              {200: None}, (400, 403, 404, 413), body=staff.StaffRead, security=ADMIN,
              tags=("staff",)),
    Operation("get", "/healthz", "liveness", "Liveness: the process answers",
              {200: api.Liveness}, (), security=None, tags=("health",)),
    Operation("get", "/readyz", "readiness", "Readiness: database, migrations, Redis",
              {200: api.Readiness, 503: api.Readiness}, (), security=None, tags=("health",)),
    Operation("get", "/openapi.json", "openapi", "This document", {200: None}, (),
              security=None, tags=("health",)),
    Operation("post", "/webhooks/google/calendar", "calendarNotification",
              "Calendar push notification (Google's channel headers)", {200: api.WebhookAck},
              _WEBHOOK_ERRORS, security=None, tags=("google",),
              headers=("X-Goog-Channel-ID", "X-Goog-Resource-State", "X-Goog-Channel-Token",
                       "X-Goog-Resource-ID", "X-Goog-Message-Number")),
    Operation("post", "/webhooks/google/drive", "driveNotification",
              "Drive push notification (Google's channel headers)", {200: api.WebhookAck},
              _WEBHOOK_ERRORS, security=None, tags=("google",),
              headers=("X-Goog-Channel-ID", "X-Goog-Resource-State", "X-Goog-Channel-Token",
                       "X-Goog-Resource-ID", "X-Goog-Message-Number")),
    Operation("post", "/webhooks/google/gmail", "gmailNotification",
              "Gmail change published through Pub/Sub push (`?token=` the push secret)",
              {200: api.WebhookAck}, _WEBHOOK_ERRORS, security=None, tags=("google",)),
    Operation("post", "/webhooks/google/risc", "securityEvent",
              "Cross-Account Protection security event token (RFC 8935)",
              {202: api.WebhookAck}, (400,), security=None, tags=("google",)),
)

#: Routes left out on purpose: the ops page (HTML for staff, behind a session cookie) and
#: Prometheus' text exposition.
UNDOCUMENTED = frozenset({("GET", "/ops"), ("GET", "/ops/login"), ("POST", "/ops/login"),
                          ("POST", "/ops/logout"), ("GET", "/metrics")})


def _path_parameters(path: str) -> list[dict[str, Any]]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    return [{"name": name, "in": "path", "required": True, "schema": _UUID} for name in names]


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter that may be left out, as the schema of a value that is given."""
    options = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    if len(options) == 1:
        rest = {k: v for k, v in schema.items() if k not in {"anyOf", "default"}}
        return {**options[0], **rest}
    return {k: v for k, v in schema.items() if k != "default" or v is not None}


def _query_parameters(operation: Operation) -> list[dict[str, Any]]:
    models = [m for m in (UserQuery if operation.as_user else None, operation.query) if m]
    found: list[dict[str, Any]] = []
    for model in models:
        schema = model.model_json_schema(ref_template=REF)
        for name, prop in schema["properties"].items():
            required = name in schema.get("required", []) or model is UserQuery
            found.append({"name": name, "in": "query", "required": required,
                          "schema": _without_null(prop)})
    return found


def _header_parameters(operation: Operation) -> list[dict[str, Any]]:
    return [{"name": name, "in": "header", "required": False,
             "schema": {"type": "string", "maxLength": 256}} for name in operation.headers]


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ok_schema(operation: Operation, model: type[BaseModel] | None) -> dict[str, Any]:
    if model is not None:
        return {"$ref": REF.format(model=model.__name__)}
    if operation.operation_id in {"readRecords", "staffAccess"}:
        return {"anyOf": [{"$ref": REF.format(model="RecordsPage")},
                          {"$ref": REF.format(model="RecordCounts")}]}
    return {"type": "object"}


def _responses(operation: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, model in operation.ok.items():
        entry: dict[str, Any] = {"description": model.__doc__.split("\n")[0] if model and
                                 model.__doc__ else operation.summary,
                                 "content": _content(_ok_schema(operation, model))}
        if status in operation.links:
            entry["links"] = dict(operation.links[status])
        responses[str(status)] = entry
    errors = (set(operation.errors) | ({401} if operation.security else set())
              | ({404} if "{" in operation.path else set()))  # `check_path`: a bad id
    for status in sorted(errors | {500}):
        responses[str(status)] = {"description": _ERRORS.get(status, "the server failed"),
                                  "content": _content({"$ref": REF.format(model="ErrorBody")})}
    return responses


def _operation(operation: Operation) -> dict[str, Any]:
    parameters = (_path_parameters(operation.path) + _query_parameters(operation)
                  + _header_parameters(operation))
    entry: dict[str, Any] = {"operationId": operation.operation_id,
                             "summary": operation.summary, "tags": list(operation.tags),
                             "parameters": parameters, "responses": _responses(operation),
                             "security": [{operation.security: []}] if operation.security
                             else []}
    if operation.body is not None:
        entry["requestBody"] = {"required": False, "content": _content(
            {"$ref": REF.format(model=operation.body.__name__)})}
    elif operation.tags == ("google",):
        entry["requestBody"] = {"required": False, "content": {
            "application/json": {"schema": {}}, "application/jwt": {"schema": {"type": "string"}}}}
    return entry


ANSWERS: tuple[type[BaseModel], ...] = (
    api.ErrorBody, api.Connected, api.AccountStatus, api.SyncQueued, api.ErasureStarted,
    api.RecordsPage, api.RecordCounts, api.ErasureAnswer, api.ConsentStart, api.AccessLogPage,
    api.Liveness, api.Readiness, api.WebhookAck)


def _schemas() -> dict[str, Any]:
    bodies = [op.body for op in OPERATIONS if op.body is not None]
    _, found = models_json_schema(
        [(m, "validation") for m in bodies] + [(m, "serialization") for m in ANSWERS],
        ref_template=REF)
    return dict(found.get("$defs", {}))


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once per process: it depends only on the code)."""
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method] = _operation(operation)
    return {
        "openapi": "3.1.0",
        "info": {"title": "gwsync", "version": "1",
                 "description": "The main app's API of gwsync: connect Google accounts, "
                                "sync, read with a named use, disconnect and erase."},
        "paths": paths,
        "components": {"schemas": _schemas(), "securitySchemes": {
            APP: {"type": "http", "scheme": "bearer",
                  "description": "GWSYNC_API_TOKEN, on every /v1 route"},
            ADMIN: {"type": "http", "scheme": "bearer",
                    "description": "GWSYNC_ADMIN_TOKEN, on staff routes"}}},
    }


async def openapi(_request: web.Request) -> web.Response:
    return web.json_response(document())


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/openapi.json", openapi)

