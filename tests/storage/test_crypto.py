"""AES-GCM envelope encryption: per-account data keys, ciphertexts bound to their rows."""

from __future__ import annotations

import pytest

from gwsync.core.keyring import Keyring, LocalKeyWrapper, MasterKey
from gwsync.storage import crypto

MASTER = Keyring(LocalKeyWrapper([MasterKey("k1", bytes(range(32)))]))


def test_round_trip_under_a_wrapped_data_key() -> None:
    """A value encrypted under an account's unwrapped data key decrypts to itself."""
    data_key = crypto.new_data_key()
    key_id, wrapped = crypto.wrap_key(MASTER, "acct-1", crypto.ACCOUNT, data_key)
    assert key_id == "k1"
    cipher = crypto.RowCipher("acct-1", crypto.unwrap_key(MASTER, "acct-1", crypto.ACCOUNT,
                                                          key_id, wrapped))
    blob = cipher.encrypt(crypto.record_row("contact", "people/c1"), b"Ada")
    assert b"Ada" not in blob
    assert cipher.decrypt(crypto.record_row("contact", "people/c1"), blob) == b"Ada"


def test_swapping_ciphertexts_between_rows_fails() -> None:
    """A ciphertext moved to another row of the same account does not authenticate."""
    cipher = crypto.RowCipher("acct-1", crypto.new_data_key())
    blob = cipher.encrypt(crypto.record_row("contact", "people/c1"), b"Ada")
    with pytest.raises(crypto.DecryptionError):
        cipher.decrypt(crypto.record_row("contact", "people/c2"), blob)


def test_a_data_key_is_bound_to_its_account() -> None:
    """A wrapped key copied to another account's row does not unwrap."""
    key_id, wrapped = crypto.wrap_key(MASTER, "acct-1", crypto.ACCOUNT, crypto.new_data_key())
    with pytest.raises(crypto.DecryptionError):
        crypto.unwrap_key(MASTER, "acct-2", crypto.ACCOUNT, key_id, wrapped)
    with pytest.raises(crypto.DecryptionError):
        crypto.unwrap_key(MASTER, "acct-1", "contacts", key_id, wrapped)


def test_another_accounts_key_cannot_read() -> None:
    """Each account's data key reads only that account's ciphertexts."""
    row = crypto.record_row("contact", "people/c1")
    blob = crypto.RowCipher("acct-1", crypto.new_data_key()).encrypt(row, b"Ada")
    with pytest.raises(crypto.DecryptionError):
        crypto.RowCipher("acct-1", crypto.new_data_key()).decrypt(row, blob)


def test_tampering_is_detected() -> None:
    """Flipping one bit of a ciphertext makes it fail to decrypt."""
    cipher = crypto.RowCipher("acct-1", crypto.new_data_key())
    blob = bytearray(cipher.encrypt("grant", b"1//token"))
    blob[-1] ^= 1
    with pytest.raises(crypto.DecryptionError):
        cipher.decrypt("grant", bytes(blob))
