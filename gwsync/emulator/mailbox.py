"""A Gmail mailbox for the emulator: messages with bodies and labels, and a history log.

Gmail's incremental sync reads a history log: every add, delete and label change gets
the next history id, and ids increase with gaps ("not contiguous with random gaps",
history.list reference). The log is kept from `floor` on; a start id older than that
answers 404, as Gmail does once its retention has passed: records older than
`retention_s` are forgotten ("typically valid for at least a week… in rare cases only a
few hours", users.history.list reference), so a start id from before a forgotten change
is dead. That Gmail forgets by the age of each record, not of the start id, is our
reading of that sentence [unconfirmed].
Messages carry real bodies, so tests can show that the metadata format never leaks them.
"""

from __future__ import annotations

import base64
import bisect
import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gwsync.emulator.errors import NotFoundError
from gwsync.emulator.grants import IssuedGrant
from gwsync.emulator.state import EmulatorState

METADATA_SCOPE = "https://www.googleapis.com/auth/gmail.metadata"
#: Labels whose messages messages.list leaves out unless includeSpamTrash=true.
SPAM_TRASH = frozenset({"SPAM", "TRASH"})
HISTORY_TYPES = ("messageAdded", "messageDeleted", "labelAdded", "labelRemoved")
#: How long history records are kept: "typically … at least a week".
HISTORY_RETENTION_S = 7 * 24 * 3600
#: The first history id of a new mailbox (real ones are large integers too).
FIRST_HISTORY_ID = 1_000_000
#: Message ids look like Gmail's 16 hex digits.
_FIRST_MESSAGE_ID = 0x18C0_0000_0000_0000


def _b64url(data: bytes) -> str:
    """Gmail's body encoding: base64url, padding kept (as the API sends it)."""
    return base64.urlsafe_b64encode(data).decode()


@dataclass
class Message:
    """One stored message: headers, a text body, labels and its last history id."""

    id: str
    thread_id: str
    label_ids: list[str]
    internal_date: int  # epoch milliseconds, as the API reports it
    history_id: int
    headers: list[tuple[str, str]]
    text: str

    def raw(self) -> bytes:
        """The message as RFC 822 bytes (what format=raw encodes)."""
        head = "".join(f"{name}: {value}\r\n" for name, value in self.headers)
        return (head + "Content-Type: text/plain; charset=UTF-8\r\n\r\n" + self.text).encode()

    def _base(self, with_snippet: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "threadId": self.thread_id,
                               "labelIds": list(self.label_ids)}
        if with_snippet:
            out["snippet"] = " ".join(self.text.split())[:200]
        out.update(sizeEstimate=len(self.raw()), historyId=str(self.history_id),
                   internalDate=str(self.internal_date))
        return out

    def _headers(self, only: Sequence[str]) -> list[dict[str, str]]:
        wanted = {h.lower() for h in only}
        return [{"name": n, "value": v} for n, v in self.headers
                if not wanted or n.lower() in wanted]

    def render(self, fmt: str, metadata_headers: Sequence[str] = (),
               with_snippet: bool = True) -> dict[str, Any]:
        """The message as messages.get returns it in `fmt` (minimal|metadata|full|raw).

        The metadata payload's exact key set (Google may add partId/filename/body.size)
        is not documented; we send mimeType and the filtered headers.
        """
        out = self._base(with_snippet)
        if fmt == "metadata":
            out["payload"] = {"mimeType": "text/plain",
                              "headers": self._headers(metadata_headers)}
        elif fmt == "full":
            body = self.text.encode()
            out["payload"] = {"partId": "", "mimeType": "text/plain", "filename": "",
                              "headers": self._headers(()),
                              "body": {"size": len(body), "data": _b64url(body)}}
        elif fmt == "raw":
            out["raw"] = _b64url(self.raw())
        return out


@dataclass(frozen=True)
class HistoryRecord:
    """One change in the log; `labels` are the changed labels for label records."""

    id: int
    type: str
    message_id: str
    thread_id: str
    message_labels: tuple[str, ...]
    labels: tuple[str, ...] = ()
    #: When the change happened (emulator clock), for retention.
    at: float = 0.0

    def render(self) -> dict[str, Any]:
        """The record as history.list returns it (one change per record here)."""
        msg = {"id": self.message_id, "threadId": self.thread_id}
        entry: dict[str, Any] = {"message": {**msg, "labelIds": list(self.message_labels)}}
        if self.type in ("labelAdded", "labelRemoved"):
            entry["labelIds"] = list(self.labels)
        if self.type == "messageDeleted":
            entry = {"message": msg}
        return {"id": str(self.id), "messages": [msg], _plural(self.type): [entry]}


def _plural(history_type: str) -> str:
    """messageAdded → messagesAdded, labelRemoved → labelsRemoved."""
    for noun in ("message", "label"):
        if history_type.startswith(noun):
            return noun + "s" + history_type[len(noun):]
    raise ValueError(history_type)


@dataclass
class Mailbox:
    """The Gmail data of one user (kept via `EmulatorState.api_data`)."""

    messages: dict[str, Message] = field(default_factory=dict)
    history: list[HistoryRecord] = field(default_factory=list)
    history_id: int = FIRST_HISTORY_ID
    #: The oldest start id history.list still answers.
    floor: int = FIRST_HISTORY_ID
    #: Records older than this many seconds are forgotten (see the module docstring).
    retention_s: float = HISTORY_RETENTION_S
    #: The emulator's clock (`EmulatorState.now`), which stamps and ages the records.
    now: Callable[[], float] = time.time
    _ids: Any = field(default_factory=lambda: itertools.count(_FIRST_MESSAGE_ID, 0x1F3))

    def _next_history_id(self) -> int:
        """Increase with a gap of 1–4, deterministically, as real ids skip values."""
        self.history_id += 1 + (self.history_id * 7) % 4
        return self.history_id

    def _log(self, type_: str, message: Message, labels: Iterable[str] = ()) -> None:
        hid = self._next_history_id()
        message.history_id = hid
        self.history.append(HistoryRecord(hid, type_, message.id, message.thread_id,
                                          tuple(message.label_ids), tuple(labels),
                                          self.now()))

    def get(self, message_id: str) -> Message:
        try:
            return self.messages[message_id]
        except KeyError:
            raise NotFoundError("message", message_id) from None

    def add(self, headers: Mapping[str, str], text: str, internal_date: int,
            label_ids: Sequence[str] = ("INBOX", "UNREAD"),
            thread_id: str | None = None) -> Message:
        """Deliver a message (a messageAdded record); returns it."""
        mid = f"{next(self._ids):016x}"
        message = Message(mid, thread_id or mid, list(label_ids), internal_date, 0,
                          list(headers.items()), text)
        self.messages[mid] = message
        self._log("messageAdded", message)
        return message

    def delete(self, message_id: str) -> None:
        """Delete for good (not trash): a messageDeleted record."""
        message = self.get(message_id)
        del self.messages[message_id]
        self._log("messageDeleted", message)

    def change_labels(self, message_id: str, add: Iterable[str] = (),
                      remove: Iterable[str] = ()) -> None:
        """Add and remove labels: one labelAdded and/or one labelRemoved record."""
        message = self.get(message_id)
        added = [label for label in dict.fromkeys(add) if label not in message.label_ids]
        removed = [label for label in dict.fromkeys(remove) if label in message.label_ids]
        message.label_ids = [lb for lb in message.label_ids if lb not in removed] + added
        if added:
            self._log("labelAdded", message, added)
        if removed:
            self._log("labelRemoved", message, removed)

    def truncate_history(self) -> int:
        """Forget the log: every start id older than the current one now answers 404."""
        self.floor = self.history_id
        self.history.clear()
        return self.floor

    def forget_expired(self) -> None:
        """Drop the records older than the retention; a start id before the newest one
        dropped can no longer be replayed, so the floor rises to it."""
        cut = bisect.bisect_left(self.history, self.now() - self.retention_s,
                                 key=lambda r: r.at)
        if cut:
            self.floor = max(self.floor, self.history[cut - 1].id)
            del self.history[:cut]

    def listing(self, label_ids: Sequence[str], include_spam_trash: bool) -> tuple[str, ...]:
        """Message ids newest first, filtered as messages.list filters them."""
        wanted = set(label_ids)
        return tuple(
            m.id for m in reversed(self.messages.values())
            if wanted <= set(m.label_ids)
            and (include_spam_trash or not SPAM_TRASH & set(m.label_ids))
        )

    def changes(self, after: int, upto: int, types: frozenset[str],
                limit: int) -> tuple[list[HistoryRecord], int | None]:
        """Up to `limit` records with after < id <= upto of `types`; and where to go on.

        Bisecting keeps a page O(log n + limit), so long logs page in linear time.
        """
        start = bisect.bisect_right(self.history, after, key=lambda r: r.id)
        found: list[HistoryRecord] = []
        for record in itertools.islice(self.history, start, None):
            if record.id > upto:
                return found, None
            if record.type in types:
                if len(found) == limit:
                    return found, found[-1].id
                found.append(record)
        return found, None


def fake_message(i: int) -> tuple[dict[str, str], str]:
    """The `i`-th deterministic message: headers and a private body."""
    people = ("ada", "grace", "alan", "edsger", "barbara", "donald", "radia", "ken")
    sender = people[i % len(people)]
    day, hour = 1 + (i // 24) % 28, i % 24
    headers = {
        "Received": f"from mx{i % 3}.example.com by mx.google.com",
        "From": f"{sender.title()} <{sender}.{i}@example.com>",
        "To": "Demo User <demo.user@example.com>",
        "Subject": f"Project update #{i}",
        "Date": f"Mon, {day:02d} Jun 2026 {hour:02d}:15:00 +0000",
        "Message-ID": f"<msg-{i}@example.com>",
    }
    return headers, f"Confidential body #{i}: the numbers for {sender} are attached.\n"


def mailbox(state: EmulatorState, user_key: str) -> Mailbox:
    """The user's mailbox, created empty on first use."""
    return state.api_data("gmail", user_key, lambda: Mailbox(now=state.now))


def seed_gmail(state: EmulatorState, user_key: str, n_messages: int) -> list[str]:
    """Deliver `n_messages` deterministic messages, oldest first; returns their ids."""
    box = mailbox(state, user_key)
    base_ms = 1_780_272_000_000  # 2026-06-01T00:00:00Z
    return [box.add(*fake_message(i), base_ms + i * 60_000).id for i in range(n_messages)]


def add_gmail_user(state: EmulatorState, email: str, n_messages: int,
                   scopes: tuple[str, ...] = (METADATA_SCOPE,)) -> IssuedGrant:
    """Create a user with no contacts, a mailbox of `n_messages` and one grant of `scopes`."""
    issued = state.add_user(email, [], scopes)
    seed_gmail(state, issued.user, n_messages)
    return issued
