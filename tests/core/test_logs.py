"""Logging: ids and counts go out, tokens, email addresses and contents never do."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from gwsync.core import logs as gwlogs
from gwsync.core.logs import REDACTED, SENSITIVE_KEYS, Redact
from tests.log_support import json_lines

EMAIL = "ada.lovelace+gw@example.co.uk"
ACCESS = "ya29.a0AfH6SMBx-3Kq_Zr9.T0kEn"
REFRESH = "1//0gLq-Rf_93xYz.Abc"
BEARER = "Bearer eyJhbGciOi.J9-x_y~z+/w=="
PLANTED = (EMAIL, ACCESS, REFRESH, "eyJhbGciOi", "a0AfH6SMBx", "0gLq-Rf_93xYz")


def redact(**event: Any) -> dict[str, Any]:
    return dict(Redact()(None, "info", dict(event)))


def leaks(text: str) -> list[str]:
    return [secret for secret in PLANTED if secret in text]


# -- the redaction processor -----------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["token", "access_token", "refresh_token", "authorization", "Authorization", "email",
     "emails", "content", "name", "phones", "body", "subject", "snippet", "code", "state",
     "client_secret", "headers"],
)
def test_values_of_sensitive_keys_are_dropped(key: str) -> None:
    """Whatever a sensitive key holds — text, a number, a structure — becomes `[redacted]`."""
    for value in ("plain words", 12345, {"nested": "x"}, ["a", "b"]):
        assert redact(**{key: value})[key] == REDACTED


def test_the_documented_sensitive_keys_are_covered() -> None:
    """Tokens, emails, names, phones, contents and the authorization header are all listed."""
    assert {"token", "refresh_token", "access_token", "email", "content", "name", "phones",
            "authorization"} <= SENSITIVE_KEYS


def test_ids_and_counts_pass_through_untouched() -> None:
    """Non-sensitive values with no email or token in them are logged as they are."""
    event = {"event": "sync_done", "account_id": 42, "feature": "contacts", "count": 7,
             "duration_s": 1.5, "ok": True, "cursor": None}
    assert redact(**event) == event


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"sent to {EMAIL} today", f"sent to {REDACTED} today"),
        (f"minted {ACCESS} ok", f"minted {REDACTED} ok"),
        (f"refresh with {REFRESH}", f"refresh with {REDACTED}"),
        (f"header {BEARER}", f"header {REDACTED}"),
    ],
    ids=["email", "access-token", "refresh-token", "bearer"],
)
def test_emails_and_token_shapes_are_scrubbed_from_strings(text: str, expected: str) -> None:
    """An email or a Google token inside any string value is replaced, the rest kept."""
    assert redact(note=text)["note"] == expected


def test_the_event_message_itself_is_scrubbed() -> None:
    """The log message (structlog's `event`) is scrubbed like any other value."""
    out = redact(event=f"refreshing {REFRESH} for {EMAIL}")
    assert leaks(out["event"]) == []
    assert out["event"].startswith("refreshing ")


def test_scrubbing_reaches_into_dicts_and_lists() -> None:
    """Sensitive keys and token/email shapes are found at any depth of dicts, lists, tuples."""
    out = redact(
        request={"Authorization": BEARER, "route": "/v1/accounts",
                 "params": {"email": "anything", "hint": f"for {EMAIL}"}},
        batch=[ACCESS, {"refresh_token": "opaque", "id": 3}, ("ok", f"x {REFRESH}")],
    )
    request, batch = out["request"], out["batch"]
    assert request["Authorization"] == REDACTED
    assert request["route"] == "/v1/accounts"
    assert request["params"]["email"] == REDACTED
    assert request["params"]["hint"] == f"for {REDACTED}"
    assert batch[0] == REDACTED
    assert batch[1] == {"refresh_token": REDACTED, "id": 3}
    assert list(batch[2]) == ["ok", f"x {REDACTED}"]
    assert leaks(repr(out)) == []


def test_redaction_sees_bound_context() -> None:
    """Values bound earlier on a logger reach the processor and are redacted with the rest."""
    with capture_logs(processors=[Redact()]) as logs:
        structlog.get_logger("test").bind(refresh_token=REFRESH, account_id=9).info(
            "refreshed", note=f"for {EMAIL}")
    assert logs == [{"event": "refreshed", "log_level": "info", "refresh_token": REDACTED,
                     "account_id": 9, "note": f"for {REDACTED}"}]


@pytest.mark.parametrize("value", [ValueError(f"no contact {EMAIL}"), {ACCESS}],
                         ids=["exception-object", "set"])
def test_values_rendered_as_text_are_scrubbed_too(
    restore_logging: None, capsys: pytest.CaptureFixture[str], value: object
) -> None:
    """A value logged as an object still never shows an email or a token in the output."""
    gwlogs.configure("json", "INFO")
    structlog.get_logger("test").warning("lookup_failed", error=value)
    err = capsys.readouterr().err
    assert json_lines(err)[0]["event"] == "lookup_failed"
    assert leaks(err) == []


# -- the configured output ---------------------------------------------------------------------


def test_json_output_carries_no_planted_secret(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Structlog events rendered as JSON lines keep ids and lose emails and tokens."""
    gwlogs.configure("json", "INFO")
    log = structlog.get_logger("gwsync.test")
    log.info("token_refreshed", account_id=17, token=ACCESS, note=f"grant {REFRESH}")
    log.info(f"contact {EMAIL} synced", count=3, content={"name": "Ada", "emails": [EMAIL]})
    log.warning("request", headers={"Authorization": BEARER}, route="/v1/accounts/17")
    err = capsys.readouterr().err
    lines = json_lines(err)
    assert [line["event"] for line in lines[::2]] == ["token_refreshed", "request"]
    assert lines[0]["account_id"] == 17 and lines[1]["count"] == 3
    assert lines[2]["route"] == "/v1/accounts/17"
    assert leaks(err) == []


def test_json_output_redacts_exception_tracebacks(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """An exception whose message holds an email or token is logged with it scrubbed."""
    gwlogs.configure("json", "INFO")
    try:
        raise RuntimeError(f"refresh failed for {EMAIL} with {REFRESH}")
    except RuntimeError:
        structlog.get_logger("gwsync.test").exception("refresh_failed", account_id=5)
    err = capsys.readouterr().err
    (line,) = json_lines(err)
    assert "RuntimeError" in line["exception"]
    assert line["account_id"] == 5
    assert leaks(err) == []


def test_stdlib_loggers_are_redacted(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Libraries logging through the stdlib (arq, aiohttp) pass through the same redaction."""
    gwlogs.configure("json", "INFO")
    logging.getLogger("arq.worker").info("job for %s", EMAIL)
    logging.getLogger("aiohttp.client").warning("retrying with %s", BEARER)
    try:
        raise ValueError(f"bad grant {REFRESH}")
    except ValueError:
        logging.getLogger("arq.jobs").exception("job %s failed", "sync:42")
    err = capsys.readouterr().err
    lines = json_lines(err)
    assert [line["event"] for line in lines] == [
        f"job for {REDACTED}", f"retrying with {REDACTED}", "job sync:42 failed"]
    assert [line["level"] for line in lines] == ["info", "warning", "error"]
    assert "ValueError" in lines[2]["exception"]
    assert leaks(err) == []


def test_console_output_is_redacted_as_well(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo's readable format scrubs exactly like the JSON one."""
    gwlogs.configure("console", "INFO")
    structlog.get_logger("gwsync.test").info("connected", account_id=8, email=EMAIL,
                                            note=f"with {ACCESS}")
    logging.getLogger("arq.worker").info("job for %s", EMAIL)
    err = capsys.readouterr().err
    assert "connected" in err and "job for" in err
    assert leaks(err) == []


def test_the_level_filters_structlog_and_stdlib(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Below the configured level nothing is written, from either logging system."""
    gwlogs.configure("json", "WARNING")
    structlog.get_logger("gwsync.test").info("quiet_structlog")
    logging.getLogger("arq.worker").info("quiet_stdlib")
    structlog.get_logger("gwsync.test").warning("loud_structlog")
    logging.getLogger("arq.worker").warning("loud_stdlib")
    events = [line["event"] for line in json_lines(capsys.readouterr().err)]
    assert events == ["loud_structlog", "loud_stdlib"]


def test_the_aiohttp_access_log_is_switched_off(restore_logging: None) -> None:
    """aiohttp's access log, which would print OAuth codes in query strings, is disabled."""
    logging.getLogger("aiohttp.access").disabled = False
    gwlogs.configure("json", "INFO")
    assert logging.getLogger("aiohttp.access").disabled


def test_configure_installs_a_single_root_handler(restore_logging: None) -> None:
    """Configuring twice leaves one root handler, so no line is written twice."""
    gwlogs.configure("json", "INFO")
    gwlogs.configure("console", "INFO")
    assert len(logging.getLogger().handlers) == 1
