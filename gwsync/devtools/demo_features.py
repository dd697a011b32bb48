"""The demo's five-feature parts: the seeded Google user, the person at the consent screen,
one progress bar per feature, and the closing table of what each feature cost.

Kept apart from `demo.py` (which runs processes and tells the story) and free of its
state, so each piece is a small function of plain inputs: the emulator, an HTTP session,
the account report gwsync answers with, the emulator's call log.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from gwsync.connectors.calendar import HORIZON
from gwsync.devtools.demo_errors import DemoError
from gwsync.domain.api import FeatureStatus
from gwsync.domain.features import FEATURES
from gwsync.emulator.calendar_events import seed_calendar
from gwsync.emulator.consent_client import consent, open_form
from gwsync.emulator.drive_data import seed_drive
from gwsync.emulator.mailbox import seed_gmail
from gwsync.emulator.seed import DEMO_EMAIL, seed_demo_user
from gwsync.emulator.state import EmulatorState

#: `seed_calendar` seeds three events a day from tomorrow; meetings keeps `HORIZON` days.
SEEDED_PER_DAY = 3
#: A feature whose sync ended in one of these stops the demo.
FAILED = ("error", "needs_permission")


@dataclass(frozen=True)
class Sizes:
    """How much the seeded user has per API (small by default: the demo runs in seconds)."""

    contacts: int = 240
    events: int = 40
    files: int = 30
    messages: int = 300

    def expected(self) -> dict[str, int | None]:
        """Records each feature should end with; None where Google decides (free/busy
        merges and windows intervals)."""
        return {"contacts": self.contacts, "availability": None,
                "meetings": min(self.events, SEEDED_PER_DAY * (HORIZON.days - 1)),
                "shared_files": self.files, "mail_activity": self.messages}


def short_scope(scope: str) -> str:
    """`https://www.googleapis.com/auth/drive.file` → `drive.file`."""
    return scope.rsplit("/", 1)[-1]


# -- the Google side --------------------------------------------------------------------------


def seed_user(state: EmulatorState, sizes: Sizes) -> str:
    """A Google user with data for all five features who has granted nothing yet.

    The emulator records a user with an empty grant; only the consent screen grants scopes.
    """
    user = seed_demo_user(state, sizes.contacts, scopes=()).user
    seed_calendar(state, user, sizes.events)
    seed_drive(state, user, sizes.files)
    seed_gmail(state, user, sizes.messages)
    return user


async def allow_everything(http: aiohttp.ClientSession, url: str
                           ) -> tuple[list[str], dict[str, str]]:
    """The person at the consent screen ticks every box and presses Continue.

    Returns the scopes the page offered and the query of Google's redirect back to the app.
    """
    form = await open_form(http, url)
    offered = list(form.boxes)
    wanted = {f.scope for f in FEATURES.values()}
    if set(offered) != wanted:
        missing = ", ".join(sorted(short_scope(s) for s in wanted - set(offered))) or "none"
        raise DemoError(f"the consent screen did not offer every feature's "
                                     f"scope (missing: {missing})")
    return offered, await consent(http, url, offered, user=DEMO_EMAIL)


def check_all_enabled(syncs_queued: Iterable[str]) -> None:
    """The new account must have every feature enabled and its first sync queued."""
    not_queued = sorted(set(FEATURES) - set(syncs_queued))
    if not_queued:
        raise DemoError(f"no first sync was queued for: {', '.join(not_queued)}")


# -- progress ---------------------------------------------------------------------------------


class FeatureProgress:
    """One progress bar per feature, fed with `GET /v1/accounts/{id}` reports."""

    def __init__(self, console: Console, expected: Mapping[str, int | None]) -> None:
        columns = (TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[status]}"), TimeElapsedColumn())
        self.progress = Progress(*columns, console=console)
        self._tasks: dict[str, TaskID] = {
            name: self.progress.add_task(name, total=total, status="queued")
            for name, total in expected.items()}

    def update(self, report: Mapping[str, FeatureStatus]) -> bool:
        """Show the report; True once every feature is `ok`. A failed feature raises."""
        for name, task in self._tasks.items():
            entry = report[name]
            _raise_if_failed(name, entry)
            count, status = entry.record_count, entry.status or "queued"
            if status == "ok":
                self.progress.update(task, total=count, completed=count, status="ok")
            else:
                self.progress.update(task, completed=count, status=status)
        return all(report[name].status == "ok" for name in self._tasks)


def _raise_if_failed(name: str, entry: FeatureStatus) -> None:
    if entry.status in FAILED:
        error = entry.last_error
        raise DemoError(f"the {name} sync failed ({entry.status}): "
                        f"{error.category if error else None}: {error.detail if error else None}")


# -- the closing table ------------------------------------------------------------------------


def api_calls(calls: Iterable[Mapping[str, Any]]) -> Counter[str]:
    """Calls per feature in the emulator's log, by the methods each feature declares."""
    owner = {method: name for name, f in FEATURES.items() for method in f.methods}
    return Counter(owner[c["method"]] for c in calls if c["method"] in owner)


def feature_table(title: str, report: Mapping[str, FeatureStatus],
                  calls: Iterable[Mapping[str, Any]]) -> Table:
    """feature | scope | class | records | API calls — one row per feature."""
    per_feature = api_calls(calls)
    table = Table(title=title, show_edge=False)  # fits 80 columns: scopes are not cut
    for column in ("feature", "scope", "class"):
        table.add_column(column)
    for column in ("records", "API calls"):
        table.add_column(column, justify="right")
    for name, feature in FEATURES.items():
        info = feature.scope_info
        table.add_row(name, short_scope(info.scope), info.klass.label,
                      str(report[name].record_count), str(per_feature[name]))
    return table
