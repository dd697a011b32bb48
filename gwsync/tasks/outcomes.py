"""What a job may conclude besides success or failure: that it has nothing to do now.

The sync and watch jobs both check, before calling Google, that the account and feature
still call for the work; either one answers ``{"outcome": "skipped", "reason": ...}``.
"""

from __future__ import annotations


class Skip(Exception):
    """The run has nothing to do now (account gone or erased, feature not granted, not
    synced yet, or already watched); the message is the reason logged and returned."""
