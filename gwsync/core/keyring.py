"""The keyring: master keys with ids, the subkeys derived from them, and keyed pseudonyms.

A master key never encrypts anything itself. Each purpose gets its own subkey, derived
with HKDF, so a wrapping key that leaks reveals nothing of the sealing key and the
other way round:

- `wrap`: data keys (per account, per feature) and the pseudonym key, stored in the DB;
- `seal`: short-lived secrets sealed directly (grants awaiting revocation, consent
  flows in Redis).

Every wrapped key records the id of the master key that wrapped it (a column), every
sealed blob carries it in a header, so `gwsync keys rotate` can tell what an old key
still protects. The first key is the primary: everything new is made under it.

Keyed pseudonyms (subject, Google `sub`, token and mailbox hashes) are HMACs under
subkeys of the *pseudonym key*, a random secret kept in the database wrapped by the
master keyring (gwsync/storage/pseudonyms.py). Rotating the master re-wraps it and
leaves every pseudonym unchanged: a pseudonym's input (a Google `sub`, an erased
user's id) is deliberately not kept, so a pseudonym made under a key that changes
could never be re-computed. Each pseudonym is written as `<pseudonym key id>:<hex>`.

`KeyWrapper` is the seam for a KMS: it wraps and unwraps small secrets and never
hands out a master key; `LocalKeyWrapper` (keys from the environment) is the default.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
NONCE_BYTES = 12
#: Master key ids: short (they prefix sealed blobs), and safe in a list variable.
KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,24}$")
#: Header of a sealed blob: version byte, id length, id, then nonce and ciphertext.
_SEALED_V1 = 1
#: Hex digits of a pseudonym kept after its `<key id>:` prefix (fits a 64-char column).
PSEUDONYM_HEX = 54

WRAP = "wrap"
SEAL = "seal"


class DecryptionError(Exception):
    """A ciphertext did not authenticate: wrong key, wrong row, or tampered."""


class UnknownKeyError(DecryptionError):
    """A ciphertext names a master key that is not in the ring (retired too early?)."""


def aead_seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def aead_open(key: bytes, blob: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError) as exc:
        raise DecryptionError("ciphertext does not authenticate for this row") from exc


def derive(secret: bytes, purpose: str) -> bytes:
    """The subkey of `secret` for one purpose (HKDF-SHA256, the purpose as `info`)."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None,
                info=f"gwsync/subkey/v1/{purpose}".encode()).derive(secret)


def default_key_id(secret: bytes) -> str:
    """The id of a key given without one (`GWSYNC_ENCRYPTION_KEY`): stable, not secret."""
    return "k" + hashlib.sha256(b"gwsync-key-id:" + secret).hexdigest()[:8]


@dataclass(frozen=True)
class MasterKey:
    id: str
    secret: bytes = field(repr=False)


class KeyWrapper(Protocol):
    """Wraps small secrets (data keys) under a master key that it never hands out."""

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key it can unwrap with, the primary first."""

    def wrap(self, key_id: str, purpose: str, plaintext: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, key_id: str, purpose: str, blob: bytes, aad: bytes) -> bytes: ...

    def unwrap_legacy(self, blob: bytes, aad: bytes) -> bytes:
        """Open a blob made before keyrings (AES-GCM under the raw master, no key id)."""


class LocalKeyWrapper:
    """Master keys held by the process (from the environment): AES-256-GCM under HKDF
    subkeys, one per purpose."""

    def __init__(self, keys: list[MasterKey]) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        self._keys = {k.id: k for k in keys}
        self._order = tuple(k.id for k in keys)
        self._subkeys: dict[tuple[str, str], bytes] = {}

    @property
    def key_ids(self) -> tuple[str, ...]:
        return self._order

    def _subkey(self, key_id: str, purpose: str) -> bytes:
        if key_id not in self._keys:
            raise UnknownKeyError(f"master key {key_id!r} is not in the keyring")
        cached = self._subkeys.get((key_id, purpose))
        if cached is None:
            cached = self._subkeys[(key_id, purpose)] = derive(self._keys[key_id].secret,
                                                              purpose)
        return cached

    def wrap(self, key_id: str, purpose: str, plaintext: bytes, aad: bytes) -> bytes:
        return aead_seal(self._subkey(key_id, purpose), plaintext, aad)

    def unwrap(self, key_id: str, purpose: str, blob: bytes, aad: bytes) -> bytes:
        return aead_open(self._subkey(key_id, purpose), blob, aad)

    def unwrap_legacy(self, blob: bytes, aad: bytes) -> bytes:
        for key in self._keys.values():
            try:
                return aead_open(key.secret, blob, aad)
            except DecryptionError:
                continue
        raise DecryptionError("no key of the ring opens this legacy ciphertext")


@dataclass(frozen=True)
class Pseudonyms:
    """The pseudonym key: HMAC subkeys per purpose, results tagged with its id."""

    key_id: str
    secret: bytes = field(repr=False)

    def hash(self, purpose: str, value: str) -> str:
        digest = hmac.new(derive(self.secret, f"hmac/{purpose}"), value.encode(),
                          hashlib.sha256).hexdigest()
        return f"{self.key_id}:{digest[:PSEUDONYM_HEX]}"

    def subkey(self, purpose: str) -> bytes:
        return derive(self.secret, f"hmac/{purpose}")


class Keyring:
    """The process's keys: a wrapper for master keys and, once loaded, the pseudonym key."""

    def __init__(self, wrapper: KeyWrapper, pseudonyms: Pseudonyms | None = None) -> None:
        self.wrapper = wrapper
        self._pseudonyms = pseudonyms

    @property
    def primary_id(self) -> str:
        return self.wrapper.key_ids[0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        return self.wrapper.key_ids

    def with_pseudonyms(self, pseudonyms: Pseudonyms) -> Keyring:
        return Keyring(self.wrapper, pseudonyms)

    @property
    def has_pseudonyms(self) -> bool:
        return self._pseudonyms is not None

    def attach(self, pseudonyms: Pseudonyms) -> None:
        """Give a ring opened before the database had its pseudonym key that key, in place,
        so every holder of the ring (stores, flow store) sees it."""
        if self._pseudonyms is None:
            self._pseudonyms = pseudonyms

    @property
    def pseudonyms(self) -> Pseudonyms:
        if self._pseudonyms is None:
            raise RuntimeError("the pseudonym key is not loaded (storage.pseudonyms.load)")
        return self._pseudonyms

    def wrap(self, plaintext: bytes, aad: bytes) -> tuple[str, bytes]:
        """Wrap under the primary → (its id, the blob); store the id with the blob."""
        return self.primary_id, self.wrapper.wrap(self.primary_id, WRAP, plaintext, aad)

    def unwrap(self, key_id: str | None, blob: bytes, aad: bytes) -> bytes:
        """Open a wrapped key; a `None` id is a row from before keyrings."""
        if key_id is None:
            return self.wrapper.unwrap_legacy(blob, aad)
        return self.wrapper.unwrap(key_id, WRAP, blob, aad)

    def seal(self, label: str, plaintext: bytes) -> bytes:
        """Encrypt under the primary's sealing subkey; the blob names the key."""
        kid = self.primary_id.encode()
        body = self.wrapper.wrap(self.primary_id, SEAL, plaintext, f"sealed:{label}".encode())
        return bytes([_SEALED_V1, len(kid)]) + kid + body

    def unseal(self, label: str, blob: bytes) -> bytes:
        aad = f"sealed:{label}".encode()
        kid = sealed_key_id(blob)
        if kid is not None:
            try:
                return self.wrapper.unwrap(kid, SEAL, blob[2 + len(kid):], aad)
            except UnknownKeyError:
                raise
            except DecryptionError:
                pass  # a legacy blob whose first bytes happen to parse as a header
        return self.wrapper.unwrap_legacy(blob, aad)


def sealed_key_id(blob: bytes) -> str | None:
    """The master key id a sealed blob names, or None for a legacy (pre-keyring) blob."""
    if len(blob) < 2 or blob[0] != _SEALED_V1:
        return None
    raw = blob[2:2 + blob[1]]
    try:
        kid = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    return kid if len(raw) == blob[1] and KEY_ID.match(kid) else None


def parse_keys(listing: str | None, single: str | None) -> list[MasterKey]:
    """`GWSYNC_ENCRYPTION_KEYS` (`id:base64,…`, primary first) then `GWSYNC_ENCRYPTION_KEY`
    (its id derived from it) unless the list already holds the same key."""
    keys: list[MasterKey] = []
    for item in (listing or "").split(","):
        if not item.strip():
            continue
        key_id, sep, encoded = item.strip().partition(":")
        if not sep or not KEY_ID.match(key_id):
            raise ValueError("GWSYNC_ENCRYPTION_KEYS entries are id:base64 (id: letters, "
                             "digits, - or _, at most 24)")
        keys.append(MasterKey(key_id, decode_key(encoded, "GWSYNC_ENCRYPTION_KEYS")))
    if single is not None:
        secret = decode_key(single, "GWSYNC_ENCRYPTION_KEY")
        if all(k.secret != secret for k in keys):
            keys.append(MasterKey(default_key_id(secret), secret))
    if len({k.id for k in keys}) != len(keys):
        raise ValueError("GWSYNC_ENCRYPTION_KEYS names a key id twice")
    return keys


def decode_key(encoded: str, variable: str) -> bytes:
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{variable} must be base64") from exc
    if len(raw) != KEY_BYTES:
        raise ValueError(f"{variable} must decode to 32 bytes")
    return raw


_installed: Keyring | None = None


def install(ring: Keyring) -> None:
    """Make `ring` the process's keyring, for pseudonym helpers called without one."""
    global _installed
    _installed = ring


def installed() -> Keyring:
    if _installed is None:
        raise RuntimeError("no keyring installed: open Deps (or call keyring.install) first")
    return _installed
