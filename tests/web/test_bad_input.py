"""Bad input is a 4xx, always: a JSON `error`, and nothing changed.

First the requests a generated battery once answered with 500 (issue 11, item 8), one
regression test each; then property-based tests that throw arbitrary input at every
route of the web process and check the answer and the state after it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeAlias
from urllib.parse import quote

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, SecretStr
from sqlalchemy import func, select
from structlog.testing import capture_logs
from yarl import URL

from gwsync.core.settings import Settings
from gwsync.domain import features
from gwsync.storage.models import (
    Account,
    Erasure,
    Record,
    SecurityEvent,
    SyncState,
    WatchChannel,
)
from gwsync.storage.records import BadCursorError
from gwsync.tasks.deps import Deps
from gwsync.web.http import errors
from gwsync.web.parse import Token, json_depth, parse_form
from tests.conftest import ADMIN_TOKEN

Api: TypeAlias = "TestClient[web.Request, web.Application]"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SUBSCRIPTION = "projects/demo/subscriptions/gwsync-push"
PUSH_TOKEN = "push-secret-for-bad-input-tests"
GMAIL = f"/webhooks/google/gmail?token={PUSH_TOKEN}"
REDIRECT = "https://app.example.com/oauth/done"
CONTACTS_SCOPE = "https://www.googleapis.com/auth/contacts.readonly"
MARKER = "personal-9f3c"  # inside generated values: must never reach a log line
WHY = "abuse report #4711: checking reported contact spam"
OWNER = "user-bad-input"  # the user of the `account_id` fixture's account
MINE = {"user_id": OWNER}  # what a request about that account names


def deep(depth: int) -> str:
    """A JSON document nested `depth` arrays deep."""
    return "[" * depth + "]" * depth


@pytest.fixture
async def account_id(api: Api, settings: Settings) -> str:
    """One connected account (its first syncs queued, not run), with Gmail push set up."""
    settings.gmail_push_subscription = SUBSCRIPTION
    settings.push_token = SecretStr(PUSH_TOKEN)
    resp = await api.post("/v1/accounts", json={
        "user_id": OWNER, "refresh_token": "1//not-checked",
        "granted_scopes": [CONTACTS_SCOPE]})
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["account_id"])


async def snapshot(deps: Deps) -> tuple[Any, ...]:
    """What a refused request must leave as it was: every table a request can write but
    the access log (a refused read is audited there by design), and the Redis keys."""
    async with deps.sessions() as session:
        counts = [await session.scalar(select(func.count()).select_from(model)) for model in
                  (Account, Record, Erasure, SecurityEvent, SyncState, WatchChannel)]
        accounts = (await session.execute(select(
            Account.id, Account.status, Account.generation, Account.granted_scopes,
            Account.updated_at).order_by(Account.id))).all()
    redis = deps.queue.redis
    keys = sorted([k async for k in redis.scan_iter(match=f"*{deps.settings.redis_prefix}*")])
    return (*counts, accounts, keys, await redis.zcard(deps.queue.queue_name))


async def assert_refused(resp: ClientResponse, status: int | None = None,
                         error: str | None = None) -> dict[str, Any]:
    """A 4xx (never a 5xx) whose body is JSON naming a machine-readable `error`."""
    text = await resp.text()
    assert 400 <= resp.status < 500, (resp.status, text[:300])
    assert status is None or resp.status == status, (resp.status, text[:300])
    body = json.loads(text)
    assert isinstance(body, dict) and isinstance(body.get("error"), str), text[:300]
    assert error is None or body["error"] == error, text[:300]
    return body


# -- The four measured 500s ------------------------------------------------------------------


async def test_json_nested_a_thousand_deep_is_400_on_the_api_and_the_gmail_push(
    api: Api, deps: Deps, account_id: str
) -> None:
    """A body nested ~1,000 deep is refused as too deep, on the API and the Gmail push."""
    before = await snapshot(deps)
    for path, body in (("/v1/accounts", deep(1000)),
                       (f"/v1/accounts/{account_id}/sync", json.dumps({"features": [
                           json.loads(deep(900))]})),
                       (GMAIL, deep(1000))):
        resp = await api.post(path, data=body, headers={"Content-Type": "application/json"},
                              params=MINE if "/v1/accounts/" in path else None)
        await assert_refused(resp, 400, "json_too_deep")
    inner = base64.b64encode(deep(1000).encode()).decode()  # the message's data, nested
    resp = await api.post(GMAIL, json={"message": {"data": inner}, "subscription": SUBSCRIPTION})
    await assert_refused(resp, 400, "bad_pubsub_body")
    assert await snapshot(deps) == before


@pytest.mark.parametrize("cursor", [str(2**63), str(2**64), "9" * 30])
async def test_cursors_of_two_to_the_63_or_more_are_400(
    api: Api, deps: Deps, account_id: str, cursor: str
) -> None:
    """A cursor no 64-bit row id can equal is refused before it reaches the database."""
    before = await snapshot(deps)
    resp = await api.get(f"/v1/accounts/{account_id}/records",
                         params={**MINE, "use": "feature:contacts", "cursor": cursor})
    await assert_refused(resp, 400, "bad_cursor")
    resp = await api.get(f"/v1/accounts/{account_id}/access-log",
                         params={**MINE, "cursor": cursor})
    await assert_refused(resp, 400, "bad_cursor")
    resp = await api.post(f"/admin/accounts/{account_id}/access", headers=ADMIN, json={
        "use": "security", "justification": "abuse report #1: checking", "operator": "al",
        "cursor": cursor})
    await assert_refused(resp, 400, "bad_cursor")
    assert await snapshot(deps) == before


@pytest.mark.parametrize("digits", ["²", "١٢", "９"])
async def test_unicode_digits_are_not_numbers(
    api: Api, deps: Deps, account_id: str, digits: str
) -> None:
    """Digits `str.isdigit()` accepts and `int()` refuses (²) are bad input, not a crash."""
    before = await snapshot(deps)
    records = f"/v1/accounts/{account_id}/records"
    resp = await api.get(records, params={**MINE, "use": "feature:contacts", "limit": digits})
    await assert_refused(resp, 400, "invalid_limit")
    resp = await api.get(records, params={**MINE, "use": "feature:contacts", "cursor": digits})
    await assert_refused(resp, 400, "bad_cursor")
    resp = await api.get(f"/v1/accounts/{account_id}/access-log",
                         params={**MINE, "cursor": digits})
    await assert_refused(resp, 400, "bad_cursor")
    assert await snapshot(deps) == before


@pytest.mark.parametrize("uri", ["http://[::1", "https://[::1/x", "http://a]b/"])
async def test_a_redirect_uri_that_does_not_parse_is_400(
    api: Api, deps: Deps, uri: str
) -> None:
    """`redirect_uri=http://[::1` is an invalid redirect URI, not an internal error."""
    before = await snapshot(deps)
    resp = await api.get("/v1/oauth/start", params={
        "user_id": "u", "features": "contacts", "redirect_uri": uri})
    await assert_refused(resp, 400, "invalid_redirect_uri")
    assert await snapshot(deps) == before



async def test_free_text_is_capped_a_megabyte_of_scopes_is_refused(
    api: Api, deps: Deps
) -> None:
    """granted_scopes of 1 MB is 413 (the body cap), and more than 64 scopes is 400."""
    before = await snapshot(deps)
    body = {"user_id": "u", "refresh_token": "1//t", "granted_scopes": "s" * 1_000_000}
    await assert_refused(await api.post("/v1/accounts", json=body), 413, "body_too_large")
    for scopes in (" ".join(f"s{i}" for i in range(65)), [f"s{i}" for i in range(65)],
                   "s" * 300):
        resp = await api.post("/v1/accounts", json={**body, "granted_scopes": scopes})
        await assert_refused(resp, 400, "invalid_body")
    assert await snapshot(deps) == before


async def test_refusals_are_logged_by_code_never_with_the_input(
    api: Api, deps: Deps, account_id: str
) -> None:
    """A refused request is logged by route, status and error code; its values never are."""
    secret = MARKER * 30
    with capture_logs() as events:
        await api.post("/v1/accounts", json={"user_id": secret, "refresh_token": "1//t"})
        await api.get(f"/v1/accounts/{account_id}/records", params={**MINE, "use": secret})
        await api.get(f"/v1/accounts/{account_id}", params={"user_id": secret})
        await api.get(f"/v1/accounts/{account_id}", params={"user_id": MARKER})
        await api.get("/v1/oauth/start", params={"user_id": "u", "features": "contacts",
                                                 "redirect_uri": REDIRECT, "login_hint": secret})
        await api.post(GMAIL, data=_pubsub(json.dumps({"emailAddress": secret,
                                                       "historyId": 1}).encode()))
        await api.post(f"/admin/accounts/{account_id}/access", headers=ADMIN, json={
            "use": "security", "justification": WHY, "operator": secret})
        await api.post("/webhooks/google/risc", data=secret.encode())
        await api.get(f"/v1/accounts/{MARKER}%00", params=MINE)
    assert MARKER not in repr(events)
    refused = {(e["route"], e["status"], e["error"]) for e in events if e["event"] == "request"}
    assert {("/v1/accounts", 400, "invalid_body"),
            ("/v1/accounts/{account_id}/records", 400, "missing_use"),
            ("/v1/accounts/{account_id}", 400, "invalid_user_id"),
            ("/v1/accounts/{account_id}", 404, "unknown_account"),
            ("/v1/oauth/start", 400, "invalid_login_hint"),
            ("/admin/accounts/{account_id}/access", 400, "invalid_body"),
            ("/v1/accounts/{account_id}", 404, "not_found")} <= refused



@pytest.mark.parametrize("cursor", [str(2**63), "9" * 40, "²", "٣", "-1", " 1"])
async def test_the_record_store_refuses_cursors_no_row_id_can_be(
    deps: Deps, account_id: str, cursor: str
) -> None:
    """Defence in depth: the store itself refuses a cursor that is not a 64-bit row id."""
    with pytest.raises(BadCursorError):
        await deps.store.read(account_id, use="feature:contacts", actor="test", cursor=cursor)


# -- Arbitrary input at every route -----------------------------------------------------------

Check = Callable[[Any], Coroutine[Any, Any, None]]


async def explore(strategy: st.SearchStrategy[Any], check: Check, examples: int = 30,
                  always: tuple[Any, ...] = ()) -> None:
    """Run `check` on the inputs in `always`, then on `examples` inputs drawn from
    `strategy`, deterministically (a fixed seed, no example database).

    Hypothesis drives a plain function, so it runs in a thread while the event loop (with
    the app and its database) keeps running here; each example is scheduled onto it."""
    loop = asyncio.get_running_loop()

    def run(value: Any) -> None:
        asyncio.run_coroutine_threadsafe(check(value), loop).result(timeout=60)
    for value in reversed(always):
        run = example(value)(run)
    test = settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck))(given(strategy)(run))
    await asyncio.to_thread(test)


#: Refusals that mean a request about the fixture's account never reached the check under
#: test (it did not name the account's user): a test sending those would prove nothing.
NOT_REACHED = frozenset({"missing_user_id", "unknown_account"})


def refusal_check(deps: Deps, send: Callable[[Any], Awaitable[ClientResponse]],
                  never: frozenset[str] = frozenset(),
                  only: frozenset[str] | None = None) -> Check:
    """Each input is refused with a JSON `error` (none of `never`; one of `only`, if
    given), and leaves every table and key as it was."""
    async def check(example: Any) -> None:
        before = await snapshot(deps)
        body = await assert_refused(await send(example))
        assert body["error"] not in never, (body, example)
        assert only is None or body["error"] in only, (body, example)
        assert await snapshot(deps) == before, example
    return check


# Values that trip naive parsers: other scripts' digits, numbers past 64 bits, control
# characters, very long strings.
_TEXT = st.text(st.characters(codec="utf-8"), max_size=20)
NON_ASCII_DIGITS = st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=4)\
    .filter(lambda s: not s.isascii())
HUGE = st.one_of(st.integers(2**63, 2**80), st.integers(max_value=-1)).map(str)
CONTROL = st.builds(lambda a, c, b: f"{a}{c}{b}", _TEXT, st.characters(categories=["Cc"]), _TEXT)
NASTY = st.one_of(
    _TEXT, NON_ASCII_DIGITS, HUGE, CONTROL,
    st.sampled_from(["", " ", "²", "-1", "1e3", "0x10", "1_000", " 7", "\x00", "%00", "null",
                     "http://[::1", f"{MARKER}@example.com", "9" * 5000]),
    st.integers(201, 3000).map(lambda n: MARKER * (n // len(MARKER) + 1)),
)
NON_STRINGS = st.one_of(st.integers(), st.integers(2**63, 2**200), st.booleans(),
                        st.floats(allow_nan=False, allow_infinity=False),
                        st.lists(st.integers(), max_size=2), st.just({}))
JSON = st.recursive(
    st.one_of(st.none(), NON_STRINGS, NASTY),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8)
RAW_BODIES = st.one_of(
    st.binary(max_size=100),
    st.integers(33, 5000).map(lambda n: deep(n).encode()),
    st.integers(33, 2000).map(lambda n: ('{"a":' * n + "1" + "}" * n).encode()),
    st.sampled_from([b"NaN", b"Infinity", b"-1e999", b'"\\ud800"', b"\xff\xfe", b"{", b"[1,]",
                     b"1" * 5000, b"{}" * 3, b"x" * (70 * 1024)]),
    JSON.map(lambda value: json.dumps(value).encode()),
)


def bad_text(max_length: int, *, optional: bool = False) -> st.SearchStrategy[Any]:
    """Values a text field of at most `max_length` characters must refuse."""
    return st.one_of(
        NON_STRINGS, CONTROL, st.sampled_from(["", "   ", "\t"]),
        st.just(MARKER * (max_length // len(MARKER) + 1)),
        *([] if optional else [st.none()]))


BAD_CURSOR = st.one_of(NON_ASCII_DIGITS, HUGE, CONTROL, st.sampled_from(
    ["²", "-1", "1.5", "1e3", "0x1", " 1", "1 ", "9" * 20, str(2**63), "cursor"]))
BAD_LIMIT = st.one_of(NON_ASCII_DIGITS, HUGE, st.sampled_from(
    ["0", "1001", "-1", "1.0", "1e2", "²", "١٠", " 5", "five", str(2**64)]))


@st.composite
def spoiled(draw: st.DrawFn, good: dict[str, Any], bad: dict[str, st.SearchStrategy[Any]]
            ) -> dict[str, Any]:
    """`good` with at least one field (or an unexpected one) replaced by a bad value."""
    spoiled = dict(good)
    for name in draw(st.sets(st.sampled_from(sorted(bad)), min_size=1, max_size=3)):
        spoiled[name] = draw(bad[name])
    return spoiled


def as_query(params: dict[str, Any]) -> dict[str, str]:
    """Query parameters as strings (a JSON-ish value in a query is its text)."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()
            if v is not None}


RAW_QUERIES = st.lists(st.one_of(
    st.sampled_from(["use", "feature", "kind", "cursor", "limit", "user_id", "features",
                     "redirect_uri", "login_hint", "code", "state", "error", "=", "&", "%",
                     "%ff", "%00", "%ed%a0%80", "%C2%B2", "+", "[", "]"]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e, exclude_characters="#"),
            max_size=8)), max_size=12).map("".join)


def raw_query(path: str, raw: str) -> URL:
    """`path?raw` with the query exactly as generated (percent sequences not re-encoded)."""
    return URL(f"{path}?{raw}", encoded=True)


async def test_connect_refuses_every_malformed_body(api: Api, deps: Deps,
                                                    account_id: str) -> None:
    """POST /v1/accounts: raw bytes, arbitrary JSON, or a body with one bad field is a 4xx."""
    good = {"user_id": "u-1", "refresh_token": "1//token", "granted_scopes": [CONTACTS_SCOPE]}
    bodies = st.one_of(RAW_BODIES, JSON.map(lambda v: json.dumps(v).encode()),
                       spoiled(good, {
                           "user_id": bad_text(200), "refresh_token": st.one_of(
                               bad_text(4096), st.sampled_from(["a b", "tök", "x\x00"])),
                           "granted_scopes": st.one_of(
                               NON_STRINGS.filter(lambda v: v != []),
                               st.just(" ".join(f"s{i}" for i in range(65))),
                               st.just([f"s{i}" for i in range(65)]),
                               st.just("s" * 300), st.lists(NON_STRINGS, min_size=1),
                               st.just(MARKER * 6000)),
                           "google_sub": bad_text(255, optional=True),
                           "unexpected": JSON}).map(lambda b: json.dumps(b).encode()))
    await explore(bodies, refusal_check(deps, lambda body: api.post(
        "/v1/accounts", data=body, headers={"Content-Type": "application/json"})), 35,
        always=(deep(1000).encode(), json.dumps({"user_id": "u", "refresh_token": "t",
                                                 "granted_scopes": "s " * 100}).encode()))


def _not_a_sync_request(body: bytes) -> bool:
    """False for the bodies that are a valid sync request (empty, or only `features`)."""
    try:
        value = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        return True
    return not (isinstance(value, dict) and set(value) <= {"features"})


async def test_sync_refuses_every_malformed_body(api: Api, deps: Deps,
                                                 account_id: str) -> None:
    """POST /v1/accounts/{id}/sync: a body that is not `{"features": [known names]}` is a 4xx."""
    bad_features = st.one_of(
        NON_STRINGS.filter(lambda v: v != []), st.lists(bad_text(40), min_size=1, max_size=3),
        st.lists(_TEXT.filter(lambda n: n.strip() not in features.FEATURES), min_size=1),
        st.just(["contacts"] * 21))
    bodies = st.one_of(RAW_BODIES.filter(_not_a_sync_request),
                       st.builds(lambda f: json.dumps({"features": f}).encode(), bad_features))
    await explore(bodies, refusal_check(deps, lambda body: api.post(
        f"/v1/accounts/{account_id}/sync", data=body, params=MINE,
        headers={"Content-Type": "application/json"}), NOT_REACHED), 40,
        always=(deep(1000).encode(),))


async def test_records_refuses_every_malformed_query(api: Api, deps: Deps,
                                                     account_id: str) -> None:
    """GET .../records: a bad use, feature, kind, cursor or limit, or a raw query, is a 4xx."""
    path = f"/v1/accounts/{account_id}/records"
    good = {"use": "feature:contacts"}
    queries = spoiled(good, {
        "use": bad_text(80).filter(lambda v: v is None or isinstance(v, str)),
        "feature": st.one_of(bad_text(40, optional=True), _TEXT.filter(
            lambda n: n.strip() not in features.FEATURES)).filter(lambda v: v != ""),
        "kind": st.one_of(CONTROL, st.just("k" * 41)), "cursor": BAD_CURSOR,
        "limit": BAD_LIMIT})

    async def send(query: Any) -> ClientResponse:
        if isinstance(query, str):
            return await api.get(raw_query(path, f"user_id={OWNER}&{query}"))
        return await api.get(path, params={**MINE, **as_query(query)})
    repeated = st.sampled_from(["use=feature:contacts&use=feature:contacts",
                                "use=feature:contacts&limit=1&limit=2"])
    await explore(st.one_of(queries, RAW_QUERIES.filter(lambda q: "use=" not in q), repeated),
                  refusal_check(deps, send, NOT_REACHED), 35, always=(
                      {**good, "limit": "²"}, {**good, "cursor": "²"},
                      {**good, "cursor": str(2**63)}))


async def test_access_log_refuses_every_malformed_cursor(api: Api, deps: Deps,
                                                         account_id: str) -> None:
    """GET .../access-log: a cursor that is not a row id (or is given twice) is a 4xx."""
    path = f"/v1/accounts/{account_id}/access-log"

    async def send(cursor: Any) -> ClientResponse:
        if isinstance(cursor, tuple):
            return await api.get(raw_query(
                path, f"user_id={OWNER}&cursor={cursor[0]}&cursor={cursor[1]}"))
        return await api.get(path, params={**MINE, "cursor": cursor})
    cursors = st.one_of(BAD_CURSOR.filter(lambda c: c.strip() != ""),
                        st.tuples(st.just("1"), st.just("2")))
    await explore(cursors, refusal_check(deps, send, NOT_REACHED), 30,
                  always=("²", str(2**63)))


async def test_oauth_start_refuses_every_malformed_query(api: Api, deps: Deps) -> None:
    """GET /v1/oauth/start: a bad user_id, features, redirect_uri or login_hint is a 4xx."""
    good = {"user_id": "u-1", "features": "contacts", "redirect_uri": REDIRECT}
    queries = spoiled(good, {
        "user_id": bad_text(200).filter(lambda v: v is None or isinstance(v, str)),
        "features": st.one_of(st.sampled_from(["", ",", " , ,", "contacts,telepathy",
                                               ",".join(["contacts", *"abcdefghijklmnopqrst"])]),
                              _TEXT.filter(lambda n: not {x.strip() for x in n.split(",")}
                                           <= set(features.FEATURES))),
        "redirect_uri": st.one_of(
            NASTY.filter(lambda u: not u.startswith(("http://", "https://")) or "[" in u),
            st.sampled_from(["http://[::1", "https://[::1/x", "http://a]b/", "http://:80/",
                             "https://app.example.com/#frag", "http:///x", "ftp://a/",
                             "javascript:alert(1)", "/relative", "http://a:99999/",
                             "http://a:-1/", "http://a:x/", "https://" + "a" * 2001])),
        "login_hint": st.one_of(CONTROL, st.just("h" * 321))})

    async def send(query: Any) -> ClientResponse:
        if isinstance(query, str):
            return await api.get(raw_query("/v1/oauth/start", query))
        return await api.get("/v1/oauth/start", params=as_query(query))
    raw = RAW_QUERIES.filter(lambda q: "redirect_uri=http" not in q)
    await explore(st.one_of(queries, raw), refusal_check(deps, send), 35,
                  always=({**good, "redirect_uri": "http://[::1"},))


async def test_oauth_callback_refuses_every_forged_query(api: Api, deps: Deps) -> None:
    """GET /v1/oauth/callback: any code, state, error and user not from a flow is a 4xx."""
    params = st.dictionaries(st.sampled_from(["code", "state", "error", "user_id", "x"]),
                             st.one_of(NASTY, BAD_CURSOR, st.sampled_from([
                                 "a.1.b", "a.²." + "b" * 43, "a." + "9" * 30 + ".b", "..",
                                 "a.b.c.d"])), max_size=3).map(lambda q: {"user_id": "u", **q})

    async def send(query: Any) -> ClientResponse:
        if isinstance(query, str):
            return await api.get(raw_query("/v1/oauth/callback", query))
        return await api.get("/v1/oauth/callback", params=query)
    await explore(st.one_of(params, RAW_QUERIES), refusal_check(deps, send), 40,
                  always=({"code": "c", "state": "a.².b", "user_id": "u"},))


async def test_staff_access_refuses_every_malformed_body(api: Api, deps: Deps,
                                                         account_id: str) -> None:
    """POST /admin/accounts/{id}/access: a body with one bad field, or raw bytes, is a 4xx."""
    good = {"use": "security", "justification": WHY, "operator": "alice"}
    bodies = st.one_of(RAW_BODIES, spoiled(good, {
        "use": bad_text(80), "justification": st.one_of(bad_text(2000), st.just("too short")),
        "operator": bad_text(100), "cursor": st.one_of(BAD_CURSOR, st.integers(2**63, 2**70),
                                                       st.integers(max_value=-1)),
        "limit": st.one_of(BAD_LIMIT, st.sampled_from([0, 1001, True, 5.0, 5.5, None, [5]])),
        "feature": st.one_of(bad_text(40, optional=True),
                             _TEXT.filter(lambda n: n.strip() not in features.FEATURES)),
        "kind": st.one_of(CONTROL, st.just("k" * 41), NON_STRINGS),
        "unexpected": JSON}).map(lambda b: json.dumps(b).encode()))
    await explore(bodies, refusal_check(deps, lambda body: api.post(
        f"/admin/accounts/{account_id}/access", data=body,
        headers={**ADMIN, "Content-Type": "application/json"})), 35,
        always=(deep(1000).encode(), json.dumps({**good, "cursor": str(2**63)}).encode()))


def _pubsub(data: bytes, subscription: Any = SUBSCRIPTION) -> bytes:
    return json.dumps({"message": {"data": base64.b64encode(data).decode(), "messageId": "1"},
                       "subscription": subscription}).encode()


async def test_gmail_push_refuses_every_malformed_body(api: Api, deps: Deps,
                                                       account_id: str) -> None:
    """POST /webhooks/google/gmail: a body that is not a Gmail change is a 4xx."""
    change = {"emailAddress": f"{MARKER}@example.com", "historyId": "12"}
    inner = st.one_of(RAW_BODIES, spoiled(change, {
        "emailAddress": st.one_of(bad_text(320), st.sampled_from(["no-at", "a b@c", "@"])),
        "historyId": st.one_of(BAD_CURSOR, st.integers(2**64, 2**70), NON_STRINGS.filter(
            lambda v: not isinstance(v, int) or isinstance(v, bool) or v < 0 or v >= 2**64)),
    }).map(lambda c: json.dumps(c).encode()))
    bodies = st.one_of(RAW_BODIES, inner.map(_pubsub),
                       st.builds(lambda b: json.dumps({"message": b}).encode(), JSON))
    await explore(bodies, refusal_check(deps, lambda body: api.post(
        GMAIL, data=body, headers={"Content-Type": "application/json"})), 35,
        always=(deep(1000).encode(), _pubsub(deep(1000).encode()),
                _pubsub(json.dumps({**change, "historyId": "²"}).encode())))


async def test_calendar_and_drive_pushes_refuse_every_unknown_channel(
    api: Api, deps: Deps, account_id: str
) -> None:
    """POST /webhooks/google/{calendar,drive}: headers naming no stored channel are a 4xx."""
    header = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=60)
    headers = st.fixed_dictionaries({}, optional={
        "X-Goog-Channel-ID": st.one_of(header, st.uuids().map(str)),
        "X-Goog-Channel-Token": header, "X-Goog-Resource-ID": header,
        "X-Goog-Resource-State": header.filter(lambda v: v != "sync"),
        "X-Goog-Message-Number": st.one_of(header, NON_ASCII_DIGITS.map(
            lambda d: d.encode().decode("latin-1")))})
    requests = st.tuples(st.sampled_from(["calendar", "drive"]), headers, RAW_BODIES)
    await explore(requests, refusal_check(deps, lambda r: api.post(
        f"/webhooks/google/{r[0]}", headers=r[1], data=r[2])), 40)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


async def test_risc_refuses_every_malformed_security_event(api: Api, deps: Deps) -> None:
    """POST /webhooks/google/risc: bytes that are not a valid SET are a 400 with an `err`."""
    headers = st.one_of(RAW_BODIES, st.builds(lambda kid: json.dumps(
        {"alg": "RS256", "kid": kid}).encode(), JSON))
    tokens = st.builds(lambda h, p, s: f"{_b64(h)}.{_b64(p)}.{_b64(s)}".encode(),
                       headers, RAW_BODIES, st.binary(max_size=64))
    await explore(st.one_of(RAW_BODIES, tokens), refusal_check(deps, lambda body: api.post(
        "/webhooks/google/risc", data=body,
        headers={"Content-Type": "application/secevent+jwt"})), 40,
        always=(f"{_b64(deep(1000).encode())}.e30.c2ln".encode(),
                f"{_b64(json.dumps({'kid': [1]}).encode())}.e30.c2ln".encode()))


async def test_path_parameters_that_name_nothing_are_a_4xx(api: Api, deps: Deps,
                                                           account_id: str) -> None:
    """Ids in the path that name no account or erasure (NUL, long, unicode) are a 4xx."""
    ids = st.one_of(_TEXT.filter(lambda v: v not in ("", account_id)), CONTROL,
                    st.just("a" * 300), NON_ASCII_DIGITS, st.uuids().map(str))
    routes = st.sampled_from([("GET", "/v1/accounts/{}"), ("DELETE", "/v1/accounts/{}"),
                              ("POST", "/v1/accounts/{}/sync"),
                              ("GET", "/v1/accounts/{}/records?use=feature:contacts"),
                              ("GET", "/v1/accounts/{}/access-log"),
                              ("GET", "/v1/erasures/{}"),
                              ("POST", "/v1/users/{}/erasure")])

    async def send(request: tuple[tuple[str, str], str]) -> ClientResponse:
        (method, template), value = request
        if "/users/" in template:
            value = "\x00" + value  # any other user id is a valid erasure request
        path = template.format(quote(value, safe=""))
        headers = ADMIN if path.startswith("/admin/") else {}
        return await api.request(method, URL(path, encoded=True), headers=headers,
                                 params=None if "/users/" in template else MINE)
    await explore(st.tuples(routes, ids),
                  refusal_check(deps, send, frozenset({"missing_user_id"})), 35,
                  always=((("GET", "/v1/accounts/{}"), "\x00"),))


#: Every route about an account or an erasure, each with a request its owner may make.
OWNED_ROUTES = [("GET", "/v1/accounts/{}", ""), ("DELETE", "/v1/accounts/{}", ""),
                ("POST", "/v1/accounts/{}/sync", ""),
                ("GET", "/v1/accounts/{}/records", "use=feature:contacts"),
                ("GET", "/v1/accounts/{}/access-log", ""), ("GET", "/v1/erasures/{}", "")]
#: What a bad `user_id` may be answered with: none given, malformed, or not the owner.
USER_REFUSALS = frozenset({"missing_user_id", "invalid_user_id", "repeated_parameter",
                           "unknown_account", "unknown_erasure"})


async def test_every_route_about_an_account_refuses_any_user_but_its_own(
    api: Api, deps: Deps, account_id: str
) -> None:
    """A `user_id` that is absent, malformed, repeated or another user's is a 4xx on every
    route about an account or an erasure, and reads or changes nothing."""
    resp = await api.post("/v1/users/erased-user/erasure")  # a receipt of another user
    erasure_id = (await resp.json())["erasure_id"]
    others = st.one_of(
        bad_text(200).map(lambda v: v if v is None else as_query({"v": v})["v"]),
        NASTY, st.text(max_size=30),
        st.sampled_from(["USER-BAD-INPUT", f"{OWNER}\x00", OWNER[:-1], f"{OWNER} x",
                         f"{OWNER}\t", "user-42", "erased-user", "%00", "*"]))
    user_ids = st.one_of(others, st.tuples(st.sampled_from([OWNER, "erased-user"]),
                                           others.filter(lambda v: v is not None)))

    async def send(request: tuple[tuple[str, str, str], Any]) -> ClientResponse:
        (method, template, query), user_id = request
        owner, target = (("erased-user", erasure_id) if "erasures" in template
                         else (OWNER, account_id))
        if isinstance(user_id, tuple):  # named twice: a real user, and anyone
            named = [f"user_id={quote(value, safe='')}" for value in user_id]
        elif user_id is None or user_id.strip(" ") == owner:
            named = []  # the owner is not bad input: name no one instead
        else:
            named = [f"user_id={quote(user_id, safe='')}"]
        raw = "&".join([*named, *([query] if query else [])])
        return await api.request(method, raw_query(template.format(target), raw))
    await explore(st.tuples(st.sampled_from(OWNED_ROUTES), user_ids),
                  refusal_check(deps, send, only=USER_REFUSALS), 60,
                  always=tuple((route, "user-42") for route in OWNED_ROUTES))


class LoginForm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: Token


async def _form_echo(request: web.Request) -> web.Response:
    return web.json_response({"length": len((await parse_form(request, LoginForm)).token)})


async def test_a_browser_form_is_parsed_strictly() -> None:
    """parse_form (for browser forms such as the ops login) refuses a form that is not
    bounded UTF-8 with each known field once, with a JSON `error`."""
    app = web.Application(middlewares=[errors])
    app.router.add_post("/form", _form_echo)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/form", data=b"token=abc", headers=form)
        assert (resp.status, await resp.json()) == (200, {"length": 3})
        for body, headers, status, error in [
            (b"\xff\xfe", form, 400, "malformed_form"),
            (b"token=%ff", form, 400, "malformed_form"),
            (b"token=a&token=b", form, 400, "repeated_parameter"),
            (b"token=a&x=1&y=2", form, 400, "malformed_form"),
            (b"token=a b", form, 400, "invalid_form"),
            (b"token=" + b"a" * 9000, form, 413, "body_too_large"),
            (b"--x\r\nbad", {"Content-Type": "multipart/form-data; boundary=x"}, 415,
             "unsupported_media_type"),
        ]:
            await assert_refused(await client.post("/form", data=body, headers=headers),
                                 status, error)


def _nesting(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_nesting, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_nesting, value), default=0)
    return 0


@settings(max_examples=200, derandomize=True, database=None)
@given(JSON)
def test_json_depth_counts_nesting_as_a_parser_does(value: Any) -> None:
    """The pre-parse depth count agrees with the nesting of the document, strings (with
    brackets, quotes and backslashes in them) included."""
    assert json_depth(json.dumps(value).encode()) == _nesting(value)


async def test_the_depth_check_is_linear_on_quote_and_backslash_runs(
    api: Api, deps: Deps
) -> None:
    """A 64 KB body of `"\\` pairs (which a string regex backtracks on) is answered in
    well under a second."""
    started = time.perf_counter()
    resp = await api.post("/v1/accounts", data=b'"\\' * 32_000,
                          headers={"Content-Type": "application/json"})
    await assert_refused(resp, 400, "malformed_json")
    assert time.perf_counter() - started < 2.0
