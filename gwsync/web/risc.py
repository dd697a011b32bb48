"""Webhooks Google calls: Cross-Account Protection security events.

Google expects 202 for a token that validates (whatever we then do with it) and 400 with
an error code for one that does not (RFC 8935); 503 when Google's keys cannot be fetched,
so Google delivers again. A redelivered event (same `jti`) is acknowledged and not acted
on twice; the record of an event and the erasures it begins commit together. A refusal
carries RFC 8935's `err` and `description`, and this API's `error` and `message` with
the same values.

The body is read whole (not its first chunk) and bounded, and must be a compact JWS
whose header is bounded JSON before the verifier sees it: the header is parsed before
any signature check, so it is held to the limits of every other JSON input here rather
than to whatever the JWT library's parser tolerates.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from aiohttp import web
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gwsync.connectors import risc
from gwsync.core import logs
from gwsync.core.keyring import Keyring
from gwsync.domain.api import ErrorBody, WebhookAck
from gwsync.storage import accounts
from gwsync.storage.models import Account, Erasure, SecurityEvent
from gwsync.tasks import erase
from gwsync.tasks.deps import Deps
from gwsync.web import push
from gwsync.web.answers import answer
from gwsync.web.http import HttpError, deps_of
from gwsync.web.parse import parse_json, read_body

log = logs.get("gwsync.webhooks")
VERIFIER = web.AppKey("risc_verifier", risc.RiscVerifier)
MAX_SET_BYTES = 64 * 1024
_COMPACT_JWS = re.compile(r"([A-Za-z0-9_-]+)\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def _set_error(err: str, description: str) -> web.Response:
    return answer(ErrorBody.model_validate({"err": err, "description": description,
                                            "error": err, "message": description}), status=400)


def _token(raw: bytes) -> str | None:
    """The body as a compact JWS whose header is a bounded JSON object, else None."""
    text = raw.strip().decode("ascii", "replace")
    match = _COMPACT_JWS.fullmatch(text)
    if match is None:
        return None
    segment = match.group(1)
    try:
        header = parse_json(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, HttpError):
        return None
    usable = isinstance(header, dict) and isinstance(header.get("kid", ""), str)
    return text if usable else None  # a missing kid is the verifier's `invalid_key`


async def risc_event(request: web.Request) -> web.Response:
    try:
        raw = await read_body(request, MAX_SET_BYTES)
    except HttpError:
        return _set_error("invalid_request", "the body exceeds 64 KiB")
    token = _token(raw)
    if token is None:
        return _set_error("invalid_request", "the body is not a JWT")
    try:
        event = await request.app[VERIFIER].verify(token)
    except risc.InvalidSecurityEvent as exc:
        log.warning("risc_rejected", reason=str(exc)[:80])
        return _set_error(exc.err, "the security event token did not validate")
    except risc.KeysUnavailableError:
        log.warning("risc_keys_unavailable")
        raise HttpError(503, "keys_unavailable", "Google's signing keys could not be "
                        "fetched; deliver the event again later") from None
    outcome = await _record_and_act(deps_of(request), event)
    if outcome is None:
        return answer(WebhookAck(status="duplicate"), status=202)
    return answer(WebhookAck(status="accepted", erasures=outcome), status=202)


async def _record_and_act(deps: Deps, event: risc.SecurityEvent) -> list[str] | None:
    """Record the event and begin its erasures in one transaction; None for a redelivery.

    Had the record been committed first and the action failed, Google's retry would be
    taken for a duplicate and the event lost; here a failure rolls both back, so the
    retry acts again. The erase jobs are queued after the commit (a lost enqueue is
    re-queued by the `resume_erasures` cron: the erasures themselves are durable).
    """
    try:
        async with deps.sessions.begin() as session:
            matched, doomed = await _matching_accounts(session, event, deps.keyring)
            session.add(SecurityEvent(
                jti_hash=event.jti_hash, event_types=sorted(event.events),
                accounts_matched=len(matched), outcome=_outcome(event, bool(doomed))))
            await session.flush()  # a redelivered jti fails here, before anything is done
            erasures = await _begin_erasures(deps, session, event, doomed)
    except IntegrityError:
        return None
    for erasure in erasures:
        await erase.start(deps, erasure)
    _log(event, matched, erasures)
    return [e.id for e in erasures]


def _outcome(event: risc.SecurityEvent, erasing: bool) -> str:
    if erasing:
        return "erasure"
    known = set(event.events) & risc.GOOGLE_EVENTS
    return ",".join(sorted(k.rsplit("/", 1)[-1] for k in known))[:40] if known else "ignored"


def _log(event: risc.SecurityEvent, matched: list[Account], erasures: list[Erasure]) -> None:
    kinds = sorted(k.rsplit("/", 1)[-1] for k in event.events)
    if risc.VERIFICATION in event.events:
        log.info("risc_verification_received", has_state="state" in event.events[
            risc.VERIFICATION])
    if risc.CREDENTIAL_CHANGE_REQUIRED in event.events or risc.SESSIONS_REVOKED in event.events:
        log.warning("risc_account_at_risk", events=kinds, account_ids=[a.id for a in matched])
    unknown = sorted(set(event.events) - risc.GOOGLE_EVENTS)
    log.info("risc_accepted", events=kinds, accounts=len(matched), erasures=len(erasures),
             ignored=len(unknown))


def _subject_match(subject: dict[str, Any], ring: Keyring) -> tuple[str, frozenset[str]] | None:
    """Which stored pseudonym names the subject, and the values it may have: stored
    identifiers are keyed pseudonyms, so hash what the event names the same way (and a
    `sub` also as the bare SHA-256 accounts stored before keyed pseudonyms)."""
    kind = subject.get("subject_type")
    sub = subject.get("sub")
    if kind == "iss-sub" and isinstance(sub, str):
        return "google_sub_hash", frozenset({accounts.google_sub_hash(sub, ring),
                                             accounts.legacy_google_sub_hash(sub)})
    token = subject.get("token")
    if kind == "oauth_token" and isinstance(token, str):
        alg = subject.get("token_identifier_alg")
        if alg == "prefix":
            return "token_prefix_hash", frozenset({accounts.prefix_hash(token[:16], ring)})
        if alg == "hash_base64_sha512_sha512":
            return "token_sha512x2", frozenset({accounts.sha512x2_hash(token, ring)})
    return None


def _names(account: Account, match: tuple[str, frozenset[str]]) -> bool:
    column, values = match
    return getattr(account, column) in values


async def _matching_accounts(session: AsyncSession, event: risc.SecurityEvent,
                             ring: Keyring) -> tuple[list[Account], list[Account]]:
    """The live accounts Google's events name, and those of them an erasing event names.

    One query, its rows locked until the transaction ends (so two events about one account
    cannot both begin its erasure); which of them to erase is decided on those same rows,
    so an account connected meanwhile cannot be erased without being counted as matched.
    """
    matches = [(kind, match) for kind, e in event.events.items() if kind in risc.GOOGLE_EVENTS
               if (match := _subject_match(e.get("subject") or {}, ring)) is not None]
    if not matches:
        return [], []
    found = list(await session.scalars(select(Account).where(
        or_(*(getattr(Account, column).in_(values) for _, (column, values) in matches)),
        Account.status == accounts.ACTIVE).with_for_update()))
    erasing = [match for kind, match in matches if kind in risc.ERASING_EVENTS]
    return found, [a for a in found if any(_names(a, match) for match in erasing)]


async def _begin_erasures(deps: Deps, session: AsyncSession, event: risc.SecurityEvent,
                          matched: list[Account]) -> list[Erasure]:
    """Each matched account's erasure, named after the event that required it."""
    if not matched:
        return []
    kind = next(k for k in event.events if k in risc.ERASING_EVENTS)
    trigger = "risc_" + kind.rsplit("/", 1)[-1].replace("-", "_")
    return [await erase.begin(deps, session, [a.id], a.subject_hash, trigger)
            for a in matched]


def add_routes(app: web.Application, deps: Deps) -> None:
    client_id = deps.settings.google_client_id or ""
    app[VERIFIER] = risc.RiscVerifier(deps.endpoints, (client_id,), deps.http)
    app.router.add_post("/webhooks/google/risc", risc_event)
    push.add_routes(app)
