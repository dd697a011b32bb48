"""Configuration: environment variables with the `GWSYNC_` prefix (README.md, Configuration).

Everything is optional except the secrets a process needs; `require()` names the
missing variable so that a misconfigured deploy fails at start, not on first use.
"""

from __future__ import annotations

import base64
import binascii
from functools import cached_property
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gwsync.core import keyring

GOOGLE_HOSTS_NOTE = "unset: Google's real hosts"
#: How a Standard Webhooks secret begins.
WHSEC_PREFIX = "whsec_"

#: The secrets each process cannot run without.
REQUIRED: dict[str, tuple[str, ...]] = {
    "web": ("api_token", "admin_token", "encryption_key", "google_client_id",
            "google_client_secret"),
    "worker": ("encryption_key", "google_client_id", "google_client_secret"),
}


#: Bearer tokens shorter than this, or with fewer distinct characters, are refused: a
#: token from `secrets.token_urlsafe(32)` (43 characters) passes, a word does not.
MIN_TOKEN_CHARS = 32
MIN_TOKEN_DISTINCT = 12
TOKEN_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class ConfigError(RuntimeError):
    """A process was started without a setting it needs."""


def _weak(token: str) -> bool:
    return len(token) < MIN_TOKEN_CHARS or len(set(token)) < MIN_TOKEN_DISTINCT


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
    #: More master keys, `id:base64,id:base64`, the first the primary (new data keys are
    #: wrapped by it); `GWSYNC_ENCRYPTION_KEY`, when also set, joins the ring after them.
    encryption_keys: SecretStr | None = None
    #: The erasure ledger's own database (SQLAlchemy async URL), on storage the main
    #: database's backups do not include: `gwsync restore-check` replays it after a
    #: restore (docs/architecture.md §6). Unset: no ledger, and restore-check refuses.
    erasure_ledger_url: str | None = None
    #: The ops page's session cookie is `Secure` (sent over https only); false only for
    #: plain-http local use (the demo, tests on http://127.0.0.1).
    ops_cookie_secure: bool = True
    port: int = Field(default=8080, validation_alias=AliasChoices("PORT", "GWSYNC_PORT"))

    log_format: Literal["json", "console"] = "json"
    log_level: str = "INFO"
    sync_page_size: int = Field(default=500, ge=1, le=1000)
    #: Gmail calls in flight at once per mailbox, all batches together (Google answers
    #: 429 for too many concurrent requests per user at 25–50). 16 keep the per-user
    #: quota rate busy through Google's latency tail (gwsync/connectors/gmail.py).
    gmail_max_in_flight: int = Field(default=16, ge=1, le=50)
    #: The exact redirect URIs `/v1/oauth/start` accepts, comma-separated: a consent may
    #: only send the user back to the app. Unset: consent through gwsync is refused.
    oauth_redirect_uris: str | None = None
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
    #: Pub/Sub push authentication (the subscription's `oidcToken`): the audience its ID
    #: tokens carry and the service account they name. Both set: every Gmail push must
    #: carry a valid token and `?token=` is not consulted; both unset: `push_token` is
    #: the fallback (one set alone is refused at start).
    push_oidc_audience: str | None = None
    push_oidc_email: str | None = None
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
    #: On SIGTERM a worker takes no new job and lets running ones finish for this long, then
    #: cancels the rest (arq runs them again); below a platform's usual 30 s kill grace.
    worker_stop_grace_s: float = Field(default=25.0, ge=0)
    #: Google's quota, spent from per-user and per-project budgets in Redis that every
    #: worker shares (gwsync/connectors/quota.py); benchmarks of raw speed turn it off.
    quota_enabled: bool = True
    #: The budgets' sliding window; the limits below are per minute and scaled to it.
    #: Short, so a budget is spent as a smooth rate with a burst of one window at most:
    #: Google enforces per-user limits as a moving average and answers bursts with 429,
    #: so a 60 s window (a minute's budget spendable in its first second) is refused.
    quota_window_s: float = Field(default=2.0, gt=0)
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
    #: Where gwsync's Standard Webhooks to the main app go, and their `whsec_…` secret
    #: (both unset: no event is written or sent; gwsync/tasks/app_webhooks.py).
    app_webhook_url: str | None = None
    app_webhook_secret: SecretStr | None = None
    #: Delivery tries of one event before it is given up (and shown on the ops page), and
    #: the first retry delay, doubled per try up to an hour (15 tries ≈ 5.5 hours).
    app_webhook_max_attempts: int = Field(default=15, ge=1, le=100)
    app_webhook_backoff_s: float = Field(default=5.0, gt=0)
    #: How long a given-up event keeps its sealed body (from its creation), so that
    #: `gwsync webhooks redeliver` can send it again; then the body is dropped.
    app_webhook_keep_failed_s: float = Field(default=7 * 86400, ge=0)

    @field_validator("encryption_key")
    @classmethod
    def _key_is_32_bytes(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            keyring.decode_key(value.get_secret_value(), "GWSYNC_ENCRYPTION_KEY")
        return value

    @field_validator("encryption_keys")
    @classmethod
    def _keys_parse(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            keyring.parse_keys(value.get_secret_value(), None)
        return value

    @field_validator("app_webhook_secret")
    @classmethod
    def _whsec(cls, value: SecretStr | None) -> SecretStr | None:
        """A Standard Webhooks secret: `whsec_` and base64 of 24 to 64 random bytes."""
        if value is None:
            return None
        text = value.get_secret_value()
        try:
            raw = base64.b64decode(text.removeprefix(WHSEC_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if not text.startswith(WHSEC_PREFIX) or not 24 <= len(raw) <= 64:
            raise ValueError(f"GWSYNC_APP_WEBHOOK_SECRET must be {WHSEC_PREFIX} followed by "
                             "base64 of 24 to 64 random bytes")
        return value

    @field_validator("app_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("GWSYNC_APP_WEBHOOK_URL must be an http(s) URL")
        return value or None

    @property
    def app_webhooks(self) -> bool:
        """Whether events for the main app are written and sent."""
        return self.app_webhook_url is not None and self.app_webhook_secret is not None

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
            if name == "encryption_key" and self.encryption_keys is not None:
                continue
            if getattr(self, name) is None:
                raise ConfigError(
                    f"GWSYNC_{name.upper()} is not set; the {process} process needs it"
                )
        if process == "web":
            self._check_bearer_tokens()
            self._check_push_oidc()
        if (self.app_webhook_url is None) != (self.app_webhook_secret is None):
            # A URL alone would send unsigned events; a secret alone, none at all.
            missing = "SECRET" if self.app_webhook_secret is None else "URL"
            raise ConfigError(f"GWSYNC_APP_WEBHOOK_{missing} is not set; "
                              "GWSYNC_APP_WEBHOOK_URL and _SECRET go together")
        return self

    def _check_push_oidc(self) -> None:
        """Half an OIDC configuration would silently fall back to the URL token."""
        if bool(self.push_oidc_audience) != bool(self.push_oidc_email):
            raise ConfigError("GWSYNC_PUSH_OIDC_AUDIENCE and GWSYNC_PUSH_OIDC_EMAIL must be "
                              "set together")

    @property
    def push_oidc(self) -> bool:
        """Whether Gmail pushes are authenticated by Pub/Sub's OIDC token."""
        return bool(self.push_oidc_audience and self.push_oidc_email)

    def _check_bearer_tokens(self) -> None:
        """Both bearer tokens strong (≥ 32 random bytes' worth) and different, so that
        neither can be guessed and the app's token never opens staff routes."""
        tokens = {"api_token": self.api_token, "admin_token": self.admin_token}
        for name, secret in tokens.items():
            if secret is not None and _weak(secret.get_secret_value()):
                raise ConfigError(f"GWSYNC_{name.upper()} is too weak: use at least "
                                  f"{MIN_TOKEN_CHARS} random characters ({TOKEN_HINT})")
        if self.api_token is not None and self.admin_token is not None and (
                self.api_token.get_secret_value() == self.admin_token.get_secret_value()):
            raise ConfigError("GWSYNC_ADMIN_TOKEN must differ from GWSYNC_API_TOKEN")

    @property
    def redirect_uris(self) -> frozenset[str]:
        """The exact redirect URIs `/v1/oauth/start` accepts (GWSYNC_OAUTH_REDIRECT_URIS)."""
        return frozenset(u.strip() for u in (self.oauth_redirect_uris or "").split(",")
                         if u.strip())

    def _master_keys(self) -> list[keyring.MasterKey]:
        if self.encryption_key is None and self.encryption_keys is None:
            raise ConfigError("GWSYNC_ENCRYPTION_KEY is not set")
        return keyring.parse_keys(
            self.encryption_keys.get_secret_value() if self.encryption_keys else None,
            self.encryption_key.get_secret_value() if self.encryption_key else None)

    @cached_property
    def keyring(self) -> keyring.Keyring:
        """The master keys as a ring (no pseudonym key yet: storage.pseudonyms.load)."""
        return keyring.Keyring(keyring.LocalKeyWrapper(self._master_keys()))

    @property
    def master_key(self) -> bytes:
        """The primary master key's bytes (tests and tools; the service uses `keyring`)."""
        return self._master_keys()[0].secret

    @property
    def stuck_after_s(self) -> float:
        """When a running sync without a live lock counts as stuck."""
        if self.sync_stuck_after_s is not None:
            return self.sync_stuck_after_s
        return float(self.job_timeout_s + 60)

    @property
    def queue_name(self) -> str:
        return f"{self.redis_prefix}:queue"
