"""Webhooks Google calls: Cross-Account Protection security events.

Google expects 202 for a token that validates (whatever we then do with it) and 400 with
an error code for one that does not (RFC 8935). A redelivered event (same `jti`) is
acknowledged and not acted on twice.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from gwsync.connectors import risc
from gwsync.storage import accounts
from gwsync.storage.models import Account, SecurityEvent
from gwsync.tasks import erase
from gwsync.worker import logging, push
from gwsync.worker.deps import Deps
from gwsync.worker.web import deps_of

log = logging.get("gwsync.webhooks")
VERIFIER = web.AppKey("risc_verifier", risc.RiscVerifier)
MAX_SET_BYTES = 64 * 1024


def _set_error(err: str, description: str) -> web.Response:
    return web.json_response({"err": err, "description": description}, status=400)


async def risc_event(request: web.Request) -> web.Response:
    raw = await request.content.read(MAX_SET_BYTES + 1)
    if not raw or len(raw) > MAX_SET_BYTES:
        return _set_error("invalid_request", "empty or oversized body")
    try:
        event = await request.app[VERIFIER].verify(raw.decode("ascii", "strict").strip())
    except UnicodeDecodeError:
        return _set_error("invalid_request", "the body is not a JWT")
    except risc.InvalidSecurityEvent as exc:
        log.warning("risc_rejected", reason=str(exc)[:80])
        return _set_error(exc.err, "the security event token did not validate")
    deps = deps_of(request)
    matched = await _matching_accounts(deps, event)
    if not await _first_delivery(deps, event, len(matched)):
        return web.json_response({"status": "duplicate"}, status=202)
    erasures = await _act(deps, event, matched)
    log.info("risc_accepted", events=sorted(k.rsplit("/", 1)[-1] for k in event.events),
             accounts=len(matched), erasures=len(erasures))
    return web.json_response({"status": "accepted", "erasures": erasures}, status=202)


async def _first_delivery(deps: Deps, event: risc.SecurityEvent, matched: int) -> bool:
    acting = bool(risc.ERASING_EVENTS & set(event.events))
    try:
        async with deps.sessions.begin() as session:
            session.add(SecurityEvent(
                jti_hash=event.jti_hash, event_types=sorted(event.events),
                accounts_matched=matched, outcome="erasure" if acting and matched else "logged"))
    except IntegrityError:
        return False
    return True


def _subject_filter(subject: dict[str, Any]) -> Any:
    kind = subject.get("subject_type")
    if kind == "iss-sub" and isinstance(subject.get("sub"), str):
        return Account.google_sub_hash == accounts.google_sub_hash(subject["sub"])
    token = subject.get("token")
    if kind == "oauth_token" and isinstance(token, str):
        alg = subject.get("token_identifier_alg")
        if alg == "prefix":
            return Account.token_prefix_hash == accounts.prefix_hash(token[:16])
        if alg == "hash_base64_sha512_sha512":
            return Account.token_sha512x2 == token
    return None


async def _matching_accounts(deps: Deps, event: risc.SecurityEvent) -> list[Account]:
    filters = [f for f in (_subject_filter(e.get("subject") or {})
                           for kind, e in event.events.items() if kind in risc.ERASING_EVENTS)
               if f is not None]
    if not filters:
        return []
    async with deps.sessions() as session:
        return list(await session.scalars(select(Account).where(
            or_(*filters), Account.status == accounts.ACTIVE)))


async def _act(deps: Deps, event: risc.SecurityEvent, matched: list[Account]) -> list[str]:
    """Each matched account is erased, named after the event that required it."""
    kind = next(k for k in event.events if k in risc.ERASING_EVENTS) if matched else ""
    trigger = "risc_" + kind.rsplit("/", 1)[-1].replace("-", "_")
    return [await erase.request(deps, [a.id], subject_hash=a.subject_hash, trigger=trigger)
            for a in matched]


def add_routes(app: web.Application, deps: Deps) -> None:
    client_id = deps.settings.google_client_id or ""
    app[VERIFIER] = risc.RiscVerifier(deps.endpoints, (client_id,), deps.http)
    app.router.add_post("/webhooks/google/risc", risc_event)
    push.add_routes(app)
