"""Logging: structlog, JSON in production, readable in the demo, always redacted.

All global logging state lives here and is set by one `configure()`. The redaction
step runs last before rendering, so no processor added later can leak past it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"

#: Keys whose values are secrets, personal data or record contents, whatever they hold.
SENSITIVE_KEYS = frozenset({
    "token", "access_token", "refresh_token", "id_token", "code", "code_verifier", "state",
    "authorization", "password", "secret", "client_secret", "api_token", "admin_token",
    "encryption_key", "email", "email_address", "emailaddress", "emails", "name", "names",
    "phone", "phones", "content", "contents", "body", "subject", "summary", "snippet",
    "user_id", "justification", "headers",
})

#: Strings are cut to this many characters before any pattern runs: the patterns stay
#: linear, and a hostile value cannot make logging slow.
MAX_STRING = 2_000
_CUT = "…[cut]"
#: Anything around an @ that is not space or a delimiter: addresses with non-ASCII or
#: dotless domains (``root@localhost``) included, at the cost of some false positives.
_EMAIL = re.compile(r"[^\s@<>()\[\]\"',;:]+@[^\s@<>()\[\]\"',;:]+")
#: Google's secret shapes: OAuth codes ``4/0…``, access tokens ``ya29.…``, refresh tokens
#: ``1//…``, client secrets ``GOCSPX-…``, JWTs (id tokens, security events), bearer headers.
_TOKEN = re.compile(
    r"(4/0[\w-]+|ya29\.[\w.-]+|1//[\w.-]+|GOCSPX-[\w-]+"
    r"|eyJ[\w-]*\.[\w-]+\.[\w-]*|(?i:bearer)\s+[\w.~+/-]+=*)")


class Redact:
    """Drop sensitive keys and scrub emails and tokens from every string value."""

    def __init__(self, keys: Iterable[str] = SENSITIVE_KEYS) -> None:
        self._keys = frozenset(k.lower() for k in keys)

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event_dict):
            if key.lower() in self._keys:
                event_dict[key] = REDACTED
            else:
                event_dict[key] = self._scrub(event_dict[key])
        return event_dict

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            if len(value) > MAX_STRING:
                value = value[:MAX_STRING] + _CUT
            return _TOKEN.sub(REDACTED, _EMAIL.sub(REDACTED, value))
        if isinstance(value, dict):
            return {k: REDACTED if str(k).lower() in self._keys else self._scrub(v)
                    for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._scrub(v) for v in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        return self._scrub(str(value))  # exceptions and other objects render as text


def processors(fmt: str) -> list[Any]:
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        Redact(),
        renderer,
    ]


def drop_request_text(record: logging.LogRecord) -> bool:
    """aiohttp's server logs a request it could not parse with the exception, whose text
    quotes the raw request line (query strings: OAuth codes, states, user ids). Keep the
    event and the exception's type, drop its text."""
    if record.exc_info and record.exc_info[0] is not None:
        record.msg = f"{record.getMessage()} ({record.exc_info[0].__name__})"
        record.args = ()
        record.exc_info = None
        record.exc_text = None
    return True


def configure(fmt: str = "json", level: str = "INFO") -> None:
    """Configure structlog and route the stdlib's loggers (aiohttp, arq) through redaction."""
    chain = processors(fmt)
    structlog.configure(
        processors=chain,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *chain[1:]],
        foreign_pre_chain=[structlog.processors.add_log_level],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The access log would print query strings (OAuth codes, states): we log requests ourselves.
    logging.getLogger("aiohttp.access").disabled = True
    server = logging.getLogger("aiohttp.server")
    if drop_request_text not in server.filters:
        server.addFilter(drop_request_text)


def get(name: str) -> Any:
    return structlog.get_logger(name)
