"""What each call costs in Google's quota, as Google's quota pages publish it.

The emulator keeps its own table, copied from Google's documents and never from our
connectors, so a quota test compares our limiter with Google's rules rather than with
itself. Sources: https://developers.google.com/gmail/api/reference/quota (per-method
units; ``threads.list``, ``watch`` and ``stop`` are not on the page we have and are
marked unconfirmed); Calendar, Drive and People count requests, one per call
(https://developers.google.com/calendar/api/guides/quota,
https://developers.google.com/drive/api/guides/limits). Drive's May-2026 model counts
"quota units" with no published per-method table yet: kept at one per request.
"""

from __future__ import annotations

#: Gmail's per-method units, from its quota page.
GMAIL_UNITS: dict[str, int] = {
    "gmail.users.messages.list": 5,
    "gmail.users.messages.get": 5,
    "gmail.users.messages.attachments.get": 5,
    "gmail.users.messages.modify": 5,
    "gmail.users.messages.batchModify": 50,
    "gmail.users.messages.batchDelete": 50,
    "gmail.users.messages.send": 100,
    "gmail.users.history.list": 2,
    "gmail.users.labels.list": 1,
    "gmail.users.labels.get": 1,
    "gmail.users.getProfile": 1,
    "gmail.users.drafts.send": 100,
    "gmail.users.drafts.get": 5,
    "gmail.users.drafts.list": 5,
    "gmail.users.threads.get": 10,
    "gmail.users.threads.list": 10,  # unconfirmed
    "gmail.users.watch": 100,  # unconfirmed
    "gmail.users.stop": 100,  # unconfirmed
}
#: Most of the page's read methods cost 5; a Gmail method it does not list is charged so.
GMAIL_DEFAULT_UNITS = 5
APIS = ("gmail", "calendar", "drive", "people")


def api_of(method_id: str) -> str:
    """The API a discovery method id belongs to (``gmail.users.messages.get`` → gmail)."""
    return method_id.split(".", 1)[0]


def units(method_id: str) -> int:
    """What one call of a discovery method costs in its API's quota."""
    if api_of(method_id) == "gmail":
        return GMAIL_UNITS.get(method_id, GMAIL_DEFAULT_UNITS)
    return 1

#: Per-user limits per minute, from the quota pages (docs/google.md §5): Gmail 15,000 units
#: (the page most copies show; the newest, for projects new after May 2026, says 6,000),
#: Calendar 600 requests, Drive 12,000 queries per 60 s (the older model; the May-2026
#: one allows 325,000 units). People publishes no per-user number we could confirm: not
#: limited.
PER_USER_PER_MIN: dict[str, int] = {"gmail": 15_000, "calendar": 600, "drive": 12_000}
#: The bounded burst, in seconds of the rate: Gmail's page once said "250 quota units per
#: user per second, moving average (allows short bursts)" without a size; 4 s (1,000
#: Gmail units) is our assumption, the figure issue reports measured against.
BURST_S = 4.0
