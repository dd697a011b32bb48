"""`gwsync scopes`: the computed least-privilege table, straight from the declarations."""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.table import Table

from gwsync.domain import scopes
from gwsync.domain.features import FEATURES


def short(scope: str) -> str:
    return scope.removeprefix(scopes.AUTH)


def render(out: TextIO) -> None:
    table = Table(title="Features and their narrowest scopes")
    for column in ("feature", "methods", "scope", "class", "broader scopes avoided"):
        table.add_column(column)
    for feature in FEATURES.values():
        found = scopes.candidates(feature.methods, feature.params, feature.accepts_limited)
        table.add_row(
            feature.name, "\n".join(feature.methods), short(feature.scope),
            feature.scope_info.klass.label,
            ", ".join(short(c.scope) for c in found[1:]) or "-",
        )
    Console(file=out, width=160).print(table)
