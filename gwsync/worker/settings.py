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
    def queue_name(self) -> str:
        return f"{self.redis_prefix}:queue"
