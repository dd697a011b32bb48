"""Which account a request may see: the one its user owns, or any for staff.

An app request about an account or an erasure names its user (`?user_id=`), and what
it finds is checked against that user's hashed subject (`account_of`, `owned`): the API
token trusts the main app, and this keeps a bug in it from reading another user's data.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from aiohttp import web

from gwsync.storage.accounts import legacy_subject_hash, subject_hash
from gwsync.storage.models import Account
from gwsync.web.http import HttpError, deps_of, is_staff, log
from gwsync.web.parse import QueryModel, Text, parse_query


class UserQuery(QueryModel):
    """`?user_id=` of a request about an account: the user the app believes owns it."""

    REFUSALS = {"user_id": ("invalid_user_id", "user_id must be 1..200 characters without "
                            "control characters")}
    user_id: Annotated[str, Text(200)] | None = None


#: Stands in for the stored subject when nothing was found, so the comparison runs anyway.
_NOBODY = "0" * 64


def claimed_subject(request: web.Request) -> str | None:
    """The hashed subject of the user an app request names (`?user_id=`), or None for staff.

    Defence in depth: the app's bearer token lets it ask about any account, so a bug in
    the app could ask about the wrong one; naming the user makes that an unknown account.
    Parsed before any lookup, so a missing user_id is a 400 whether or not the id exists.
    """
    if is_staff(request):
        return None
    user_id = parse_query(request, UserQuery).user_id
    if user_id is None:
        raise HttpError(400, "missing_user_id", "name the user this request is about "
                        "(?user_id=, the id the account was connected with)")
    return subject_hash(user_id, deps_of(request).keyring)


def legacy_subject(request: web.Request) -> str | None:
    """The claimed subject as stored before keyed pseudonyms (old receipts keep it)."""
    if is_staff(request):
        return None
    user_id = parse_query(request, UserQuery).user_id
    return legacy_subject_hash(user_id) if user_id is not None else None


def owned(claimed: str | None, found: str | None, legacy: str | None = None) -> bool:
    """Whether something found (by its stored subject hash) belongs to the claimed subject
    (or, stored before keyed pseudonyms, to its `legacy` form).

    Staff (no claim) may see anything that exists. The comparison is constant-time and runs
    also when nothing was found, so a mismatch costs what an unknown id costs.
    """
    stored = (found or _NOBODY).encode()
    same = hmac.compare_digest((claimed or "").encode(), stored)
    old = hmac.compare_digest((legacy or "").encode(), stored) and ":" not in stored.decode()
    return found is not None and (claimed is None or same or old)


def _unknown_account() -> HttpError:
    return HttpError(404, "unknown_account", "no account has this id")


async def account_of(request: web.Request) -> Account:
    """The account the path names, as its owner (or staff) may see it.

    An app request about another user's account is answered exactly as an unknown
    account: same status and body, and the log names the account id, never the user.
    """
    claimed = claimed_subject(request)
    async with deps_of(request).sessions() as session:
        account = await session.get(Account, request.match_info["account_id"])
    is_owner = owned(claimed, account.subject_hash if account else None,
                     legacy_subject(request))
    if account is None:
        raise _unknown_account()
    if not is_owner:
        log.warning("user_mismatch", account_id=account.id)
        raise _unknown_account()
    return account

