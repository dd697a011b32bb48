"""Configuration: the environment contract of README.md's Configuration table, and processes
that refuse to start without their secrets."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from gwsync.core.settings import REQUIRED, ConfigError, Settings

BIN = Path(sys.executable).parent
KEY_BYTES = bytes(range(32))
KEY = base64.b64encode(KEY_BYTES).decode()

#: Every secret, as an environment variable, with a valid value.
SECRETS: dict[str, str] = {
    "GWSYNC_API_TOKEN": "Zk3v9QpL2mXr8TnB4wYc7HdJ1sFa6GuE0oKi",
    "GWSYNC_ADMIN_TOKEN": "Ry5tN2bW8qLs4XeM1vCk9PzJ3hDf7GaU6oTi",
    "GWSYNC_ENCRYPTION_KEY": KEY,
    "GWSYNC_GOOGLE_CLIENT_ID": "client-id-value",
    "GWSYNC_GOOGLE_CLIENT_SECRET": "client-secret-value",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from an environment holding no gwsync configuration."""
    for name in list(os.environ):
        if name.startswith("GWSYNC_") or name == "PORT":
            monkeypatch.delenv(name)


def _set(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed `gwsync` command; a process that starts serving times out the test."""
    return subprocess.run([str(BIN / "gwsync"), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)


def _bare_env(**extra: str) -> dict[str, str]:
    """An environment with nothing but PATH and HOME (and `extra`)."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"), **extra}


# -- defaults and the environment ----------------------------------------------------------


def test_defaults_match_the_documented_contract() -> None:
    """With nothing set, the database, Redis and port are the documented defaults (README.md)."""
    settings = Settings()
    assert settings.database_url == "sqlite+aiosqlite:///./gwsync.db"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.port == 8080
    assert settings.google_base_url is None


def test_secrets_default_to_unset() -> None:
    """No secret has a built-in default value."""
    settings = Settings()
    for name in {n for names in REQUIRED.values() for n in names}:
        assert getattr(settings, name) is None, name


def test_variables_are_read_with_the_gwsync_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """`GWSYNC_`-prefixed variables configure the matching settings."""
    _set(monkeypatch, {
        "GWSYNC_DATABASE_URL": "postgresql+asyncpg://db/gw",
        "GWSYNC_REDIS_URL": "redis://cache:6379/3",
        **SECRETS,
    })
    settings = Settings()
    assert settings.database_url == "postgresql+asyncpg://db/gw"
    assert settings.redis_url == "redis://cache:6379/3"
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == SECRETS["GWSYNC_API_TOKEN"]
    assert settings.google_client_id == "client-id-value"


def test_unprefixed_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable without the prefix (e.g. `DATABASE_URL`) does not configure gwsync."""
    _set(monkeypatch, {"DATABASE_URL": "postgresql+asyncpg://elsewhere/db",
                       "API_TOKEN": "not-ours"})
    settings = Settings()
    assert settings.database_url == "sqlite+aiosqlite:///./gwsync.db"
    assert settings.api_token is None


def test_port_comes_from_the_procfile_convention(monkeypatch: pytest.MonkeyPatch) -> None:
    """The web port is read from plain `PORT`, as platforms running a Procfile set it."""
    monkeypatch.setenv("PORT", "9123")
    assert Settings().port == 9123


def test_secrets_are_not_shown_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    """Printing the settings (e.g. in a crash report) does not reveal a secret."""
    _set(monkeypatch, SECRETS)
    shown = repr(Settings()) + str(Settings())
    for name, value in SECRETS.items():
        if name != "GWSYNC_GOOGLE_CLIENT_ID":  # a client id is public by design
            assert value not in shown, name


# -- require() -------------------------------------------------------------------------------


@pytest.mark.parametrize("process", ["web", "worker"])
def test_require_passes_when_every_secret_is_set(
    monkeypatch: pytest.MonkeyPatch, process: str
) -> None:
    """A process whose secrets are all set may start."""
    _set(monkeypatch, SECRETS)
    settings = Settings()
    assert settings.require(process) is settings


@pytest.mark.parametrize(
    ("process", "missing"),
    [(p, f"GWSYNC_{name.upper()}") for p, names in REQUIRED.items() for name in names],
)
def test_require_names_the_missing_variable(
    monkeypatch: pytest.MonkeyPatch, process: str, missing: str
) -> None:
    """Leaving out one secret a process needs raises ConfigError naming that variable."""
    _set(monkeypatch, {k: v for k, v in SECRETS.items() if k != missing})
    with pytest.raises(ConfigError, match=missing):
        Settings().require(process)


def test_web_needs_both_bearer_tokens() -> None:
    """The web process needs the API and admin tokens; the worker does not."""
    assert {"api_token", "admin_token"} <= set(REQUIRED["web"])
    assert not {"api_token", "admin_token"} & set(REQUIRED["worker"])


def test_worker_starts_without_the_web_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker with its own secrets but no API or admin token passes `require`."""
    _set(monkeypatch, {k: v for k, v in SECRETS.items()
                       if k not in ("GWSYNC_API_TOKEN", "GWSYNC_ADMIN_TOKEN")})
    Settings().require("worker")


@pytest.mark.parametrize("variable", ["GWSYNC_API_TOKEN", "GWSYNC_ADMIN_TOKEN"])
@pytest.mark.parametrize("weak", ["api-token-value", "a" * 64, "0123456789" * 3])
def test_a_weak_bearer_token_keeps_the_web_process_from_starting(
    monkeypatch: pytest.MonkeyPatch, variable: str, weak: str
) -> None:
    """A short or low-variety token is refused, naming its variable and how to make one."""
    _set(monkeypatch, {**SECRETS, variable: weak})
    with pytest.raises(ConfigError, match=f"{variable} is too weak.*token_urlsafe"):
        Settings().require("web")


def test_the_admin_token_must_differ_from_the_api_token(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """One token for both would let the app's token open staff routes."""
    _set(monkeypatch, {**SECRETS, "GWSYNC_ADMIN_TOKEN": SECRETS["GWSYNC_API_TOKEN"]})
    with pytest.raises(ConfigError, match="GWSYNC_ADMIN_TOKEN must differ"):
        Settings().require("web")


def test_require_on_empty_settings_fails_for_both_processes() -> None:
    """With no secrets at all, neither process may start."""
    for process in ("web", "worker"):
        with pytest.raises(ConfigError, match="GWSYNC_"):
            Settings().require(process)


# -- the encryption key ----------------------------------------------------------------------


def test_a_32_byte_base64_key_is_the_master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A base64 key of 32 bytes is accepted and decodes to the master key."""
    monkeypatch.setenv("GWSYNC_ENCRYPTION_KEY", KEY)
    assert Settings().master_key == KEY_BYTES


@pytest.mark.parametrize(
    "bad_key",
    [
        "not base64 at all!",
        base64.b64encode(b"\x01" * 16).decode(),
        base64.b64encode(b"\x01" * 31).decode(),
        base64.b64encode(b"\x01" * 33).decode(),
        base64.b64encode(b"\x01" * 64).decode(),
    ],
    ids=["not-base64", "16-bytes", "31-bytes", "33-bytes", "64-bytes"],
)
def test_a_key_that_is_not_32_base64_bytes_is_rejected(
    monkeypatch: pytest.MonkeyPatch, bad_key: str
) -> None:
    """An encryption key that is not base64 or not 32 bytes makes the settings invalid."""
    monkeypatch.setenv("GWSYNC_ENCRYPTION_KEY", bad_key)
    with pytest.raises(ValidationError, match="GWSYNC_ENCRYPTION_KEY"):
        Settings()


def test_master_key_without_a_key_is_a_config_error() -> None:
    """Asking for the master key when none is configured raises ConfigError naming it."""
    with pytest.raises(ConfigError, match="GWSYNC_ENCRYPTION_KEY"):
        _ = Settings().master_key


def test_a_key_list_alone_is_a_ring_whose_first_key_is_primary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GWSYNC_ENCRYPTION_KEYS without GWSYNC_ENCRYPTION_KEY satisfies the worker, and its
    first key is the primary; the single key, when also set, comes last."""
    other = base64.b64encode(b"\x02" * 32).decode()
    monkeypatch.setenv("GWSYNC_ENCRYPTION_KEYS", f"b:{other},a:{KEY}")
    monkeypatch.setenv("GWSYNC_GOOGLE_CLIENT_ID", "id")
    monkeypatch.setenv("GWSYNC_GOOGLE_CLIENT_SECRET", "secret")
    settings = Settings().require("worker")
    assert settings.keyring.key_ids == ("b", "a") and settings.master_key == b"\x02" * 32
    monkeypatch.setenv("GWSYNC_ENCRYPTION_KEYS", f"b:{other}")
    monkeypatch.setenv("GWSYNC_ENCRYPTION_KEY", KEY)
    assert Settings().keyring.key_ids[0] == "b" and len(Settings().keyring.key_ids) == 2


def test_a_malformed_key_list_is_rejected_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry without an id, or with a key that is not 32 base64 bytes, is invalid."""
    for bad in (KEY, "a:short", f"a:{KEY},a:{KEY}"):
        monkeypatch.setenv("GWSYNC_ENCRYPTION_KEYS", bad)
        with pytest.raises(ValidationError, match="GWSYNC_ENCRYPTION_KEYS"):
            Settings()


# -- the Google base URL ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [("http://127.0.0.1:9/", "http://127.0.0.1:9"),
     ("http://127.0.0.1:9", "http://127.0.0.1:9"),
     ("https://google.example//", "https://google.example")],
)
def test_google_base_url_loses_its_trailing_slash(
    monkeypatch: pytest.MonkeyPatch, given: str, expected: str
) -> None:
    """`GWSYNC_GOOGLE_BASE_URL` is stored without trailing slashes."""
    monkeypatch.setenv("GWSYNC_GOOGLE_BASE_URL", given)
    assert Settings().google_base_url == expected


def test_an_empty_google_base_url_means_google(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty `GWSYNC_GOOGLE_BASE_URL` is the same as unset: Google's real hosts."""
    monkeypatch.setenv("GWSYNC_GOOGLE_BASE_URL", "")
    assert Settings().google_base_url is None


# -- the real command ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("process", "first_missing"),
    [("web", "GWSYNC_API_TOKEN"), ("worker", "GWSYNC_ENCRYPTION_KEY")],
)
def test_cli_refuses_to_start_without_secrets(
    tmp_path: Path, process: str, first_missing: str
) -> None:
    """`gwsync web|worker` in an environment without secrets exits non-zero naming one."""
    result = _cli(process, env=_bare_env(), cwd=tmp_path)
    assert result.returncode != 0, result.stdout + result.stderr
    assert first_missing in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("missing", ["GWSYNC_ADMIN_TOKEN", "GWSYNC_GOOGLE_CLIENT_SECRET"])
def test_cli_web_names_the_one_secret_left_out(tmp_path: Path, missing: str) -> None:
    """With every secret but one, `gwsync web` exits non-zero naming exactly that one."""
    env = _bare_env(**{k: v for k, v in SECRETS.items() if k != missing})
    result = _cli("web", env=env, cwd=tmp_path)
    assert result.returncode != 0, result.stdout + result.stderr
    assert missing in result.stderr
    assert not list(tmp_path.iterdir()), "nothing may be created before the check"


def test_cli_rejects_a_bad_key_without_echoing_it(tmp_path: Path) -> None:
    """A wrong-length key stops `gwsync worker` naming the variable, never echoing its value."""
    bad_key = base64.b64encode(b"secret-key-value").decode()
    env = _bare_env(**{**SECRETS, "GWSYNC_ENCRYPTION_KEY": bad_key})
    result = _cli("worker", env=env, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "GWSYNC_ENCRYPTION_KEY" in output
    assert "32 bytes" in output
    assert bad_key not in output
    assert "Traceback" not in output


def test_cli_reports_an_invalid_port_under_the_name_that_was_set(tmp_path: Path) -> None:
    """An unparsable `PORT` is reported as `PORT`, the variable the platform set."""
    result = _cli("web", env=_bare_env(**SECRETS, PORT="eighty"), cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "PORT" in output
    assert "GWSYNC_PORT" not in output


# -- the main app's webhook ------------------------------------------------------------------

WHSEC = "whsec_" + base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize("bad", [
    base64.b64encode(bytes(range(32))).decode(),  # no whsec_ prefix
    "whsec_not base64!",
    "whsec_" + base64.b64encode(b"\x01" * 8).decode(),  # too short to be a secret
    "whsec_",
], ids=["no-prefix", "not-base64", "8-bytes", "empty"])
def test_a_malformed_webhook_secret_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    """A `GWSYNC_APP_WEBHOOK_SECRET` that is not `whsec_` + base64 of 24–64 bytes is refused."""
    monkeypatch.setenv("GWSYNC_APP_WEBHOOK_SECRET", bad)
    with pytest.raises(ValidationError, match="GWSYNC_APP_WEBHOOK_SECRET"):
        Settings()


def test_a_standard_webhooks_secret_enables_the_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A URL and a well-formed secret together turn the webhooks on; neither, off."""
    assert Settings().app_webhooks is False
    _set(monkeypatch, {**SECRETS, "GWSYNC_APP_WEBHOOK_URL": "https://app.example/hooks",
                       "GWSYNC_APP_WEBHOOK_SECRET": WHSEC})
    assert Settings().require("worker").app_webhooks is True


@pytest.mark.parametrize("alone", ["GWSYNC_APP_WEBHOOK_URL", "GWSYNC_APP_WEBHOOK_SECRET"])
def test_a_webhook_url_or_secret_alone_keeps_processes_from_starting(
    monkeypatch: pytest.MonkeyPatch, alone: str
) -> None:
    """One of the pair without the other is a configuration error naming the missing one."""
    values = {"GWSYNC_APP_WEBHOOK_URL": "https://app.example/hooks",
              "GWSYNC_APP_WEBHOOK_SECRET": WHSEC}
    _set(monkeypatch, {**SECRETS, alone: values[alone]})
    missing = next(name for name in values if name != alone)
    for process in ("web", "worker"):
        with pytest.raises(ConfigError, match=missing):
            Settings().require(process)


def test_cli_names_a_malformed_webhook_secret(tmp_path: Path) -> None:
    """`gwsync worker` with a malformed secret exits at once naming the variable, not the value."""
    env = _bare_env(**SECRETS, GWSYNC_APP_WEBHOOK_URL="https://app.example/hooks",
                    GWSYNC_APP_WEBHOOK_SECRET="whsec_tooshort")
    result = _cli("worker", env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert "GWSYNC_APP_WEBHOOK_SECRET" in result.stderr and "tooshort" not in result.stderr
