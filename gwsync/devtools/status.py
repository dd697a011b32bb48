"""`gwsync status`: the ops page's picture in a terminal, or as JSON for scripts.

It reads the database and Redis the settings point at and renders the same snapshot as
the ops page and `/metrics`, so an operator on a server sees the same numbers. It needs
no secret: it reads counts and ages only.
"""

from __future__ import annotations

import json
from typing import IO

from redis.exceptions import RedisError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from gwsync.core import queue
from gwsync.core.settings import Settings
from gwsync.storage.db import create_engine, session_factory
from gwsync.storage.ops_snapshot import OpsSnapshot, Sources, take
from gwsync.web.ops_page import age


class StatusUnavailableError(Exception):
    """The database or Redis did not answer; the message names which, without secrets."""


async def collect(settings: Settings) -> OpsSnapshot:
    """One snapshot of the deployment `settings` describe; closes what it opened."""
    engine = create_engine(settings.database_url)
    try:
        redis = await queue.connect(settings.redis_url, settings.queue_name)
    except (RedisError, OSError) as exc:
        await engine.dispose()
        raise StatusUnavailableError(f"Redis does not answer ({type(exc).__name__})") from None
    try:
        return await take(Sources(session_factory(engine), redis, settings.redis_prefix,
                                  settings.queue_name, settings.sync_interval_s))
    except (SQLAlchemyError, OSError) as exc:
        raise StatusUnavailableError(
            f"the database does not answer ({type(exc).__name__})") from None
    finally:
        await redis.aclose()
        await engine.dispose()


def as_json(snap: OpsSnapshot, out: IO[str]) -> None:
    json.dump(snap.to_json(), out, indent=2, sort_keys=True)
    out.write("\n")


def _pairs(title: str, head: tuple[str, str], mapping: dict[str, int], empty: str) -> Table:
    table = Table(title=title, title_justify="left", min_width=34)
    table.add_column(head[0])
    table.add_column(head[1], justify="right")
    for key, value in mapping.items():
        table.add_row(key, str(value))
    if not mapping:
        table.add_row(f"[dim]{empty}[/]", "")
    return table


def _overview(s: OpsSnapshot) -> Table:
    table = Table(title="Now", title_justify="left")
    table.add_column("what")
    table.add_column("now", justify="right")
    rows = [("jobs queued", s.queue_depth), ("queued and due now", s.queue_due),
            ("jobs running", s.in_progress),
            ("jobs finished, last hour", sum(s.finished_last_hour.values())),
            ("syncs failing", sum(f.count for f in s.failures)),
            ("syncs behind schedule", sum(s.behind_schedule.values())),
            ("erasures pending", sum(p.count for p in s.erasures_pending)),
            ("erasures overdue", s.erasures_overdue),
            ("reads refused, 24 h", sum(s.refused_reads.values())),
            ("app webhooks pending", sum(s.app_webhooks.get("pending", {}).values())),
            ("app webhooks given up", sum(s.app_webhooks.get("failed", {}).values()))]
    for label, value in rows:
        table.add_row(label, str(value))
    return table


def _failures(s: OpsSnapshot) -> Table:
    table = Table(title="Recent failures by error category", title_justify="left")
    for column in ("category", "features", "latest run", "syncs"):
        table.add_column(column, justify="right" if column == "syncs" else "left")
    for f in s.failures:
        table.add_row(f.category, ", ".join(f"{k} {v}" for k, v in f.features.items()),
                      f.latest or "—", str(f.count))
    if not s.failures:
        table.add_row("[dim]no failing syncs[/]", "", "", "")
    return table


def _erasures(s: OpsSnapshot) -> Table:
    table = Table(title=f"Erasures pending (deadline {age(s.erasure_deadline_s)})",
                  title_justify="left")
    for column in ("state", "oldest", "erasures"):
        table.add_column(column, justify="left" if column == "state" else "right")
    for p in s.erasures_pending:
        table.add_row(p.state, age(p.oldest_age_s), str(p.count))
    if not s.erasures_pending:
        table.add_row("[dim]none pending[/]", "", "")
    return table


def render(snap: OpsSnapshot, console: Console) -> None:
    console.print(f"[bold]gwsync status[/] — queue {escape(snap.queue_name)} at "
                  f"{snap.taken_at}", soft_wrap=True, highlight=False)
    console.print(_overview(snap))
    console.print(_failures(snap))
    console.print(_erasures(snap))
    for title, head, mapping, empty in (
        ("Behind schedule", ("feature", "syncs"), snap.behind_schedule, "all on schedule"),
        ("Jobs finished, last hour", ("outcome", "jobs"), snap.finished_last_hour, "none"),
        ("Refused reads, 24 h", ("use", "reads"), snap.refused_reads, "none refused"),
        ("Accounts by status", ("status", "accounts"), snap.accounts_by_status, "none"),
        ("Syncs by status", ("status", "syncs"), snap.syncs_by_status, "none"),
        ("Erasures by state", ("state", "erasures"), snap.erasures_by_state, "none"),
        ("Records stored by feature", ("feature", "records"), snap.records_by_feature, "none"),
    ):
        console.print(_pairs(title, head, mapping, empty))
