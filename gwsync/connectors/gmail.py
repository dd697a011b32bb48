"""Recent mail activity from the Gmail API, under the ``gmail.metadata`` scope.

Google's sync recipe (guides/sync): a full sync lists every message id, fetches each
with ``messages.get(format=metadata)`` and keeps the ``historyId`` of the newest
message; later runs replay ``history.list`` from it. A 404 from history.list means the
id is older than Gmail keeps, so the job must resync in full. Only the From, To,
Subject and Date headers are asked for, and only they are stored.

Trash and spam are not conversations: listings leave them out (``includeSpamTrash``
is false), a message moved there is removed, and one moved back is fetched again.
Other label changes (read, starred, …) change nothing stored and are ignored.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import google_auth_httplib2
import httplib2
from googleapiclient.errors import HttpError

from gwsync.connectors.base import Fetched
from gwsync.connectors.client import classify_http_error, execute
from gwsync.connectors.errors import (
    CursorExpiredError,
    GoogleError,
    PageTokenRefusedError,
    TemporaryError,
    UnknownGoogleError,
)
from gwsync.connectors.lean_batch import SameMethod, new_batch
from gwsync.connectors.quota import UNMETERED, Budget, Charge
from gwsync.domain.features import FEATURES, Feature
from gwsync.domain.pages import Page, Removal, Upsert

if TYPE_CHECKING:  # the per-API resource types exist only in the stubs
    from googleapiclient._apis.gmail.v1 import GmailResource

KIND = "message"
#: Stored field → the header it comes from.
HEADERS = {"from": "From", "to": "To", "subject": "Subject", "date": "Date"}
SPAM_TRASH = frozenset({"SPAM", "TRASH"})
HISTORY_TYPES = ["messageAdded", "messageDeleted", "labelAdded", "labelRemoved"]
MAX_LIST = 500
GET_METHOD = "gmail.users.messages.get"
#: Gmail takes 100 calls per batch but advises against more than 50 (guides/batch).
BATCH_SIZE = 50
#: Calls in flight at once for one mailbox, all batches together. Google runs a batch's
#: parts as individual calls that count against the user's concurrency and answers
#: 429 "Too many concurrent requests for user" somewhere at 25–50 (docs/google.md §9);
#: community reports put the practical limit near 10–20. 16 keep the per-user rate
#: (50 gets/s) busy through Google's latency tail: at a median of 80 ms and a p99 of
#: 600 ms a POST of two parts takes 170 ms on average, and ten in flight left the
#: quota 15–20 % unspent (bench/realistic.py).
MAX_IN_FLIGHT = 16
#: Parts per batch POST while Google is slow: a POST answers when its slowest part does,
#: so small POSTs keep the calls in flight busy (the mean of the slower of two parts is
#: 1.5× one part's).
PARTS_PER_POST = 2
#: A page whose POSTs came back faster than this per part (the median) was answered about
#: as fast as we can read it: our own work per POST (an HTTP round trip, a thread hop, a
#: quota charge) then limits the fetch, not Google's tail, so the next page goes in one
#: POST of every call allowed in flight. Gmail answers a get in tens of milliseconds
#: (docs/google.md §9.4; realistic mode: median 80 ms), far above it; a fake of Google on
#: the loopback in 1–3 ms (bench/ingest.py: 16 parts per POST read 1.9× as many messages a
#: second as 2 did there, and 2 kept 0.97 of the quota in realistic mode where 16 kept less).
#: A page held to the quota keeps small POSTs however fast Google answered (`_resize`).
FAST_PART_S = 0.020
#: Rounds a failed part gets inside one page before the page is left to the job's retry.
PART_ROUNDS = 6
PART_RETRY_BASE_S = 0.25
PART_RETRY_CAP_S = 8.0
#: A fetched message, or None when Gmail no longer has it (deleted since it was listed).
FetchedMessages = dict[str, dict[str, Any] | None]
#: One listed page: its ids, their messages, and the next page's token ("" at the end).
ListedPage = tuple[list[str], FetchedMessages, str]


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _date(header: str | None, internal_ms: Any) -> str:
    """The Date header as RFC 3339 UTC; Gmail's internalDate when it is missing or bad."""
    try:
        if header:
            return _rfc3339(parsedate_to_datetime(header))
    except (TypeError, ValueError):
        pass
    if isinstance(internal_ms, str) and internal_ms.isdigit():
        return _rfc3339(datetime.fromtimestamp(int(internal_ms) / 1000, UTC))
    return ""


def to_record(message: Mapping[str, Any]) -> Upsert | Removal:
    """A metadata-format message → its four stored fields (Removal if in spam or trash)."""
    mid = message.get("id")
    if not isinstance(mid, str) or not mid:
        raise UnknownGoogleError("a message without id")
    if SPAM_TRASH & set(message.get("labelIds") or ()):
        return Removal(KIND, mid)
    found: dict[str, str] = {}
    for header in (message.get("payload") or {}).get("headers") or ():
        name = str(header.get("name", "")).lower()
        found.setdefault(name, str(header.get("value", "")))
    content = {field: found.get(name.lower(), "") for field, name in HEADERS.items()}
    content["date"] = _date(found.get("date"), message.get("internalDate"))
    return Upsert(KIND, mid, content)


def history_ops(records: Iterable[Mapping[str, Any]]) -> dict[str, bool]:
    """Replay history records: message id → True (fetch it again) or False (remove it)."""
    ops: dict[str, bool] = {}
    for record in records:
        for entry in record.get("messagesAdded") or ():
            ops[entry["message"]["id"]] = True
        for entry in record.get("messagesDeleted") or ():
            ops[entry["message"]["id"]] = False
        for entry in record.get("labelsAdded") or ():
            if SPAM_TRASH & set(entry.get("labelIds") or ()):
                ops[entry["message"]["id"]] = False
        for entry in record.get("labelsRemoved") or ():
            if SPAM_TRASH & set(entry.get("labelIds") or ()):
                ops[entry["message"]["id"]] = True
    return ops


def to_page(fetched: FetchedMessages, removed: Iterable[str] = ()) -> Page:
    """Fetched messages (gone ones become removals) plus explicit removals."""
    items = [to_record(m) if m is not None else Removal(KIND, mid)
             for mid, m in fetched.items()]
    items += [Removal(KIND, mid) for mid in removed]
    return Page(upserts=[i for i in items if isinstance(i, Upsert)],
                removals=[i for i in items if isinstance(i, Removal)])


def _newest_history_id(ids: Sequence[str], fetched: FetchedMessages) -> str:
    """The historyId of the first (newest) listed message Gmail still had."""
    return next((str(m["historyId"]) for m in (fetched.get(i) for i in ids)
                 if m and m.get("historyId")), "")


def metadata_request(messages: GmailResource.UsersResource.MessagesResource,
                     message_id: str) -> Any:
    """`messages` is ``service.users().messages()``, built once: each build of a resource
    re-creates its methods from the discovery document, which cost more than the call."""
    return messages.get(
        userId="me", id=message_id, format="metadata", metadataHeaders=list(HEADERS.values()))


async def _cancel(task: asyncio.Task[Any] | None) -> None:
    """Stop a read-ahead nobody will read, and wait until it has stopped."""
    if task is not None and not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _clone_http(http: Any) -> Any:
    """Another authorised connection with the same credentials and timeout."""
    inner = http.http
    return google_auth_httplib2.AuthorizedHttp(
        http.credentials, http=httplib2.Http(timeout=inner.timeout))


@dataclass(frozen=True)
class _PostTime:
    """One batch POST: Google's answer time, the quota's hold before it, its parts."""

    answered_s: float
    held_s: float
    parts: int


class BatchFetcher:
    """messages.get through Gmail's batch endpoint, at most `max_in_flight` calls at once.

    Batch was chosen over thread concurrency by measurement (bench/gmail_fetch.py: batch
    845–866 msgs/s vs 8 threads 572–689). Google answers each part on its own, and a
    part fails alone (429 for concurrency, 5xx): the parts that succeeded are kept and
    only the failed ones are sent again, with backoff, so a page makes progress however
    often single parts fail. A 404 part is a message deleted since it was listed.
    """

    def __init__(self, service: GmailResource, budget: Budget = UNMETERED, *,
                 max_in_flight: int = MAX_IN_FLIGHT,
                 retry_base_s: float = PART_RETRY_BASE_S,
                 fast_part_s: float = FAST_PART_S) -> None:
        self._service = service
        self._messages = service.users().messages()
        self._get = SameMethod(lambda mid: metadata_request(self._messages, mid))
        self._budget = budget
        # The calls in flight are split over POSTs of PARTS_PER_POST parts (lanes), so one
        # part's slow answer holds up only its own POST's share of them — unless Google
        # answers fast (`_resize`).
        self._max_in_flight = max(1, max_in_flight)
        self._slow_size = max(1, min(BATCH_SIZE, PARTS_PER_POST, max_in_flight))
        self._size = self._slow_size
        self._fast_part_s = fast_part_s
        self._posts: list[_PostTime] = []
        self._timed = False  # whether a POST of ours was timed yet (`seed`)
        self._failed = False  # whether a part of this page failed (`_resize`)
        self._retry_base_s = retry_base_s
        # One connection per POST in flight: httplib2 is not thread-safe.
        http = service._http  # type: ignore[attr-defined]  # set by build(); the stubs omit it
        lanes = max(1, max_in_flight // self._size)
        self._https = [_clone_http(http) for _ in range(lanes)]
        # And one thread per lane, of its own: in the loop's default pool (cpu count + 4
        # threads, shared by every job of the worker) the lanes would queue for threads.
        self._threads = ThreadPoolExecutor(lanes, thread_name_prefix="gmail-batch")

    def _post_sync(self, ids: Sequence[str], http: Any) -> dict[str, Any]:
        """One batch POST: message id → its message, None (404), or the part's HttpError."""
        answers: dict[str, Any] = {}

        def answer(request_id: str, response: Any, exc: HttpError | None) -> None:
            if exc is None:
                answers[request_id] = response
            else:
                answers[request_id] = None if exc.resp.status == 404 else exc

        batch = new_batch(self._service, answer)
        for mid in ids:
            batch.add(self._get(mid), request_id=mid)
        batch.execute(http=http)
        return answers

    async def _post(self, ids: Sequence[str], http: Any) -> dict[str, Any]:
        """A POST charged its n gets just before it is sent; a POST that fails as a whole
        (a temporary error) counts as n failed parts."""
        answered: list[float] = []

        def timed() -> dict[str, Any]:
            sent = time.monotonic()
            try:
                return self._post_sync(ids, http)
            finally:
                answered.append(time.monotonic() - sent)

        charge = Charge(GET_METHOD, len(ids))
        try:
            # Admitted here rather than by `execute`, to learn how long the quota held it.
            async with self._budget.spend(charge) as admission:
                answers = await execute(timed, charge=charge, executor=self._threads)
        except TemporaryError as exc:
            return dict.fromkeys(ids, exc)
        self._posts.append(_PostTime(answered[0], admission.waited_s, len(ids)))
        self._timed = True
        return answers

    async def _round(self, ids: Sequence[str], found: FetchedMessages) -> dict[str, GoogleError]:
        """Fetch `ids` into `found`; the parts that failed, classified."""
        chunks = iter([ids[i:i + self._size] for i in range(0, len(ids), self._size)])
        failed: dict[str, GoogleError] = {}

        async def lane(http: Any) -> None:
            # The lanes share `chunks`: one whose POST came back takes the next chunk at
            # once, never waiting for the other lane's slowest part (Google's latency has
            # a long tail; a wave of POSTs would move at the pace of its slowest).
            for chunk in chunks:
                for mid, value in (await self._post(chunk, http)).items():
                    if isinstance(value, HttpError):
                        failed[mid] = classify_http_error(value)
                    elif isinstance(value, GoogleError):
                        failed[mid] = value
                    else:
                        found[mid] = value

        lanes = max(1, self._max_in_flight // self._size)
        await asyncio.gather(*(lane(http) for http in self._https[:lanes]))
        return failed

    def seed(self, answered_s: float) -> None:
        """How long a call to the same Google just took (the page's messages.list): until
        POSTs of its own were timed, it sizes the first page's POSTs as a part's time would,
        so a fast Google does not get a first page of small POSTs (1.9× the time of the
        others at 10,000 messages, bench/ingest.py)."""
        if not self._timed:
            self._posts.append(_PostTime(answered_s, 0.0, 1))
            self._resize()

    @property
    def parts_per_post(self) -> int:
        """How many gets the next page's POSTs carry."""
        return self._size

    def _resize(self) -> None:
        """Size the next page's POSTs by how fast Google answered this page's (FAST_PART_S).

        A page whose POSTs waited longer for the quota than for Google was held to the
        per-user rate: it keeps small POSTs, whose charges spend the rate smoothly (large
        ones came out at 0.94–0.95 of the ceiling, small at 0.99, bench quota). So does a
        page of which parts failed: Google refusing a user's concurrent calls answers fast,
        and one large POST can hold more parts than the user may have in flight.
        """
        if self._posts:
            per_part = statistics.median(p.answered_s / p.parts for p in self._posts)
            held = sum(p.held_s for p in self._posts)
            fast = (not self._failed and per_part < self._fast_part_s
                    and held < sum(p.answered_s for p in self._posts))
            self._size = min(BATCH_SIZE, self._max_in_flight) if fast else self._slow_size
        self._posts.clear()
        self._failed = False

    def _delay(self, round_: int, failed: Iterable[GoogleError]) -> float:
        """Google's Retry-After when a part sent one, else exponential with equal jitter."""
        asked = [float(e.retry_after) for e in failed
                 if isinstance(e, TemporaryError) and e.retry_after]
        if asked:
            return max(asked)
        step = min(self._retry_base_s * 2.0 ** round_, PART_RETRY_CAP_S)
        return step / 2 + random.uniform(0, step / 2)

    async def fetch(self, ids: Sequence[str]) -> FetchedMessages:
        """Every id's message (None when gone), retrying failed parts alone; a part that
        fails for good (permission lost, an unknown answer) ends the page at once; parts
        still failing after PART_ROUNDS, or asked to wait long, leave the page to the
        job's retry."""
        try:
            return await self._fetch(ids)
        finally:
            self._resize()

    async def _fetch(self, ids: Sequence[str]) -> FetchedMessages:
        found: FetchedMessages = {}
        pending: Sequence[str] = ids
        for round_ in range(PART_ROUNDS):
            failed = await self._round(pending, found)
            if not failed:
                return {mid: found[mid] for mid in ids}
            lasting = [e for e in failed.values() if not isinstance(e, TemporaryError)]
            if lasting:
                raise lasting[0]
            pending = list(failed)
            self._failed, self._size = True, self._slow_size  # the rounds left go small
            delay = self._delay(round_, failed.values())
            if delay > PART_RETRY_CAP_S or round_ + 1 == PART_ROUNDS:
                break  # the job defers, honouring Retry-After, without holding a worker
            await asyncio.sleep(delay)
        raise next(iter(failed.values()))

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        for http in self._https:
            http.close()


class MailActivityConnector:
    feature: Feature = FEATURES["mail_activity"]

    def __init__(self, service: GmailResource, page_size: int, fetcher: BatchFetcher,
                 budget: Budget = UNMETERED) -> None:
        self._service = service
        self._budget = budget
        self._messages = service.users().messages()
        self._fetcher = fetcher
        self._page_size = min(page_size, MAX_LIST)
        self._ahead: asyncio.Task[ListedPage] | None = None

    async def full(self, page_token: str | None) -> AsyncIterator[Fetched]:
        """Every message, newest first; the checkpoint carries the cursor.

        Our page token is ``<historyId>:<Gmail's page token>``. The cursor is the
        mailbox's own ``historyId`` (getProfile) when the crawl starts, not the newest
        message's: that one may predate changes Gmail has already forgotten. A resumed
        crawl first replays history from it (`_catch_up`), so however long the crawl
        was deferred its cursor stays one Gmail still replays (docs/google.md §9.11).
        """
        history_id, _, google_token = (page_token or "").partition(":")
        if not page_token:
            history_id = await self._current_history_id()
        elif history_id:
            async for caught_up in self._catch_up(history_id, google_token):
                history_id = (caught_up.next_page_token or "").partition(":")[0] or history_id
                yield caught_up
        ahead: asyncio.Task[ListedPage] | None = self._read_ahead(google_token)
        try:
            while ahead is not None:
                ids, fetched, google_token = await ahead
                # The next page is listed and fetched while the caller stores this one,
                # so the per-user quota is not left idle for the list call and the write.
                ahead = self._read_ahead(google_token) if google_token else None
                history_id = history_id or _newest_history_id(ids, fetched)
                checkpoint = f"{history_id}:{google_token}" if google_token else None
                yield Fetched(to_page(fetched), checkpoint,
                              None if google_token else history_id or None, 1 + len(ids))
        finally:
            await _cancel(ahead)

    def _read_ahead(self, google_token: str) -> asyncio.Task[ListedPage]:
        """Start the page at `google_token`; `close` stops it if the crawl is abandoned."""
        self._ahead = asyncio.get_running_loop().create_task(self._listed_page(google_token))
        return self._ahead

    async def _listed_page(self, google_token: str) -> ListedPage:
        """One page of the listing and its messages → (ids, messages, next page's token)."""
        params: dict[str, Any] = {"userId": "me", "maxResults": self._page_size}
        if google_token:
            params["pageToken"] = google_token
        started = time.monotonic()
        body = await execute(self._messages.list(**params).execute, quota=self._budget)
        self._fetcher.seed(time.monotonic() - started)  # a quota wait counts: slow, safe
        ids = [m["id"] for m in body.get("messages") or ()]
        return ids, await self._fetcher.fetch(ids), str(body.get("nextPageToken") or "")

    async def _current_history_id(self) -> str:
        body = await execute(self._service.users().getProfile(userId="me").execute,
                             quota=self._budget)
        history_id = body.get("historyId")
        if not isinstance(history_id, str | int) or not str(history_id):
            raise UnknownGoogleError("getProfile without historyId")
        return str(history_id)

    async def _catch_up(self, cursor: str, google_token: str) -> AsyncIterator[Fetched]:
        """What changed since a paused crawl's cursor, checkpointed at the crawl's place.

        Gmail forgot the cursor (404) when the pause outlasted its history: what changed
        meanwhile is unknown, so the crawl must start again — a refused page token.
        """
        try:
            async for fetched in self.incremental(cursor):
                moved = fetched.next_cursor or cursor
                yield Fetched(fetched.page, f"{moved}:{google_token}", None, fetched.api_calls)
        except CursorExpiredError as exc:
            raise PageTokenRefusedError(exc.detail, status=exc.status) from None

    async def incremental(self, cursor: str) -> AsyncIterator[Fetched]:
        """history.list from `cursor`; a 404 there means the cursor is too old."""
        page_token: str | None = None
        while True:
            body = await self._history_page(cursor, page_token)
            ops = history_ops(body.get("history") or ())
            fetched = await self._fetcher.fetch([mid for mid, get in ops.items() if get])
            page_token = body.get("nextPageToken")
            yield Fetched(to_page(fetched, [mid for mid, get in ops.items() if not get]),
                          page_token, None if page_token else body.get("historyId"),
                          1 + len(fetched))
            if not page_token:
                return

    async def _history_page(self, cursor: str, page_token: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"userId": "me", "startHistoryId": cursor,
                                  "historyTypes": HISTORY_TYPES, "maxResults": self._page_size}
        if page_token:
            params["pageToken"] = page_token
        try:
            return await execute(self._service.users().history().list(**params).execute,
                                 quota=self._budget)
        except UnknownGoogleError as exc:
            if exc.status == 404:  # "out of date startHistoryId" (history.list reference)
                raise CursorExpiredError(exc.detail, status=404) from None
            raise

    def close(self) -> None:
        if self._ahead is not None:  # a crawl abandoned mid-way: stop its read-ahead
            self._ahead.cancel()
        self._fetcher.close()
        self._service.close()
