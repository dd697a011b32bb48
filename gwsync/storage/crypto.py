"""AES-GCM envelope encryption: data keys per account and per feature, wrapped by the keyring.

Destroying a data key makes every copy of its ciphertexts unreadable at once, backups
included. Every ciphertext is bound to the row it belongs to through associated data, so
a ciphertext moved to another row fails to decrypt. Master keys, their subkeys and the
sealed-blob format are in gwsync/core/keyring.py.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gwsync.core.keyring import DecryptionError, Keyring, aead_open, aead_seal

__all__ = ["DecryptionError", "RowCipher", "new_data_key", "wrap_key", "unwrap_key", "seal",
           "unseal", "grant_row", "record_row", "ACCOUNT"]

KEY_BYTES = 32
#: The purpose of an account's own data key (its grant, and records stored before
#: per-feature keys); a feature's key has the feature's name as purpose.
ACCOUNT = "account"


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def _key_aad(account_id: str, purpose: str, legacy: bool) -> bytes:
    return (f"datakey:{account_id}" if legacy else f"datakey:{account_id}|{purpose}").encode()


def wrap_key(ring: Keyring, account_id: str, purpose: str, data_key: bytes) -> tuple[str, bytes]:
    """→ (master key id, wrapped key), bound to the account and purpose it serves."""
    return ring.wrap(data_key, _key_aad(account_id, purpose, legacy=False))


def unwrap_key(ring: Keyring, account_id: str, purpose: str, key_id: str | None,
               wrapped: bytes) -> bytes:
    return ring.unwrap(key_id, wrapped, _key_aad(account_id, purpose, legacy=key_id is None))


class RowCipher:
    """Encrypts one account's values, each bound to a row identity string."""

    def __init__(self, account_id: str, data_key: bytes,
                 fallback: RowCipher | None = None) -> None:
        self._account_id = account_id
        self._key = data_key
        #: Opens rows written before per-feature keys (under the account's key).
        self._fallback = fallback

    def _aad(self, row: str) -> bytes:
        return f"{self._account_id}|{row}".encode()

    def encrypt(self, row: str, plaintext: bytes) -> bytes:
        return aead_seal(self._key, plaintext, self._aad(row))

    def decrypt(self, row: str, blob: bytes) -> bytes:
        try:
            return aead_open(self._key, blob, self._aad(row))
        except DecryptionError:
            if self._fallback is None:
                raise
            return self._fallback.decrypt(row, blob)


def seal(ring: Keyring, label: str, plaintext: bytes) -> bytes:
    """Encrypt under the keyring's sealing subkey, bound to `label` (short-lived secrets)."""
    return ring.seal(f"{label}", plaintext)


def unseal(ring: Keyring, label: str, blob: bytes) -> bytes:
    return ring.unseal(label, blob)


def grant_row() -> str:
    return "grant"


def record_row(kind: str, external_id: str) -> str:
    return f"record|{kind}|{external_id}"
