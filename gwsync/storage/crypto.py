"""AES-GCM envelope encryption: a data key per account, wrapped by the master key.

Destroying an account's data key makes every copy of its ciphertexts unreadable at
once, backups included. Every ciphertext is bound to the row it belongs to through
associated data, so a ciphertext moved to another row fails to decrypt.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
KEY_BYTES = 32


class DecryptionError(Exception):
    """A ciphertext did not authenticate: wrong key, wrong row, or tampered."""


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, blob: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError) as exc:
        raise DecryptionError("ciphertext does not authenticate for this row") from exc


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def wrap_key(master: bytes, account_id: str, data_key: bytes) -> bytes:
    return _seal(master, data_key, f"datakey:{account_id}".encode())


def unwrap_key(master: bytes, account_id: str, wrapped: bytes) -> bytes:
    return _open(master, wrapped, f"datakey:{account_id}".encode())


class RowCipher:
    """Encrypts one account's values, each bound to a row identity string."""

    def __init__(self, account_id: str, data_key: bytes) -> None:
        self._account_id = account_id
        self._key = data_key

    def _aad(self, row: str) -> bytes:
        return f"{self._account_id}|{row}".encode()

    def encrypt(self, row: str, plaintext: bytes) -> bytes:
        return _seal(self._key, plaintext, self._aad(row))

    def decrypt(self, row: str, blob: bytes) -> bytes:
        return _open(self._key, blob, self._aad(row))


def seal(master: bytes, label: str, plaintext: bytes) -> bytes:
    """Encrypt directly under the master key, bound to `label` (for short-lived secrets)."""
    return _seal(master, plaintext, f"sealed:{label}".encode())


def unseal(master: bytes, label: str, blob: bytes) -> bytes:
    return _open(master, blob, f"sealed:{label}".encode())


def grant_row() -> str:
    return "grant"


def record_row(kind: str, external_id: str) -> str:
    return f"record|{kind}|{external_id}"
