"""Configuration: environment variables with the `GWSYNC_` prefix, as DESIGN.md's contract.

Everything is optional except the secrets a process needs; `require()` names the
missing variable so that a misconfigured deploy fails at start, not on first use.
"""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

GOOGLE_HOSTS_NOTE = "unset: Google's real hosts"

#: The secrets each process cannot run without.
REQUIRED: dict[str, tuple[str, ...]] = {
    "web": ("api_token", "admin_token", "encryption_key", "google_client_id",
            "google_client_secret"),
    "worker": ("encryption_key", "google_client_id", "google_client_secret"),
}


class ConfigError(RuntimeError):
    """A process was started without a setting it needs."""


class Settings(BaseSettings):
    """All of gwsync's configuration, read once at process start."""

    model_config = SettingsConfigDict(env_prefix="GWSYNC_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./gwsync.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Prefix of every Redis key and of the arq queue name, so deployments can share a Redis.
    redis_prefix: str = "gwsync"
    google_base_url: str | None = None
    google_client_id: str | None = None
    google_client_secret: SecretStr | None = None
    api_token: SecretStr | None = None
    admin_token: SecretStr | None = None
    encryption_key: SecretStr | None = None
    port: int = Field(default=8080, validation_alias=AliasChoices("PORT", "GWSYNC_PORT"))

    log_format: Literal["json", "console"] = "json"
    log_level: str = "INFO"
    sync_page_size: int = Field(default=500, ge=1, le=1000)
    http_timeout_s: float = Field(default=30.0, gt=0)
    job_timeout_s: int = Field(default=600, gt=0)
    #: How long an erase job's lease outlives a dead worker before the erasure is resumed.
    erasure_lease_s: float = Field(default=15.0, gt=0)
    #: First retry delay after a temporary error; doubles per try, capped at 60 s.
    retry_base_s: float = Field(default=2.0, gt=0)
    #: Bumped when the purpose rules change, so records name the rules they were stored under.
    policy_version: str = "2026-11-1"
    #: Port on which a worker process serves its own Prometheus metrics (0: none).
    worker_metrics_port: int = Field(default=9100, ge=0, le=65535)
    #: Public https origin of the web process, where Calendar/Drive channels notify
    #: (unset: no Calendar/Drive watches, polling only).
    public_url: str | None = None
    #: Gmail push: the Pub/Sub topic `users.watch` publishes to, the push subscription
    #: whose messages `/webhooks/google/gmail` accepts, and the secret `?token=` that
    #: subscription's push endpoint carries (all three unset: Gmail is polled only).
    gmail_push_topic: str | None = None
    gmail_push_subscription: str | None = None
    push_token: SecretStr | None = None
    #: Lifetime asked for new Calendar/Drive channels, and how long before a channel or
    #: Gmail watch expires the renewal cron replaces it.
    watch_ttl_s: int = Field(default=7 * 24 * 3600, ge=300)
    watch_renew_margin_s: int = Field(default=24 * 3600, ge=60)
    #: Every enabled feature of every active account is synced at least this often.
    sync_interval_s: float = Field(default=900.0, gt=0)
    #: Scheduled syncs start at a random moment within this many seconds, so they spread out.
    sync_jitter_s: float = Field(default=60.0, ge=0)
    #: How long a sync's single-flight lock outlives a worker killed mid-sync.
    sync_lock_s: float = Field(default=15.0, gt=0)
    #: A sync still running this long after it started, with no live lock, is recovered.
    #: Unset: the job timeout + 60 s, by when arq has cancelled any run still alive.
    sync_stuck_after_s: float | None = Field(default=None, gt=0)
    #: Jobs one worker process runs at once; more capacity means more processes.
    worker_max_jobs: int = Field(default=20, ge=1)
    #: Google's quota, spent from per-user and per-project budgets in Redis that every
    #: worker shares (gwsync/connectors/quota.py); benchmarks of raw speed turn it off.
    quota_enabled: bool = True
    #: The budgets' sliding window; the limits below are per minute and scaled to it.
    quota_window_s: float = Field(default=60.0, gt=0)
    #: A request that would wait longer for quota defers its job instead of holding a worker.
    quota_max_wait_s: float = Field(default=30.0, ge=0)
    #: Gmail: 15,000 units/min per user, 1,200,000 per project (the quota page most copies
    #: show; its newest copy says 6,000/min per user for projects new after May 2026).
    quota_gmail_user_per_min: int = Field(default=15_000, ge=1)
    quota_gmail_project_per_min: int = Field(default=1_200_000, ge=1)
    #: Calendar: 600 requests/min per user, 10,000 per project (sliding window, documented).
    quota_calendar_user_per_min: int = Field(default=600, ge=1)
    quota_calendar_project_per_min: int = Field(default=10_000, ge=1)
    #: Drive: 12,000 requests/min per user and per project (the older model; the May-2026
    #: model counts 325,000 units/min per user and 1,000,000 per project).
    quota_drive_user_per_min: int = Field(default=12_000, ge=1)
    quota_drive_project_per_min: int = Field(default=12_000, ge=1)
    #: People: Google publishes no numbers (console only; unconfirmed): conservative guesses.
    quota_people_user_per_min: int = Field(default=90, ge=1)
    quota_people_project_per_min: int = Field(default=18_000, ge=1)

    @field_validator("encryption_key")
    @classmethod
    def _key_is_32_bytes(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                raw = base64.b64decode(value.get_secret_value(), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ValueError("GWSYNC_ENCRYPTION_KEY must be base64") from exc
            if len(raw) != 32:
                raise ValueError("GWSYNC_ENCRYPTION_KEY must decode to 32 bytes")
        return value

    @field_validator("google_base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else None

    @field_validator("public_url")
    @classmethod
    def _public_origin(cls, value: str | None) -> str | None:
        """Google only calls https addresses; http is accepted for loopback tests and demos."""
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("GWSYNC_PUBLIC_URL must be an http(s) origin")
        return value.rstrip("/") if value else None

    def require(self, process: str) -> Settings:
        """Raise ConfigError naming the first missing secret `process` needs."""
        for name in REQUIRED[process]:
            if getattr(self, name) is None:
                raise ConfigError(
                    f"GWSYNC_{name.upper()} is not set; the {process} process needs it"
                )
        return self

    @property
    def master_key(self) -> bytes:
        """The decoded master key; only call after `require()`."""
        if self.encryption_key is None:
            raise ConfigError("GWSYNC_ENCRYPTION_KEY is not set")
        return base64.b64decode(self.encryption_key.get_secret_value())

    @property
    def stuck_after_s(self) -> float:
        """When a running sync without a live lock counts as stuck."""
        if self.sync_stuck_after_s is not None:
            return self.sync_stuck_after_s
        return float(self.job_timeout_s + 60)

    @property
    def queue_name(self) -> str:
        return f"{self.redis_prefix}:queue"
