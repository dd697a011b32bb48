"""A local stand-in for Google's OAuth and API endpoints (tests, demo, benchmarks).

Start it with `app.serve` (in a loop) or `app.run` (blocking); point gwsync at it with
``GWSYNC_GOOGLE_BASE_URL``; drive it through `state.EmulatorState` or the
``/_emulator/`` admin routes. Import each name from the module that defines it.
"""
