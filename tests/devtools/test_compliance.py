"""The compliance report is generated from the code and cannot point at code that is gone."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from gwsync.domain.features import FEATURES
from gwsync.storage.clauses import CLAUSES

ROOT = Path(__file__).resolve().parents[2]


def _resolve(dotted: str) -> object:
    module, _, rest = dotted.partition(".")
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise LookupError(module + rest)


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test")}


@pytest.mark.parametrize("clause", CLAUSES, ids=lambda c: c.rule[:40])
def test_every_clause_names_real_code_and_real_tests(clause: object) -> None:
    """Each clause's enforcement point imports and each of its proofs is a test that exists."""
    assert callable(_resolve(clause.enforced_by))  # type: ignore[attr-defined]
    for node in clause.proven_by:  # type: ignore[attr-defined]
        path, _, name = node.partition("::")
        assert name in _test_names(ROOT / path), node


def test_the_command_prints_every_feature_and_clause() -> None:
    """`gwsync compliance` lists each feature with its scope, and each clause."""
    out = subprocess.run([str(Path(sys.executable).with_name("gwsync")), "compliance"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    for feature in FEATURES.values():
        assert feature.name in out and feature.scope.rsplit("/", 1)[-1] in out
    for clause in CLAUSES:
        assert clause.rule.split()[0] in out
    assert "AES-256-GCM" in out
