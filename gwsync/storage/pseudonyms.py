"""The pseudonym key: created once per deployment, kept wrapped by the keyring.

Keyed pseudonyms (gwsync/core/keyring.py, `Pseudonyms`) must stay the same across master
key rotations, because what they hash is deliberately not kept (a Google `sub`, an erased
user's id). So their key is its own random secret, stored here wrapped like a data key:
a database dump without the master key cannot be used to test guesses against them.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError

from gwsync.core.keyring import Keyring, Pseudonyms
from gwsync.storage.db import SessionFactory
from gwsync.storage.models import PseudonymKey

SLOT = "default"


def _aad(key_id: str) -> bytes:
    return f"pseudonym-key:{key_id}".encode()


async def load(sessions: SessionFactory, ring: Keyring) -> Keyring:
    """`ring` with the deployment's pseudonym key, which the first caller creates.

    A database not migrated yet has no table for it: then `ring` comes back without the
    key, so a web process started before `gwsync migrate` still starts and answers
    /readyz (503, the schema behind), which attaches the key once the schema is there.
    """
    try:
        async with sessions() as session:
            row = await session.get(PseudonymKey, SLOT)
    except DBAPIError:
        return ring
    if row is None:
        key_id = "p" + secrets.token_hex(4)
        master_id, wrapped = ring.wrap(secrets.token_bytes(32), _aad(key_id))
        try:
            async with sessions.begin() as session:
                session.add(PseudonymKey(slot=SLOT, key_id=key_id, wrapped_key=wrapped,
                                         master_key_id=master_id))
        except IntegrityError:
            pass  # another process created it first: use theirs
        async with sessions() as session:
            row = await session.scalar(select(PseudonymKey).where(PseudonymKey.slot == SLOT))
        assert row is not None
    secret = ring.unwrap(row.master_key_id, row.wrapped_key, _aad(row.key_id))
    return ring.with_pseudonyms(Pseudonyms(row.key_id, secret))


async def ensure(sessions: SessionFactory, ring: Keyring) -> bool:
    """Attach the pseudonym key to `ring` if it lacks it; whether it has it now."""
    if not ring.has_pseudonyms:
        loaded = await load(sessions, ring)
        if loaded.has_pseudonyms:
            ring.attach(loaded.pseudonyms)
    return ring.has_pseudonyms


def rewrap(ring: Keyring, row: PseudonymKey) -> None:
    """Wrap the key again under the primary (`gwsync keys rotate`)."""
    secret = ring.unwrap(row.master_key_id, row.wrapped_key, _aad(row.key_id))
    row.master_key_id, row.wrapped_key = ring.wrap(secret, _aad(row.key_id))
