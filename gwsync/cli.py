"""The `gwsync` command: run the processes, migrate, inspect scopes, run the demo."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click
from pydantic import ValidationError

from gwsync.core.settings import ConfigError, Settings


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{_variable(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise click.ClickException(f"invalid configuration: {problems}") from None


def _variable(loc: tuple[object, ...]) -> str:
    """The environment variable an operator set, for a settings field's error location."""
    name = "_".join(map(str, loc)).upper()
    return name if name == "PORT" else f"GWSYNC_{name}"


def _guard(run: object) -> None:
    try:
        run()  # type: ignore[operator]
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def main() -> None:
    """gwsync: Google Workspace sync with least privilege, Limited Use and real deletion."""


@main.command()
def web() -> None:
    """Run the web process (intake API, health, metrics) on $PORT."""
    from gwsync.web import app as web_process

    settings = _settings()
    _guard(lambda: web_process.run(settings))


@main.command()
@click.option("--check", is_flag=True,
              help="Liveness probe: exit 0 when Redis answers and the queue's health-check "
                   "key is fresh, 1 with the reason otherwise.")
def worker(check: bool) -> None:
    """Run an arq worker process (SIGTERM: running jobs get GWSYNC_WORKER_STOP_GRACE_S)."""
    settings = _settings()
    if check:
        import asyncio

        from gwsync.worker import liveness

        problem = asyncio.run(liveness.check(settings))
        if problem is not None:
            raise click.ClickException(f"worker not live: {problem}")
        click.echo("worker live")
        return
    from gwsync.worker import app

    _guard(lambda: app.run(settings))


@main.command()
def migrate() -> None:
    """Bring the database at $GWSYNC_DATABASE_URL to the latest schema."""
    from gwsync.storage.db import upgrade

    upgrade(_settings().database_url)
    click.echo("database is at the latest migration")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@click.option("--seed-contacts", default=0, show_default=True, type=int,
              help="Seed a demo user with this many contacts.")
def emulator(host: str, port: int, seed_contacts: int) -> None:
    """Run the local Google emulator (OAuth and People) on HOST:PORT."""
    from gwsync.emulator.app import run

    run(host, port, seed_contacts=seed_contacts)


@main.command()
@click.argument("account_id")
@click.option("--use", required=True,
              type=click.Choice(["security", "legal", "user_consented_support",
                                 "aggregate_ops"]),
              help="Google's exception the read falls under.")
@click.option("--justification", required=True, help="Why, in writing (kept in the log).")
@click.option("--operator", required=True, help="Who is reading (kept in the log).")
@click.option("--feature", default=None)
@click.option("--limit", default=20, show_default=True, type=int)
def access(account_id: str, use: str, justification: str, operator: str,
           feature: str | None, limit: int) -> None:
    """Read one account's records as staff, under Google's exceptions; every read is logged."""
    import asyncio

    from pydantic import ValidationError as BodyError
    from rich.console import Console

    from gwsync.domain.purpose import LimitedUseViolation
    from gwsync.storage.accounts import UnknownAccountError
    from gwsync.web.staff import StaffRead, read_from_cli, render

    settings = _settings()
    try:
        body = StaffRead(use=use, justification=justification, operator=operator,
                         feature=feature, limit=limit)
        result = asyncio.run(read_from_cli(settings.require("worker"), account_id, body))
    except BodyError as exc:
        raise click.ClickException(f"invalid request: {exc.errors()[0]['msg']}") from None
    except (ConfigError, LimitedUseViolation) as exc:
        raise click.ClickException(str(exc)) from None
    except UnknownAccountError:
        raise click.ClickException("no account has this id") from None
    Console().print(render(result))


@main.group()
def keys() -> None:
    """Master keys: what each protects, and rotation to the primary."""


@keys.command("status")
def keys_status() -> None:
    """Show what each master key of the ring (and any key missing from it) still wraps."""
    import asyncio

    from rich.console import Console

    from gwsync.devtools import keys as keytool

    settings = _settings()
    _guard(lambda: asyncio.run(keytool.status(settings, Console())))


@keys.command("rotate")
@click.option("--batch", default=200, show_default=True, type=click.IntRange(1, 10_000),
              help="Rows re-wrapped per transaction.")
def keys_rotate(batch: int) -> None:
    """Re-wrap every data key and re-seal every sealed grant under the primary (the first of
    GWSYNC_ENCRYPTION_KEYS), online and resumable; exit 1 if an old key is still used."""
    import asyncio

    from rich.console import Console

    from gwsync.devtools import keys as keytool

    settings = _settings()
    done: list[bool] = []
    _guard(lambda: done.append(asyncio.run(keytool.rotate(settings, Console(), batch))))
    if not done[0]:
        sys.exit(1)


@main.group()
def webhooks() -> None:
    """The main app's webhooks: send given-up ones again."""


@webhooks.command("redeliver")
@click.option("--since", type=click.DateTime(["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S%z",
                                              "%Y-%m-%d"]),
              help="Events written since this time (RFC 3339 UTC, or a date).")
@click.option("--id", "ids", multiple=True, help="An event's webhook-id (msg_…); repeatable.")
def webhooks_redeliver(since: datetime | None, ids: tuple[str, ...]) -> None:
    """Queue given-up webhooks again (with a fresh retry budget and their webhook-id); the
    worker sends them. Exit 1 if some chosen event is too old to be sent (no body)."""
    import asyncio

    from gwsync.devtools import webhooks as tool
    from gwsync.storage.outbox import Redelivered

    if since is None and not ids:
        raise click.UsageError("choose events: --since TIME, --id MSG_ID, or both")
    when = since.replace(tzinfo=UTC) if since and since.tzinfo is None else since
    settings = _settings()
    done: list[Redelivered] = []
    _guard(lambda: done.append(asyncio.run(tool.redeliver(settings, ids or None, when))))
    click.echo(f"queued {done[0].queued} given-up webhook(s) for delivery"
               + (f"; {done[0].expired} too old to send (body dropped)" if done[0].expired
                  else ""))
    if done[0].expired:
        sys.exit(1)


@main.command("restore-check")
@click.option("--dry-run", is_flag=True, help="Only report what is still readable.")
def restore_check(dry_run: bool) -> None:
    """After restoring the database: re-apply every erasure of the ledger it missed, print
    what was done, exit 1 if anything erased is still readable."""
    import asyncio

    from rich.console import Console

    from gwsync.devtools import restore_check as tool

    settings = _settings()
    done: list[bool] = []
    _guard(lambda: done.append(asyncio.run(tool.check(settings, Console(width=160),
                                                      apply=not dry_run))))
    if not done[0]:
        sys.exit(1)


@main.command()
def compliance() -> None:
    """Print each feature's scope, class, fields, retention, and each Limited Use clause
    with the code that enforces it and the test that proves it."""
    from gwsync.devtools.compliance import render

    render(sys.stdout)


@main.command()
def scopes() -> None:
    """Print each feature's methods, computed scope, class, and the broader scopes avoided."""
    from gwsync.devtools.scopes_report import render

    render(sys.stdout)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as JSON.")
def status(as_json: bool) -> None:
    """Print the ops picture: queue, failures, behind-schedule syncs, erasures, refusals,
    app webhooks pending and given up."""
    import asyncio

    from rich.console import Console

    from gwsync.devtools import status as ops_status

    try:
        snap = asyncio.run(ops_status.collect(_settings()))
    except ops_status.StatusUnavailableError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        ops_status.as_json(snap, sys.stdout)
    else:
        ops_status.render(snap, Console())


@main.command()
@click.option("--contacts", default=240, show_default=True, type=int)
@click.option("--events", default=40, show_default=True, type=int, help="Calendar events.")
@click.option("--files", default=30, show_default=True, type=int,
              help="Drive files opened with the app.")
@click.option("--messages", default=300, show_default=True, type=int, help="Gmail messages.")
def demo(contacts: int, events: int, files: int, messages: int) -> None:
    """Run the whole flow on SQLite and Redis against the emulator, and print the receipt."""
    from gwsync.devtools.demo import main as run_demo

    sys.exit(run_demo(contacts, events, files, messages))
