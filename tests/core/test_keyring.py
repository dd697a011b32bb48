"""The keyring: ids, HKDF subkeys per purpose, sealed blobs naming their key, pseudonyms."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from gwsync.core import keyring
from gwsync.core.keyring import (
    DecryptionError,
    Keyring,
    LocalKeyWrapper,
    MasterKey,
    Pseudonyms,
    UnknownKeyError,
)

OLD = MasterKey("old", bytes(range(32)))
NEW = MasterKey("new", bytes(range(1, 33)))


def _ring(*keys: MasterKey) -> Keyring:
    return Keyring(LocalKeyWrapper(list(keys)))


def test_new_blobs_are_made_under_the_primary_and_name_it() -> None:
    """Wrapping and sealing use the first key, and say so; the rest only open."""
    ring = _ring(NEW, OLD)
    key_id, _ = ring.wrap(b"x" * 32, b"aad")
    assert key_id == "new"
    assert keyring.sealed_key_id(ring.seal("l", b"secret")) == "new"


def test_a_ring_opens_what_any_of_its_keys_made_and_nothing_once_the_key_is_gone() -> None:
    """After rotation the old key's blobs still open while it is in the ring, not after."""
    key_id, wrapped = _ring(OLD).wrap(b"k" * 32, b"aad")
    sealed = _ring(OLD).seal("label", b"secret")
    both = _ring(NEW, OLD)
    assert both.unwrap(key_id, wrapped, b"aad") == b"k" * 32
    assert both.unseal("label", sealed) == b"secret"
    with pytest.raises(UnknownKeyError):
        _ring(NEW).unwrap(key_id, wrapped, b"aad")
    with pytest.raises(UnknownKeyError):
        _ring(NEW).unseal("label", sealed)


def test_each_purpose_has_its_own_subkey_and_no_master_is_used_raw() -> None:
    """A wrapped blob does not open as a sealed one, and neither under the raw master key."""
    ring = _ring(OLD)
    _, wrapped = ring.wrap(b"k" * 32, b"sealed:l")
    with pytest.raises(DecryptionError):
        ring.unseal("l", bytes([1, 3]) + b"old" + wrapped)
    with pytest.raises(DecryptionError):
        keyring.aead_open(OLD.secret, wrapped, b"sealed:l")
    assert keyring.derive(OLD.secret, "wrap") != keyring.derive(OLD.secret, "seal")


def test_legacy_blobs_under_the_raw_master_still_open() -> None:
    """Rows written before keyrings (raw master, no id) open until rotate re-wraps them."""
    legacy = keyring.aead_seal(OLD.secret, b"secret", b"sealed:l")
    assert _ring(NEW, OLD).unseal("l", legacy) == b"secret"
    assert _ring(NEW, OLD).unwrap(None, legacy, b"sealed:l") == b"secret"


def test_the_environment_lists_keys_primary_first_and_adds_the_single_key() -> None:
    """GWSYNC_ENCRYPTION_KEYS then GWSYNC_ENCRYPTION_KEY (derived id) unless listed already."""
    single = base64.b64encode(OLD.secret).decode()
    listing = f"new:{base64.b64encode(NEW.secret).decode()}"
    keys = keyring.parse_keys(listing, single)
    assert [k.id for k in keys] == ["new", keyring.default_key_id(OLD.secret)]
    assert [k.id for k in keyring.parse_keys(f"{listing},a:{single}", single)] == ["new", "a"]
    for bad in ("nocolon", "bad id:" + single, f"x:{single},x:{single}", "x:c2hvcnQ="):
        with pytest.raises(ValueError):
            keyring.parse_keys(bad, None)


def test_pseudonyms_are_hmacs_under_a_subkey_tagged_with_their_key() -> None:
    """Not a bare SHA-256 of a guessable id: the key is needed to compute one."""
    secret = bytes(range(32))
    value = Pseudonyms("p1234abcd", secret).hash("subject", "user-1")
    key_id, digest = value.split(":")
    assert key_id == "p1234abcd" and len(value) <= 64
    expected = hmac.new(keyring.derive(secret, "hmac/subject"), b"user-1", hashlib.sha256)
    assert digest == expected.hexdigest()[:keyring.PSEUDONYM_HEX]
    assert digest not in hashlib.sha256(b"gwsync-subject:user-1").hexdigest()
    assert Pseudonyms("p1234abcd", secret).hash("google-sub", "user-1") != value
