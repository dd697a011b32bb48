"""Read the discovery documents bundled with google-api-python-client.

They are the source of truth for which scopes authorise which method: both the
scope computation of features and the emulator's authorisation check read them
here, so the two can never disagree.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

#: API name as it prefixes discovery method ids → (document name, version).
APIS: dict[str, tuple[str, str]] = {
    "people": ("people", "v1"),
    "calendar": ("calendar", "v3"),
    "drive": ("drive", "v3"),
    "gmail": ("gmail", "v1"),
}


class UnknownMethodError(KeyError):
    """A discovery method id that the bundled documents do not define."""


@cache
def document(api: str) -> dict[str, Any]:
    """Return the bundled discovery document of `api` (``people``, ``gmail``, ...)."""
    name, version = APIS[api]
    pkg = resources.files("googleapiclient") / "discovery_cache" / "documents"
    found: dict[str, Any] = json.loads((pkg / f"{name}.{version}.json").read_text(encoding="utf-8"))
    return found


def _walk(resource: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for method in resource.get("methods", {}).values():
        found[method["id"]] = method
    for child in resource.get("resources", {}).values():
        found.update(_walk(child))
    return found


@cache
def methods(api: str) -> dict[str, dict[str, Any]]:
    """Every method of `api`, keyed by its discovery id (``people.people.connections.list``)."""
    return _walk(document(api))


def method(method_id: str) -> dict[str, Any]:
    """The discovery entry of one method, e.g. ``gmail.users.messages.get``."""
    api = method_id.split(".", 1)[0]
    if api not in APIS or method_id not in methods(api):
        raise UnknownMethodError(method_id)
    return methods(api)[method_id]


def method_scopes(method_id: str) -> frozenset[str]:
    """Every scope that authorises `method_id`, as Google lists them."""
    return frozenset(method(method_id).get("scopes", ()))
