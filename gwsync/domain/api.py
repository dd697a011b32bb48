"""The shapes of the HTTP API's answers, shared by the web process and `gwsync.client`.

The web process answers with these models (so an answer cannot drift from the OpenAPI
document generated from them) and the client parses with them (so a typed caller sees
what was sent). They are plain data and live here, below both: the client must not
import the web layer, nor the web layer the client.

Every model allows keys it does not name when parsing (`extra="ignore"`), so a client
built from an older gwsync keeps working when an answer grows a field.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

_TIME = "RFC 3339 UTC, milliseconds"


class Answer(BaseModel):
    """Base of every answer: tolerant of new keys, each model with an example."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class ErrorBody(BaseModel):
    """Every refusal: a machine-readable `error`, a sentence, and what it names.

    Refusals may carry more keys (`fields` the bad parameters, `features` the unknown
    ones, `status` an account's status, `use` the refused use); never values of the input.
    """

    model_config = ConfigDict(extra="allow", frozen=True, json_schema_extra={"examples": [
        {"error": "limited_use_violation", "message": "ai_training is never permitted",
         "use": "ai_training"},
        {"error": "invalid_query", "message": "the query does not match the schema",
         "fields": ["limit"]},
    ]})
    error: str = Field(description="machine-readable code, e.g. `unknown_account`")
    message: str = Field(description="what went wrong, for a person")
    fields: list[str] | None = Field(None, description="the input fields refused")


class FeatureGrant(Answer):
    """Whether the grant covers a feature, and what it misses."""

    enabled: bool
    missing_scopes: list[str]
    available: bool = Field(description="gwsync has a connector for this feature")


class LastError(Answer):
    category: str = Field(description="temporary, permission_lost, cursor_expired, stuck, ...")
    detail: str | None = None


class FeatureStatus(FeatureGrant):
    """A feature of an account: its grant, and its sync's state."""

    status: str | None = Field(None, description="null until its first sync is queued")
    stage: str | None = None
    last_sync: str | None = Field(None, description=_TIME)
    record_count: int = 0
    last_error: LastError | None = None


_FEATURE: dict[str, JsonValue] = {"enabled": True, "missing_scopes": [], "available": True}


class Connected(Answer):
    """A connected account (`POST /v1/accounts`, `GET /v1/oauth/callback`)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"account_id": "0b6f7d4e-6a43-4f5b-9f53-1c3b2f0e9a10",
         "features": {"contacts": _FEATURE}, "syncs_queued": ["contacts"]}]})
    account_id: str
    features: dict[str, FeatureGrant]
    syncs_queued: list[str]


class ErasureEntry(Answer):
    """One erasure that named an account, whoever asked for it."""

    erasure_id: str
    trigger: str = Field(description="disconnect, user_request, revoked_at_google, risc_..., ...")
    status: str = Field(description="requested, revoking, shredded, deleted, verified, failed")
    whole_account: bool
    requested_at: str | None = Field(None, description=_TIME)
    verified_at: str | None = Field(None, description=_TIME)


class AccountStatus(Answer):
    """`GET /v1/accounts/{account_id}`."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"account_id": "0b6f7d4e-6a43-4f5b-9f53-1c3b2f0e9a10", "status": "active",
         "granted_scopes": ["https://www.googleapis.com/auth/contacts.readonly"],
         "features": {"contacts": {**_FEATURE, "status": "ok", "stage": "incremental",
                                   "last_sync": "2026-12-01T10:00:00.000Z", "record_count": 240,
                                   "last_error": None}},
         "erasures": []}]})
    account_id: str
    status: str = Field(description="active, erasing, erased, ...")
    granted_scopes: list[str]
    features: dict[str, FeatureStatus]
    erasures: list[ErasureEntry]


class SyncQueued(Answer):
    """`POST /v1/accounts/{account_id}/sync`: what was queued, and what the grant skips."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"queued": ["contacts"], "skipped": ["mail_activity"]}]})
    queued: list[str]
    skipped: list[str]


class ErasureStarted(Answer):
    """An erasure begun (202) or found already under way or done (200)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"erasure_id": "5d1c7a0e-1b7e-4f0e-8d4e-0c1a2b3c4d5e", "status": "requested"}]})
    erasure_id: str
    status: str


class Purpose(Answer):
    """The purpose metadata every record carries."""

    data_use: str
    scope: str
    source_api: str
    source_method: str
    fetched_at: str | None = Field(None, description=_TIME)
    expires_at: str | None = Field(None, description=_TIME)
    policy_version: str


class Record(Answer):
    kind: str
    id: str
    feature: str
    content: dict[str, Any] = Field(description="only the fields the feature shows")
    purpose: Purpose


class RecordsPage(Answer):
    """A page of records; `next_cursor` is null on the last page."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"records": [{"kind": "contact", "id": "people/c1", "feature": "contacts",
                      "content": {"name": "Ada"},
                      "purpose": {"data_use": "feature:contacts",
                                  "scope": "https://www.googleapis.com/auth/contacts.readonly",
                                  "source_api": "people",
                                  "source_method": "people.people.connections.list",
                                  "fetched_at": "2026-12-01T10:00:00.000Z",
                                  "expires_at": "2027-03-01T10:00:00.000Z",
                                  "policy_version": "2026-11-1"}}],
         "next_cursor": "17"}]})
    records: list[Record]
    next_cursor: str | None


class RecordCounts(Answer):
    """An `aggregate_ops` read: counts per feature, never contents."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"counts": {"contacts": 240}}]})
    counts: dict[str, int]


class Receipt(Answer):
    """What an erasure did and how it was checked; it names no person."""

    erasure_id: str
    subject: str = Field(description="the hashed subject")
    trigger: str
    scope: dict[str, Any]
    state: str
    accounts: int
    steps: dict[str, Any]
    counts: dict[str, Any]
    revocation: str
    verification: dict[str, Any]
    requested_at: str | None = Field(None, description=_TIME)
    completed_at: str | None = Field(None, description=_TIME)


class ErasureAnswer(Answer):
    """`GET /v1/erasures/{erasure_id}`."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"status": "verified", "receipt": {
            "erasure_id": "5d1c7a0e-1b7e-4f0e-8d4e-0c1a2b3c4d5e", "subject": "ab" * 32,
            "trigger": "disconnect", "scope": {"accounts": "whole"}, "state": "verified",
            "accounts": 1, "steps": {}, "counts": {"records": 240}, "revocation": "revoked",
            "verification": {"ok": True}, "requested_at": "2026-12-01T10:00:00.000Z",
            "completed_at": "2026-12-01T10:00:01.000Z"}}]})
    status: str
    receipt: Receipt


class ConsentStart(Answer):
    """`GET /v1/oauth/start`: where to send the browser (null when nothing is missing)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"url": "https://accounts.google.com/o/oauth2/v2/auth?client_id=...",
         "already_granted": False,
         "scopes": ["https://www.googleapis.com/auth/contacts.readonly"],
         "features": ["contacts"]}]})
    url: str | None
    already_granted: bool
    scopes: list[str]
    features: list[str]


class AccessLogEntry(Answer):
    at: str | None = Field(None, description=_TIME)
    use: str
    decision: str
    reason: str | None = None
    actor: str
    justification: str | None = None
    feature: str | None = None
    record_count: int | None = None


class AccessLogPage(Answer):
    """Who read an account's data, newest first; `next_cursor` pages on."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"entries": [{"at": "2026-12-01T10:00:00.000Z", "use": "feature:contacts",
                      "decision": "allowed", "reason": "the feature itself", "actor": "app",
                      "justification": None, "feature": "contacts", "record_count": 5}],
         "next_cursor": None}]})
    entries: list[AccessLogEntry]
    next_cursor: str | None


class Liveness(Answer):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"status": "ok", "checked": ["process"]}]})
    status: str
    checked: list[str]


class Readiness(Answer):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"status": "ready", "checks": {"database": "ok", "migrations": "ok", "redis": "ok"}}]})
    status: str = Field(description="ready or not_ready")
    checks: dict[str, str]


class WebhookAck(Answer):
    """A Google notification acknowledged: queued, coalesced, ignored, accepted, ..."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "queued"}]})
    status: str
    erasures: list[str] | None = None
