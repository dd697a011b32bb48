"""Every app request about an account names its user, and another user's id reads nothing.

The app's bearer token may ask about any account, so a bug in the main app (a wrong id in a
URL, a cache keyed by the wrong session) could show one user another's data. Each request
about an account or an erasure says whose it is (`?user_id=`); a wrong one is answered
byte for byte as an unknown id would be, and changes nothing.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select
from structlog.testing import capture_logs

from gwsync.emulator.seed import seed_demo_user
from gwsync.storage.models import AccessLog, Account, Erasure
from gwsync.tasks.deps import Deps
from tests.conftest import ADMIN, Emulator
from tests.helpers import USER, connect

Api: TypeAlias = "TestClient[web.Request, web.Application]"
MISSING = "00000000-0000-0000-0000-000000000000"
INTRUDER = "user-43"

#: Every /v1 route about one account, with what a well-formed request to it sends.
ACCOUNT_ROUTES = [
    ("GET", "/v1/accounts/{}", {}),
    ("POST", "/v1/accounts/{}/sync", {}),
    ("GET", "/v1/accounts/{}/records", {"use": "feature:contacts"}),
    ("GET", "/v1/accounts/{}/access-log", {}),
    ("DELETE", "/v1/accounts/{}", {}),
]
ROUTE_IDS = [f"{method} {path}" for method, path, _ in ACCOUNT_ROUTES]


async def _answer(api: Api, method: str, path: str,
                  params: dict[str, str]) -> tuple[int, str | None, bytes]:
    """Everything a caller can tell apart: status, content type and the body's bytes."""
    resp = await api.request(method, path, params=params, json={})
    return resp.status, resp.content_type, await resp.read()


async def _state(deps: Deps) -> tuple[Any, ...]:
    """What a request could change: accounts' status, erasures, access-log entries."""
    async with deps.sessions() as session:
        statuses = tuple(await session.scalars(select(Account.status).order_by(Account.id)))
        counts = [await session.scalar(select(func.count()).select_from(model))
                  for model in (Erasure, AccessLog)]
    return statuses, *counts


@pytest.fixture
async def account_id(api: Api, emulator: Emulator, run_worker: Any) -> str:
    """USER's account, synced, so each route has something of theirs to leak."""
    account = await connect(api, seed_demo_user(emulator.state, 3).refresh_token, user_id=USER)
    await run_worker()
    return account


@pytest.mark.parametrize(("method", "path", "params"), ACCOUNT_ROUTES, ids=ROUTE_IDS)
async def test_another_users_id_is_answered_as_an_unknown_account(
    api: Api, deps: Deps, account_id: str, method: str, path: str,
    params: dict[str, str],
) -> None:
    """Another user's id on USER's account gets, byte for byte, an unknown account's answer,
    and changes nothing."""
    before = await _state(deps)
    wrong = await _answer(api, method, path.format(account_id), {"user_id": INTRUDER, **params})
    unknown = await _answer(api, method, path.format(MISSING), {"user_id": INTRUDER, **params})
    assert wrong == unknown
    assert wrong[0] == 404 and b'"unknown_account"' in wrong[2]
    assert await _state(deps) == before
    owner = await _answer(api, method, path.format(account_id), {"user_id": USER, **params})
    assert owner[0] in (200, 202), owner


@pytest.mark.parametrize(("method", "path", "params"), ACCOUNT_ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("user_id", [None, ""], ids=["absent", "empty"])
async def test_a_request_naming_no_user_is_400_missing_user_id(
    api: Api, deps: Deps, account_id: str, method: str, path: str,
    params: dict[str, str], user_id: str | None,
) -> None:
    """Without `user_id` a route about an account is 400 missing_user_id, known id or not."""
    before = await _state(deps)
    given = params if user_id is None else {"user_id": user_id, **params}
    for target in (account_id, MISSING):
        status, _, body = await _answer(api, method, path.format(target), given)
        assert (status, b'"missing_user_id"' in body) == (400, True), body
    assert await _state(deps) == before


async def test_a_mismatch_is_logged_by_account_id_never_by_user(
    api: Api, account_id: str,
) -> None:
    """A wrong user is a `user_mismatch` warning naming the account, not either user."""
    with capture_logs() as events:
        await api.get(f"/v1/accounts/{account_id}", params={"user_id": INTRUDER})
    [mismatch] = [e for e in events if e["event"] == "user_mismatch"]
    assert mismatch == {"event": "user_mismatch", "log_level": "warning",
                        "account_id": account_id}
    assert not [e for e in events if INTRUDER in repr(e) or USER in repr(e)]


async def test_the_owner_still_finds_an_erased_account(
    api: Api, account_id: str, run_worker: Any,
) -> None:
    """An erased account keeps only its user's hash, and that is enough to answer its owner
    (and only its owner)."""
    resp = await api.delete(f"/v1/accounts/{account_id}", params={"user_id": USER})
    assert resp.status == 202
    await run_worker()
    owner = await api.get(f"/v1/accounts/{account_id}", params={"user_id": USER})
    assert (owner.status, (await owner.json())["status"]) == (200, "erased")
    other = await api.get(f"/v1/accounts/{account_id}", params={"user_id": INTRUDER})
    assert other.status == 404


async def test_an_erasure_receipt_is_only_for_the_user_it_erased(
    api: Api, account_id: str,
) -> None:
    """`GET /v1/erasures/{id}` answers another user exactly as an unknown erasure, and a
    request naming no user is 400 missing_user_id."""
    resp = await api.delete(f"/v1/accounts/{account_id}", params={"user_id": USER})
    erasure = f"/v1/erasures/{(await resp.json())['erasure_id']}"
    assert (await api.get(erasure, params={"user_id": USER})).status == 200
    wrong = await _answer(api, "GET", erasure, {"user_id": INTRUDER})
    unknown = await _answer(api, "GET", f"/v1/erasures/{MISSING}", {"user_id": INTRUDER})
    assert wrong == unknown and wrong[0] == 404 and b'"unknown_erasure"' in wrong[2]
    for path in (erasure, f"/v1/erasures/{MISSING}"):
        missing = await api.get(path)
        assert (missing.status, (await missing.json())["error"]) == (400, "missing_user_id")


async def test_a_user_erasure_receipt_answers_the_erased_user(
    api: Api, account_id: str,
) -> None:
    """The receipt of `POST /v1/users/{id}/erasure` is that user's, even with no account."""
    for user_id in (USER, "never-connected"):
        resp = await api.post(f"/v1/users/{user_id}/erasure")
        erasure = f"/v1/erasures/{(await resp.json())['erasure_id']}"
        assert (await api.get(erasure, params={"user_id": user_id})).status == 200
        assert (await api.get(erasure, params={"user_id": INTRUDER})).status == 404


@pytest.mark.parametrize(("user_id", "code"), [
    ("u" * 201, "invalid_user_id"), ("user\x00-42", "invalid_user_id"),
    ("user\n42", "invalid_user_id"),
])
async def test_a_malformed_user_id_is_400(
    api: Api, account_id: str, user_id: str, code: str,
) -> None:
    """A user id no account could have (too long, control characters) is a 400."""
    resp = await api.get(f"/v1/accounts/{account_id}", params={"user_id": user_id})
    assert (resp.status, (await resp.json())["error"]) == (400, code)


async def test_user_id_given_twice_is_refused(api: Api, account_id: str) -> None:
    """Two user ids name nobody: a 400, never the first or the last one."""
    resp = await api.get(f"/v1/accounts/{account_id}?user_id={INTRUDER}&user_id={USER}")
    assert (resp.status, (await resp.json())["error"]) == (400, "repeated_parameter")


async def test_staff_routes_need_no_user_id(api: Api, account_id: str) -> None:
    """Staff act under the admin token for a documented reason, not on a user's behalf."""
    resp = await api.post(f"/admin/accounts/{account_id}/access", headers=ADMIN, json={
        "use": "aggregate_ops", "operator": "ops@example.com",
        "justification": "capacity planning for the contacts feature"})
    assert resp.status == 200, await resp.text()
