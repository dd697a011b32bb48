"""The README documents exactly the configuration the code reads."""

from __future__ import annotations

import re
from pathlib import Path

from gwsync.worker.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_configuration_table_matches_settings() -> None:
    """Every setting has a row in the README's table, and every row is a real setting."""
    rows = re.findall(r"^\| `(?:PORT` \(or `)?GWSYNC_([A-Z0-9_]+)`", README.read_text(),
                      re.MULTILINE)
    assert sorted(r.lower() for r in rows) == sorted(Settings.model_fields)


def test_readme_shows_the_commands_ci_runs() -> None:
    """The test command in .ci/run is the one the README gives."""
    ci = (README.parent / ".ci" / "run").read_text()
    assert "./bin/test" in ci and "./bin/test" in README.read_text()
