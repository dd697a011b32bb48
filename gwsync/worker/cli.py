"""The `gwsync` command: run the processes, migrate, inspect scopes, run the demo."""

from __future__ import annotations

import sys

import click
from pydantic import ValidationError

from gwsync.worker.settings import ConfigError, Settings


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
    from gwsync.worker import web as web_process

    settings = _settings()
    _guard(lambda: web_process.run(settings))


@main.command()
def worker() -> None:
    """Run an arq worker process."""
    from gwsync.worker import app

    settings = _settings()
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
def scopes() -> None:
    """Print each feature's methods, computed scope, class, and the broader scopes avoided."""
    from gwsync.worker.scopes_report import render

    render(sys.stdout)


@main.command()
@click.option("--contacts", default=240, show_default=True, type=int)
def demo(contacts: int) -> None:
    """Run the whole flow on SQLite and Redis against the emulator, and print the receipt."""
    from gwsync.worker.demo import main as run_demo

    sys.exit(run_demo(contacts))
