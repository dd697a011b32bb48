"""`gwsync compliance`: the verification packet, printed from the code's own declarations.

Features (scope, class, the sentence users see, fields, retention) come from
`domain/features.py`; Limited Use clauses from `storage/clauses.py`. Nothing here is
hand-kept: change the code and the report changes with it.
"""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.table import Table

from gwsync.devtools.scopes_report import short
from gwsync.domain.features import FEATURES
from gwsync.storage.clauses import CLAUSES

ENCRYPTION = ("AES-256-GCM, per-feature data key wrapped by the master keyring; shredded on "
              "erasure and again by restore-check after a restore")


def features_table() -> Table:
    table = Table(title="Features, scopes and stored data", show_lines=True)
    for column in ("feature", "scope", "class", "what the user sees", "fields stored",
                   "retention", "encryption"):
        table.add_column(column)
    for f in FEATURES.values():
        fields = "\n".join(f"{kind}: {', '.join(names)}" for kind, names in f.fields.items())
        days = f.retention.days
        table.add_row(f.name, short(f.scope), f.scope_info.klass.label, f.sentence,
                      fields, f"{days} day{'s' if days != 1 else ''}", ENCRYPTION)
    return table


def clauses_table() -> Table:
    table = Table(title="Limited Use: where each rule is enforced and proven", show_lines=True)
    for column in ("rule", "enforced by", "proven by"):
        table.add_column(column)
    for clause in CLAUSES:
        table.add_row(clause.rule, clause.enforced_by, "\n".join(clause.proven_by))
    return table


def render(out: TextIO) -> None:
    console = Console(file=out, width=200)
    console.print(features_table())
    console.print(clauses_table())
