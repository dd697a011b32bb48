"""`gwsync keys status` and `gwsync keys rotate`: what each master key still protects,
and moving all of it under the primary (gwsync/storage/rotation.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from gwsync.core.keyring import DecryptionError, Keyring
from gwsync.core.settings import ConfigError, Settings
from gwsync.storage import pseudonyms, rotation
from gwsync.storage.db import SessionFactory, create_engine, session_factory


@asynccontextmanager
async def _opened(settings: Settings) -> AsyncIterator[tuple[SessionFactory, Keyring]]:
    engine = create_engine(settings.database_url)
    try:
        sessions = session_factory(engine)
        try:
            ring = await pseudonyms.load(sessions, settings.keyring)
        except DecryptionError as exc:
            raise ConfigError(f"the ring cannot open the database's keys ({exc}); add the "
                              "missing key to GWSYNC_ENCRYPTION_KEYS") from None
        yield sessions, ring
    finally:
        await engine.dispose()


def usage_table(ring: Keyring, usage: dict[str, dict[str, int]]) -> Table:
    table = Table(title="Master keys and what each still protects")
    for column in ("key", "role", "protects"):
        table.add_column(column)
    for key_id in dict.fromkeys([*ring.key_ids, *usage]):
        role = ("primary" if key_id == ring.primary_id else "in the ring" if key_id in
                ring.key_ids else "before keyrings" if key_id == rotation.LEGACY
                else "MISSING from the ring")
        counts = usage.get(key_id, {})
        what = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()) if n) or "nothing"
        table.add_row(key_id, role, what)
    return table


def retirable(ring: Keyring, usage: dict[str, dict[str, int]]) -> list[str]:
    """The ring's keys, other than the primary, that protect nothing any more."""
    return [k for k in ring.key_ids[1:] if not any(usage.get(k, {}).values())]


async def status(settings: Settings, console: Console) -> None:
    async with _opened(settings) as (sessions, ring):
        usage = await rotation.usage(sessions)
    console.print(usage_table(ring, usage))
    for key_id in retirable(ring, usage):
        console.print(f"key {key_id} protects nothing: it may be removed from the ring")


async def rotate(settings: Settings, console: Console, batch: int) -> bool:
    """Rotate; True when nothing is left under another key (the old one may go)."""
    async with _opened(settings) as (sessions, ring):
        total = await rotation.pending(sessions, ring)
        with Progress(console=console) as bar:
            task = bar.add_task(f"re-wrapping under {ring.primary_id}", total=total)
            report = await rotation.rotate(sessions, ring, batch=batch,
                                           progress=lambda n: bar.advance(task, n))
    console.print(usage_table(ring, report.usage))
    if report.failed:
        console.print(f"[red]{len(report.failed)} rows are under a key the ring lacks; "
                      "add it and run again[/red]")
    for key_id in retirable(ring, report.usage):
        console.print(f"key {key_id} is no longer used: remove it from the ring once every "
                      "process runs without it (consents begun in the last 10 minutes "
                      "were sealed under it)")
    left = {k: c for k, c in report.usage.items() if k != ring.primary_id and any(c.values())}
    return not left and not report.failed
