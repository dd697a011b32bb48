"""Which connector serves which feature, built per job with that job's access token."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gwsync.connectors import client
from gwsync.connectors.base import Connector
from gwsync.connectors.people import PeopleConnector

if TYPE_CHECKING:
    from gwsync.worker.deps import Deps

ConnectorFactory = Callable[[str, "Deps"], Connector]


def _people(token: str, deps: Deps) -> Connector:
    service = client.service("people", token, deps.endpoints, deps.settings.http_timeout_s)
    return PeopleConnector(service, deps.settings.sync_page_size)


#: Features with a connector; the others are declared (scopes, fields) but not yet synced.
CONNECTORS: dict[str, ConnectorFactory] = {"contacts": _people}
