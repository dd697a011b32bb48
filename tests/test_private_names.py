"""No module imports another module's private (`_name`) names: a module's public names are
its contract, and everything else may change without notice."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = ("gwsync", "tests", "bench")


def _private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] in OURS:
            found += [f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{a.name}"
                      for a in node.names if a.name.startswith("_")]
    return found


def test_no_module_imports_a_private_name_of_ours() -> None:
    """`from gwsync.x import _y` (or from tests, bench) appears nowhere in the tree."""
    files = [p for top in OURS for p in (ROOT / top).rglob("*.py")]
    assert len(files) > 100  # the scan really covers the tree
    offenders = [hit for path in files for hit in _private_imports(path)]
    assert offenders == []


def test_the_scan_sees_a_private_import() -> None:
    """The check is not vacuous: a planted private import is reported."""
    planted = ROOT / "tests" / "_planted_private_import_probe.py"
    planted.write_text("from gwsync.connectors.gmail import _clone_http\n")
    try:
        assert _private_imports(planted) == [
            "tests/_planted_private_import_probe.py:1 gwsync.connectors.gmail._clone_http"]
    finally:
        planted.unlink()
