"""`GET /v1/erasures/{id}`: an erasure's state and its receipt, which names no person."""

from __future__ import annotations

from aiohttp import web

from gwsync.core import logs
from gwsync.domain.api import ErasureAnswer
from gwsync.storage.models import Erasure
from gwsync.storage.purge import receipt
from gwsync.web.answers import answer
from gwsync.web.http import HttpError, deps_of
from gwsync.web.ownership import claimed_subject, legacy_subject, owned

log = logs.get("gwsync.api")


async def erasure(request: web.Request) -> web.Response:
    """The erasure, to the app naming the user it erased (`?user_id=`); to anyone else,
    exactly the answer an unknown erasure id gets."""
    claimed = claimed_subject(request)
    async with deps_of(request).sessions() as session:
        found = await session.get(Erasure, request.match_info["erasure_id"])
    is_owner = owned(claimed, found.subject_hash if found else None, legacy_subject(request))
    if found is None or not is_owner:
        if found is not None:
            log.warning("user_mismatch", erasure_id=found.id)
        raise HttpError(404, "unknown_erasure", "no erasure has this id")
    return answer(ErasureAnswer.model_validate({"status": found.state,
                                                "receipt": receipt(found)}))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/erasures/{erasure_id}", erasure)
