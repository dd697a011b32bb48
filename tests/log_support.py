"""Reading what the configured loggers wrote."""

from __future__ import annotations

import json
from typing import Any


def json_lines(err: str) -> list[dict[str, Any]]:
    """Each non-blank line of captured stderr, parsed as one JSON log event."""
    return [json.loads(line) for line in err.splitlines() if line.strip()]
