"""How `gwsync demo` fails: a step that did not work (exit 1), or no Redis to run on (exit 2).

The two are told apart because the user's next move differs: read the logs, or install
Redis. Every failed step, whichever part of the demo notices it, is a :class:`DemoError`.
"""

from __future__ import annotations


class DemoError(Exception):
    """A step failed; the message is the one-line reason shown to the user."""


class RedisUnavailableError(Exception):
    """No Redis answers and none can be started: the user must install one (exit 2)."""
