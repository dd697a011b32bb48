"""Which connector serves which feature, built per job with that job's access token."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gwsync.connectors import client
from gwsync.connectors.base import Connector
from gwsync.connectors.calendar import AvailabilityConnector, MeetingsConnector
from gwsync.connectors.drive import SharedFilesConnector
from gwsync.connectors.gmail import BatchFetcher, MailActivityConnector
from gwsync.connectors.people import PeopleConnector
from gwsync.connectors.quota import UNMETERED, Budget

if TYPE_CHECKING:
    from gwsync.worker.deps import Deps

#: (access token, deps, the account's quota budget) → the job's connector.
ConnectorFactory = Callable[[str, "Deps", Budget], Connector]


def _people(token: str, deps: Deps, budget: Budget = UNMETERED) -> Connector:
    service = client.service("people", token, deps.endpoints, deps.settings.http_timeout_s)
    return PeopleConnector(service, deps.settings.sync_page_size, budget)


def _availability(token: str, deps: Deps, budget: Budget = UNMETERED) -> Connector:
    service = client.service("calendar", token, deps.endpoints, deps.settings.http_timeout_s)
    return AvailabilityConnector(service, budget=budget)


def _meetings(token: str, deps: Deps, budget: Budget = UNMETERED) -> Connector:
    service = client.service("calendar", token, deps.endpoints, deps.settings.http_timeout_s)
    return MeetingsConnector(service, deps.settings.sync_page_size, budget)


def _shared_files(token: str, deps: Deps, budget: Budget = UNMETERED) -> Connector:
    service = client.service("drive", token, deps.endpoints, deps.settings.http_timeout_s)
    return SharedFilesConnector(service, deps.settings.sync_page_size, budget)


def _mail_activity(token: str, deps: Deps, budget: Budget = UNMETERED) -> Connector:
    service = client.service("gmail", token, deps.endpoints, deps.settings.http_timeout_s)
    return MailActivityConnector(service, deps.settings.sync_page_size,
                                 BatchFetcher(service, budget), budget)


#: Features with a connector; the others are declared (scopes, fields) but not yet synced.
CONNECTORS: dict[str, ConnectorFactory] = {
    "contacts": _people,
    "availability": _availability,
    "meetings": _meetings,
    "shared_files": _shared_files,
    "mail_activity": _mail_activity,
}
