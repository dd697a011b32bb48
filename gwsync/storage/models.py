"""The database schema: accounts, their data keys, sync state, records, audit, erasures.

Data keys live in their own table so operators can back it up on a shorter cycle than
the records: a restored records backup whose keys are gone yields nothing readable.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from gwsync.core.timeutil import utcnow

#: A `next_due_at` in the past: a new sync state is due at the scheduler's next tick.
DUE_NOW = datetime(1970, 1, 1, tzinfo=UTC)

#: SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL wants BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class Account(Base):
    """One Google grant of one app user; kept as a tombstone (no personal data) once erased."""

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    #: The app's user id; cleared when the account is erased (subject_hash remains).
    user_id: Mapped[str | None] = mapped_column(String(200), index=True)
    subject_hash: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(20), default="active")
    #: Fencing token: bumped when an erasure begins; every write checks it.
    generation: Mapped[int] = mapped_column(Integer, default=1)
    grant_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: Space-separated scopes as Google last reported them granted.
    granted_scopes: Mapped[str] = mapped_column(Text, default="")
    #: Hashes of the refresh token for matching Cross-Account Protection events.
    token_prefix_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    token_sha512x2: Mapped[str | None] = mapped_column(String(100), index=True)
    #: Keyed pseudonym of the Google account's `sub`, for Cross-Account Protection events.
    google_sub_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DataKey(Base):
    """An account's data key, wrapped by the master key. Deleting the row shreds the data."""

    __tablename__ = "data_keys"

    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    #: The master key that wrapped it (gwsync/core/keyring.py); NULL: before keyrings.
    master_key_id: Mapped[str | None] = mapped_column(String(24), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FeatureKey(Base):
    """The data key of one feature of one account: its records are encrypted under it, so
    withdrawing the feature destroys it and every copy of those records with it."""

    __tablename__ = "feature_keys"

    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    feature: Mapped[str] = mapped_column(String(40), primary_key=True)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str | None] = mapped_column(String(24), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PseudonymKey(Base):
    """The secret keyed pseudonyms are HMACs under (one row), wrapped by the keyring."""

    __tablename__ = "pseudonym_keys"

    slot: Mapped[str] = mapped_column(String(20), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(9))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(24))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SyncState(Base):
    """Where one feature of one account stands: stage, status, cursor, last error."""

    __tablename__ = "sync_states"
    __table_args__ = (
        # The scheduler reads only the rows due (O(due), not O(sync_states)) and the
        # recovery cron only the running ones, each by an index range.
        Index("ix_sync_states_next_due_at", "next_due_at", "account_id", "feature"),
        Index("ix_sync_states_status_started_at", "status", "started_at"),
    )

    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    feature: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: idle | queued | running | ok | error | needs_permission
    status: Mapped[str] = mapped_column(String(20), default="idle")
    #: full | incremental — what the next run does.
    stage: Mapped[str] = mapped_column(String(20), default="full")
    #: Opaque cursor (sync token) for incremental runs.
    cursor: Mapped[str | None] = mapped_column(Text)
    #: Page token of a full sync in progress: the checkpoint a crashed run resumes from.
    page_token: Mapped[str | None] = mapped_column(Text)
    #: Bumped at each full sync; records not seen in the latest one are deleted.
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    #: Bumped by each run that takes the sync's lock: the fencing token every write of
    #: that run must still match (gwsync/storage/leases.py), so a run that lost its lock
    #: (paused, partitioned) writes nothing once another has taken over.
    lease: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error_category: Mapped[str | None] = mapped_column(String(40))
    last_error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column()
    last_synced_at: Mapped[datetime | None] = mapped_column()
    full_synced_at: Mapped[datetime | None] = mapped_column()
    #: When the scheduler next looks at this row: set a sync interval ahead each time it
    #: enqueues or re-checks it (gwsync/tasks/schedule.py). A hint for the index, not the
    #: rule: the rule is still "not attempted within the interval", checked on the row.
    # The server default (rows that existed before migration 0004) is written as SQLite
    # stores DUE_NOW, so the scheduler's keyset paging compares like with like there.
    next_due_at: Mapped[datetime] = mapped_column(
        default=DUE_NOW, server_default=text("'1970-01-01 00:00:00.000000'"))


class Record(Base):
    """One stored item of a feature: purpose metadata in clear, contents encrypted."""

    __tablename__ = "records"
    __table_args__ = (
        UniqueConstraint("account_id", "kind", "external_id", name="uq_records_identity"),
        Index("ix_records_account_feature", "account_id", "feature"),
        Index("ix_records_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE")
    )
    feature: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(40))
    external_id: Mapped[str] = mapped_column(String(255))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    # Purpose metadata (docs/architecture.md §4, §7).
    data_use: Mapped[str] = mapped_column(String(60))
    scope: Mapped[str] = mapped_column(String(200))
    source_api: Mapped[str] = mapped_column(String(40))
    source_method: Mapped[str] = mapped_column(String(120))
    fetched_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    policy_version: Mapped[str] = mapped_column(String(40))
    epoch: Mapped[int] = mapped_column(Integer, default=0)


class RecordCount(Base):
    """How many fetched records (not `derived:*`) an account holds per feature.

    Kept by the record store's writes and deletes in their own transaction, so the ops
    snapshot reads one small row per account and feature instead of counting `records`.
    """

    __tablename__ = "record_counts"

    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    feature: Mapped[str] = mapped_column(String(40), primary_key=True)
    records: Mapped[int] = mapped_column(BigInteger, default=0)


def is_source_record() -> Any:
    """Records fetched from Google, as opposed to data derived from them (`derived:*`)."""
    return ~Record.kind.startswith("derived:")


class AccessLog(Base):
    """Every purpose-checked read decision, allowed or refused. Never holds contents."""

    __tablename__ = "access_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(36), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    use: Mapped[str] = mapped_column(String(80))
    decision: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(120))
    justification: Mapped[str | None] = mapped_column(Text)
    feature: Mapped[str | None] = mapped_column(String(40))
    record_count: Mapped[int] = mapped_column(Integer, default=0)


class Erasure(Base):
    """A durable erasure and its receipt. Names no personal data: hashed subject, counts, times."""

    __tablename__ = "erasures"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subject_hash: Mapped[str] = mapped_column(String(64), index=True)
    trigger: Mapped[str] = mapped_column(String(40))
    #: requested → revoking → shredded → deleted → verified (or failed)
    state: Mapped[str] = mapped_column(String(20), default="requested")
    account_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: What is erased: {} whole accounts; {"features": [...]} those features' records only;
    #: {"expired_before": <RFC 3339>} records past retention.
    scope: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: pending → revoked | already_invalid | failed; not_applicable for partial erasures.
    revocation: Mapped[str] = mapped_column(String(20), default="pending")
    #: Grants still to revoke at Google, sealed by the master key, kept only until revoked,
    #: so a Google outage never delays shredding the data key.
    revoke_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    steps: Mapped[dict[str, Any]] = mapped_column(default=dict)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    verification: Mapped[dict[str, Any]] = mapped_column(default=dict)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(String(200))


class SecurityEvent(Base):
    """A Cross-Account Protection event received, by the hash of its `jti` (for de-duplication)."""

    __tablename__ = "security_events"

    jti_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    accounts_matched: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(40))


class WatchChannel(Base):
    """A push channel (Calendar/Drive) or Gmail watch of one feature of one account.

    The channel token Google echoes is a random secret kept only as its SHA-256; the
    watched mailbox address (Gmail) only as a keyed hash, to map Pub/Sub messages back.
    """

    __tablename__ = "watch_channels"

    channel_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    feature: Mapped[str] = mapped_column(String(40))
    token_hash: Mapped[str | None] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(200))
    address_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AppWebhook(Base):
    """An event for the main app, in the outbox until delivered (gwsync/storage/outbox.py).

    Written in the transaction of the change it reports, so an event exists exactly when
    its change was committed. Its body (which names the app's user id) is sealed under the
    master key; only what delivery and the ops page need is in clear. A delivered event is
    deleted; one given up keeps its body for GWSYNC_APP_WEBHOOK_KEEP_FAILED_S (to be
    redelivered), then none.
    """

    __tablename__ = "app_webhooks"
    __table_args__ = (
        Index("ix_app_webhooks_status_next", "status", "next_attempt_at"),
    )

    #: The Standard Webhooks `webhook-id` (`msg_…`): the same on every retry.
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    type: Mapped[str] = mapped_column(String(40))
    account_id: Mapped[str] = mapped_column(String(36), index=True)
    #: The erasure an `account.revoked` or `erasure.verified` event reports.
    erasure_id: Mapped[str | None] = mapped_column(String(36), index=True)
    #: held (until its erasure is verified) | pending | failed (given up)
    status: Mapped[str] = mapped_column(String(10))
    body_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    #: The receiver's HTTP status or the kind of network failure — never its body.
    last_error: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
