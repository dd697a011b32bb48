"""`gwsync restore-check`: after restoring the main database from a backup, re-apply every
erasure it missed from the erasure ledger, print what was done, and fail if anything
erased is still readable (gwsync/storage/restore.py; README, "Where the data keys live")."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from gwsync.core.settings import ConfigError, Settings
from gwsync.storage import pseudonyms, restore
from gwsync.storage.db import create_engine, session_factory
from gwsync.storage.ledger import Ledger


async def check(settings: Settings, console: Console, *, apply: bool) -> bool:
    """True when every erasure in the ledger holds in the database."""
    if not settings.erasure_ledger_url:
        raise ConfigError("GWSYNC_ERASURE_LEDGER_URL is not set: without the ledger no "
                          "restore can be checked")
    engine = create_engine(settings.database_url)
    ledger = await Ledger.open(settings.erasure_ledger_url)
    try:
        sessions = session_factory(engine)
        ring = await pseudonyms.load(sessions, settings.keyring)
        outcomes = await restore.run(sessions, ring, ledger, apply=apply)
    finally:
        await ledger.close()
        await engine.dispose()
    console.print(_table(outcomes))
    bad = [o for o in outcomes if any(o.readable.values())]
    for o in bad:
        console.print(f"[red]erasure {o.erasure_id}: still readable: {o.readable}[/red]")
    replayed = sum(o.action == "replayed" for o in outcomes)
    console.print(f"{len(outcomes)} erasures in the ledger, {replayed} re-applied, "
                  f"{len(bad)} still readable")
    return not bad


def _table(outcomes: list[restore.Outcome]) -> Table:
    table = Table(title="Erasures of the ledger against the restored database")
    for column in ("erasure", "scope", "action", "done", "still readable"):
        table.add_column(column)
    for o in outcomes:
        done = ", ".join(f"{n} {k}" for k, n in o.counts.items() if n) or "-"
        left = ", ".join(f"{n} {k}" for k, n in o.readable.items() if n) or "nothing"
        table.add_row(o.erasure_id, o.scope, o.action, done, left)
    return table
