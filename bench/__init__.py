"""gwsync's benchmark suite: real processes against the emulator (run ``./bin/bench``)."""
