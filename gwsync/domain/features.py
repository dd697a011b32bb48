"""The user-visible features: what each shows, calls, stores and keeps, and its scope.

A feature's scope is never written here: it is computed from the methods it calls
(`domain.scopes`), so adding a method can only widen it visibly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property

from gwsync.domain import scopes
from gwsync.domain.scopes import ScopeInfo


@dataclass(frozen=True)
class Feature:
    name: str
    title: str
    #: The sentence a user sees when asked to consent.
    sentence: str
    api: str
    methods: tuple[str, ...]
    #: Request parameters the feature sends, per method (checked against scope limits).
    params: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Record kind → the only fields stored for it.
    fields: dict[str, tuple[str, ...]] = field(default_factory=dict)
    retention: timedelta = timedelta(days=30)
    #: Scopes whose limitation (see `scopes.RANKED`) is exactly what the feature wants.
    accepts_limited: tuple[str, ...] = ()
    #: The method whose answer the stored fields come from (default: the first method).
    stores_from: str | None = None

    @property
    def source_method(self) -> str:
        return self.stores_from or self.methods[0]

    @cached_property
    def scope_info(self) -> ScopeInfo:
        return scopes.narrowest(self.methods, self.params, self.accepts_limited)

    @property
    def scope(self) -> str:
        return self.scope_info.scope

    @property
    def data_use(self) -> str:
        return f"feature:{self.name}"


FEATURES: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature(
            name="contacts",
            title="Contact suggestions",
            sentence="Suggest people from your Google contacts when you start a chat.",
            api="people",
            methods=("people.people.connections.list",),
            params={"people.people.connections.list": {
                # `metadata` for deletions and `previousResourceNames` (renames):
                # read, never stored (docs/google.md §9.9).
                "personFields": "names,emailAddresses,phoneNumbers,metadata"}},
            fields={"contact": ("name", "emails", "phones"),
                    "derived:suggestions": ("index",)},
            retention=timedelta(days=30),
        ),
        Feature(
            name="availability",
            title="Availability for scheduling",
            sentence="Show when you are free so others can propose a meeting time.",
            api="calendar",
            methods=("calendar.freebusy.query",),
            fields={"busy_interval": ("start", "end")},
            retention=timedelta(days=1),
        ),
        Feature(
            name="meetings",
            title="Upcoming meetings",
            sentence="Show your upcoming meetings next to the chats they belong to.",
            api="calendar",
            # Watched (push) under the same scope; availability is not: calendar.freebusy
            # authorises no watch method, so it is polled; People has no push at all.
            methods=("calendar.events.list", "calendar.events.watch", "calendar.channels.stop"),
            fields={"event": ("summary", "start", "end", "status")},
            retention=timedelta(days=30),
        ),
        Feature(
            name="shared_files",
            title="Files shared into chats",
            sentence="List the Drive files you shared into chats through this app.",
            api="drive",
            methods=("drive.files.list", "drive.changes.getStartPageToken", "drive.changes.list",
                     "drive.changes.watch", "drive.channels.stop"),
            fields={"file": ("name", "mime_type", "modified_time", "link")},
            accepts_limited=(scopes.AUTH + "drive.file",),
            retention=timedelta(days=30),
        ),
        Feature(
            name="mail_activity",
            title="Recent conversations",
            sentence="Show your recent email conversations with a contact.",
            api="gmail",
            methods=("gmail.users.messages.list", "gmail.users.messages.get",
                     "gmail.users.history.list", "gmail.users.watch", "gmail.users.stop",
                     "gmail.users.getProfile"),
            params={"gmail.users.messages.get": {"format": "metadata"}},
            stores_from="gmail.users.messages.get",
            fields={"message": ("from", "to", "subject", "date")},
            retention=timedelta(days=14),
        ),
    )
}


class UnknownFeatureError(KeyError):
    """A feature name that is not declared."""


def get(name: str) -> Feature:
    try:
        return FEATURES[name]
    except KeyError:
        raise UnknownFeatureError(name) from None


def coverage(granted: frozenset[str]) -> dict[str, list[str]]:
    """Per feature, the scopes it still needs (empty: the feature is enabled)."""
    return {
        name: [] if feature.scope in granted else [feature.scope]
        for name, feature in FEATURES.items()
    }
