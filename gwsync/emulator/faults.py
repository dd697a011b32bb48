"""Injected failures: the next requests under a path prefix fail, or answer late.

The `faults` middleware in `app` consumes them before a request reaches its route, so
any endpoint (OAuth or API) can be made to time out or answer 5xx for a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Fault:
    """An injected failure: the next ``remaining`` requests under ``path_prefix`` misbehave."""

    path_prefix: str
    status: int
    remaining: int
    delay_ms: int = 0
    #: Matching requests still let through untouched before the fault starts (e.g. so
    #: the second page of a listing fails, not the first).
    after: int = 0

    def as_json(self) -> dict[str, Any]:
        """Shown by the admin route."""
        return {
            "path_prefix": self.path_prefix,
            "status": self.status,
            "count": self.remaining,
            "delay_ms": self.delay_ms,
            "after": self.after,
        }


class FaultPlan:
    """The pending faults, first match wins."""

    def __init__(self) -> None:
        self.pending: list[Fault] = []

    def add(self, path_prefix: str, status: int, count: int = 1, delay_ms: int = 0,
            after: int = 0) -> Fault:
        """Make ``count`` requests under ``path_prefix`` fail with ``status``, once
        ``after`` of them have passed.

        ``status=0`` means no failure, only ``delay_ms`` of latency.
        """
        if (count < 1 or delay_ms < 0 or after < 0
                or not (status == 0 or 400 <= status <= 599)):
            raise ValueError("count >= 1, delay_ms >= 0, after >= 0, status 0 or 400-599")
        fault = Fault(path_prefix, status, count, delay_ms, after)
        self.pending.append(fault)
        return fault

    def clear(self) -> None:
        """Drop every pending fault."""
        self.pending.clear()

    def take(self, path: str) -> Fault | None:
        """Consume one use of the first pending fault matching ``path``."""
        for fault in self.pending:
            if path.startswith(fault.path_prefix):
                if fault.after:
                    fault.after -= 1
                    return None
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.pending.remove(fault)
                return fault
        return None
