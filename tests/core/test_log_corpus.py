"""A corpus of real secret shapes never survives any log path: not a field, not free text,
not a traceback, not a long string built to make the patterns slow."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
import structlog

from gwsync.core import logs as gwlogs
from gwsync.core.logs import MAX_STRING, Redact
from tests.log_support import json_lines

#: One of each shape Google and OAuth hand out, and addresses simple patterns miss.
CORPUS = {
    "oauth_code": "4/0AVG7fiQy2xW-b8qQk_3ZLm9Xv1sT5rN",
    "access_token": "ya29.a0AcM612xFq-9Zt_Lm3.Pq8",
    "refresh_token": "1//09gZrTq8_LxYw-Ab7cDeFgHiJ",
    "client_secret": "GOCSPX-1a2B3c4D5e6F7g8H9i0J_kL",
    "jwt": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMDk4In0.c2lnbmF0dXJlX2J5dGVz",
    "email_unicode": "zoë.müller@bücher.example",
    "email_dotless": "root@localhost",
    "email_idn_tld": "ana@empresa.xn--p1ai",
}


def _leaks(text: str) -> list[str]:
    return [name for name, secret in CORPUS.items() if secret in text]


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_secret_shape_is_scrubbed_from_free_text(name: str) -> None:
    """Each shape, inside a sentence, leaves only the redaction mark."""
    event = Redact()(None, "info", {"event": f"failed with {CORPUS[name]} (retrying)"})
    assert _leaks(str(event)) == []


def test_long_strings_are_capped_before_any_pattern_runs() -> None:
    """A huge value is cut to MAX_STRING first, so redaction stays linear and fast."""
    hostile = "a" * 200_000 + "@" + "b." * 100_000
    started = time.perf_counter()
    event = Redact()(None, "info", {"event": "x", "detail": hostile, "plain": "x" * 200_000})
    assert time.perf_counter() - started < 0.5
    assert MAX_STRING <= len(event["plain"]) <= MAX_STRING + 20  # cut, not redacted away
    assert len(event["detail"]) <= MAX_STRING + 20


def test_a_secret_just_past_the_cap_is_not_cut_in_half_and_leaked() -> None:
    """The cut happens before scrubbing, so a secret straddling it is dropped, not shown."""
    value = "x" * (MAX_STRING - 10) + CORPUS["refresh_token"]
    event = Redact()(None, "info", {"event": "x", "detail": value})
    assert "1//09gZrT" not in event["detail"]


def _every_path(log: Any) -> None:
    """Sync failure, API error, webhook refusal and a crash, each carrying the corpus."""
    text = " ".join(CORPUS.values())
    log.warning("sync_failed", account_id="a1", feature="mail_activity", error=text)
    log.info("request", route="/v1/accounts", status=400, detail=text)
    log.warning("risc_refused", err="invalid_request", description=text)
    try:
        raise RuntimeError(f"Google said: {text}")
    except RuntimeError:
        log.exception("request_failed", route="/v1/oauth/callback")


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("fmt", ["json", "console"])
def test_no_log_path_lets_the_corpus_through(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Configured as in production (and as in the demo), no line carries any secret."""
    gwlogs.configure(fmt, "INFO")
    _every_path(structlog.get_logger("gwsync.test"))
    err = capsys.readouterr().err
    assert err.count("\n") >= 4
    assert _leaks(err) == []
    if fmt == "json":
        assert {line["event"] for line in json_lines(err)} >= {"sync_failed", "request_failed"}


@pytest.mark.usefixtures("restore_logging")
def test_a_request_aiohttp_cannot_parse_is_logged_without_its_text(
    capsys: pytest.CaptureFixture[str]
) -> None:
    """aiohttp's server quotes the raw request line in its exception: only the exception's
    type reaches the log, never the line (which may hold a query string of any shape)."""
    gwlogs.configure("json", "INFO")
    line = "GET /v1/oauth/callback?state=plain-state-no-pattern-matches&user_id=u-7781"
    try:
        raise ValueError(f"Bad status line {line!r}")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request")
    err = capsys.readouterr().err
    [event] = json_lines(err)
    assert event["event"] == "Error handling request (ValueError)"
    assert "plain-state" not in err and "u-7781" not in err
