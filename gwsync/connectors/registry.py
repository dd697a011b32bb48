"""Which connector serves which feature, built per job with that job's access token."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gwsync.connectors import client
from gwsync.connectors.base import Connector
from gwsync.connectors.calendar import AvailabilityConnector, MeetingsConnector
from gwsync.connectors.drive import SharedFilesConnector
from gwsync.connectors.endpoints import Endpoints
from gwsync.connectors.gmail import MAX_IN_FLIGHT, BatchFetcher, MailActivityConnector
from gwsync.connectors.people import PeopleConnector
from gwsync.connectors.quota import UNMETERED, Budget


@dataclass(frozen=True)
class ConnectorOptions:
    """What every connector is built with, read once from the settings."""

    endpoints: Endpoints
    http_timeout_s: float
    page_size: int
    gmail_max_in_flight: int = MAX_IN_FLIGHT


#: (access token, options, the account's quota budget) → the job's connector.
ConnectorFactory = Callable[[str, ConnectorOptions, Budget], Connector]


def _people(token: str, opts: ConnectorOptions, budget: Budget = UNMETERED) -> Connector:
    service = client.service("people", token, opts.endpoints, opts.http_timeout_s)
    return PeopleConnector(service, opts.page_size, budget)


def _availability(token: str, opts: ConnectorOptions, budget: Budget = UNMETERED) -> Connector:
    service = client.service("calendar", token, opts.endpoints, opts.http_timeout_s)
    return AvailabilityConnector(service, budget=budget)


def _meetings(token: str, opts: ConnectorOptions, budget: Budget = UNMETERED) -> Connector:
    service = client.service("calendar", token, opts.endpoints, opts.http_timeout_s)
    return MeetingsConnector(service, opts.page_size, budget)


def _shared_files(token: str, opts: ConnectorOptions, budget: Budget = UNMETERED) -> Connector:
    service = client.service("drive", token, opts.endpoints, opts.http_timeout_s)
    return SharedFilesConnector(service, opts.page_size, budget)


def _mail_activity(token: str, opts: ConnectorOptions, budget: Budget = UNMETERED) -> Connector:
    service = client.service("gmail", token, opts.endpoints, opts.http_timeout_s)
    fetcher = BatchFetcher(service, budget, max_in_flight=opts.gmail_max_in_flight)
    return MailActivityConnector(service, opts.page_size, fetcher, budget)


#: Features with a connector; the others are declared (scopes, fields) but not yet synced.
CONNECTORS: dict[str, ConnectorFactory] = {
    "contacts": _people,
    "availability": _availability,
    "meetings": _meetings,
    "shared_files": _shared_files,
    "mail_activity": _mail_activity,
}
