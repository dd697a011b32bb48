"""A local stand-in for Google's OAuth and API endpoints (tests, demo, benchmarks).

Start it with :func:`serve` (in a loop) or :func:`run` (blocking); point gwsync at it
with ``GWSYNC_GOOGLE_BASE_URL``; drive it through :class:`EmulatorState` or the
``/_emulator/`` admin routes.
"""

from gwsync.emulator.app import base_url, create_app, run, serve, state_of
from gwsync.emulator.seed import DEMO_SCOPES, fake_contact, seed_demo_user
from gwsync.emulator.state import STATE_KEY, EmulatorState, IssuedGrant

__all__ = [
    "DEMO_SCOPES",
    "STATE_KEY",
    "EmulatorState",
    "IssuedGrant",
    "base_url",
    "create_app",
    "fake_contact",
    "run",
    "seed_demo_user",
    "serve",
    "state_of",
]
