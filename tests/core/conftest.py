"""What the logging specifications share: the session's logging set-up put back after each."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put back exactly the logging set-up the session had (conftest's console config).

    The snapshot keeps the session's stream: re-running `configure()` here would bind the
    test's captured (and soon closed) stderr. Loggers are taken fresh in each test, so
    `cache_logger_on_first_use` cannot carry one test's configuration into another.

    The session's processor list is put back as the same list object, refilled: loggers
    cached earlier hold that object, and `structlog.testing.capture_logs` swaps the
    capture in and out of it in place — a new list would leave those loggers deaf to it.
    """
    saved = structlog.get_config()
    chain = saved["processors"]
    items = list(chain)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    access = logging.getLogger("aiohttp.access")
    access_disabled = access.disabled
    yield
    chain[:] = items
    structlog.configure(**{**saved, "processors": chain})
    root.handlers[:] = handlers
    root.setLevel(level)
    access.disabled = access_disabled
