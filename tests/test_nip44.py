"""The project's NIP-44 code beyond the vectors: round trips, limits, tampering, and agreement
with nostr-sdk's independent implementation in both directions."""

from __future__ import annotations

import base64

import nostr_sdk as sdk
import pytest
from hypothesis import given
from hypothesis import strategies as st

from events import nip44
from events.errors import (
    DecryptionFailed,
    InvalidKey,
    Nip44Malformed,
    Nip44VersionUnsupported,
    PlaintextLength,
)

ALICE, BOB = sdk.Keys.generate(), sdk.Keys.generate()
A, B = ALICE.public_key().to_hex(), BOB.public_key().to_hex()


@given(st.text(min_size=1, max_size=2000) | st.integers(60_000, 65_408).map(lambda n: "a" * n))
def test_round_trip_and_padding(plaintext: str) -> None:
    payload = nip44.encrypt(ALICE, B, plaintext)
    assert nip44.decrypt(BOB, A, payload) == plaintext
    size = len(plaintext.encode())
    assert len(base64.b64decode(payload)) == 67 + nip44.calc_padded_len(size)


@given(st.text(min_size=1, max_size=3000))
def test_nostr_sdk_agrees_both_ways(plaintext: str) -> None:
    ours = nip44.encrypt(ALICE, B, plaintext)
    assert sdk.nip44_decrypt(BOB.secret_key(), ALICE.public_key(), ours) == plaintext
    theirs = sdk.nip44_encrypt(BOB.secret_key(), ALICE.public_key(), plaintext, sdk.Nip44Version.V2)
    assert nip44.decrypt(ALICE, B, theirs) == plaintext


@pytest.mark.parametrize("size", [65_408, 65_409, 65_535])
def test_the_largest_plaintexts(size: int) -> None:
    """NIP-44 allows 65,535 bytes; nostr-sdk 0.45.1 encrypts only up to 65,408 but decrypts
    all of them, so ours must encrypt the rest and nostr-sdk must open them."""
    ours = nip44.encrypt(ALICE, B, "a" * size)
    assert sdk.nip44_decrypt(BOB.secret_key(), ALICE.public_key(), ours) == "a" * size
    assert nip44.decrypt(BOB, A, ours) == "a" * size


def test_length_limits_count_utf8_bytes() -> None:
    with pytest.raises(PlaintextLength):
        nip44.encrypt(ALICE, B, "")
    with pytest.raises(PlaintextLength):
        nip44.encrypt(ALICE, B, "é" * 32_768)  # 65,536 bytes


@given(pos=st.integers(0, 200), flip=st.integers(1, 255))
def test_tampering_is_refused(pos: int, flip: int) -> None:
    raw = bytearray(base64.b64decode(nip44.encrypt(ALICE, B, "the fee is 100 ppm")))
    pos %= len(raw)
    raw[pos] ^= flip
    with pytest.raises((DecryptionFailed, Nip44Malformed, Nip44VersionUnsupported)):
        nip44.decrypt(BOB, A, base64.b64encode(bytes(raw)).decode())


def test_wrong_key_and_bad_keys() -> None:
    payload = nip44.encrypt(ALICE, B, "x")
    with pytest.raises(DecryptionFailed):
        nip44.decrypt(sdk.Keys.generate(), A, payload)
    with pytest.raises(InvalidKey):
        nip44.decrypt(BOB, "zz" * 32, payload)
    with pytest.raises(InvalidKey):
        nip44.encrypt(ALICE, B.upper(), "x")
    with pytest.raises(InvalidKey):
        nip44.keys_from_secret("00" * 32)


def test_one_time_keys_never_enter_the_conversation_cache() -> None:
    from events.crypto import SecretKey

    before = len(nip44._conversations)
    for _ in range(50):
        one_time = SecretKey.generate()
        payload = nip44.encrypt(one_time, B, "outer layer", remember=False)
        assert nip44.decrypt(BOB, one_time.pubkey, payload, remember=False) == "outer layer"
    assert len(nip44._conversations) == before
    assert len(nip44._conversations) <= nip44._CACHE_SIZE
