"""Every case of the official NIP-44 v2 vectors through the project's NIP-44 code (events/nip44).

Each step the vectors fix is checked on the product's own function: the conversation key from
a key pair, the message keys from a conversation key and nonce, the padded length, the exact
payload for a given nonce, the long messages' payload digests, and the typed error of every
invalid key, length and payload.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from events import nip44
from events.crypto import SecretKey
from events.errors import (
    DecryptionFailed,
    HiveError,
    InvalidKey,
    Nip44Malformed,
    Nip44VersionUnsupported,
    PlaintextLength,
)

VECTOR_FILE = Path(__file__).parent / "vectors/nip44.vectors.json"
VECTORS = json.loads(VECTOR_FILE.read_text())["v2"]
VALID, INVALID = VECTORS["valid"], VECTORS["invalid"]


def key(sk_hex: str) -> SecretKey:
    return SecretKey(bytes.fromhex(sk_hex))


def test_vector_file_checksum() -> None:
    digest = hashlib.sha256(VECTOR_FILE.read_bytes()).hexdigest()
    assert digest.startswith("269ed0f6") and digest.endswith("5040")


@pytest.mark.parametrize("case", VALID["get_conversation_key"], ids=lambda c: c["sec1"][:8])
def test_conversation_key(case: dict) -> None:
    expected = bytes.fromhex(case["conversation_key"])
    assert nip44.conversation_key(key(case["sec1"]), case["pub2"], remember=False) == expected


def test_conversation_key_is_symmetric_and_cached_consistently() -> None:
    a, b = SecretKey.generate(), SecretKey.generate()
    first = nip44.conversation_key(a, b.pubkey)
    assert nip44.conversation_key(b, a.pubkey) == first
    assert nip44.conversation_key(a, b.pubkey) == first  # from the cache now
    assert nip44.conversation_key(a, b.pubkey, remember=False) == first


def test_message_keys() -> None:
    case = VALID["get_message_keys"]
    conv = bytes.fromhex(case["conversation_key"])
    for keys in case["keys"]:
        chacha_key, chacha_nonce, hmac_key = nip44.message_keys(conv, bytes.fromhex(keys["nonce"]))
        assert chacha_key.hex() == keys["chacha_key"]
        assert chacha_nonce.hex() == keys["chacha_nonce"]
        assert hmac_key.hex() == keys["hmac_key"]


@pytest.mark.parametrize("case", VALID["calc_padded_len"], ids=lambda c: str(c[0]))
def test_padded_length(case: list[int]) -> None:
    length, padded = case
    assert nip44.calc_padded_len(length) == padded
    if length > nip44.MAX_PLAINTEXT:
        return
    payload = nip44.encrypt_with(bytes(32), "a" * length)
    # version (1) + nonce (32) + length prefix (2) + padded plaintext + MAC (32)
    assert len(base64.b64decode(payload)) == 1 + 32 + 2 + padded + 32
    assert nip44.decrypt_with(bytes(32), payload) == "a" * length


@pytest.mark.parametrize("case", VALID["encrypt_decrypt"], ids=lambda c: c["sec1"][:8])
def test_encrypt_decrypt(case: dict) -> None:
    conv = bytes.fromhex(case["conversation_key"])
    k1, k2 = key(case["sec1"]), key(case["sec2"])
    assert nip44.conversation_key(k1, k2.pubkey, remember=False) == conv
    nonce = bytes.fromhex(case["nonce"])
    assert nip44.encrypt_with(conv, case["plaintext"], nonce) == case["payload"]
    assert nip44.decrypt(k2, k1.pubkey, case["payload"]) == case["plaintext"]
    assert nip44.decrypt(k1, k2.pubkey, case["payload"]) == case["plaintext"]
    ours = nip44.encrypt(k1, k2.pubkey, case["plaintext"])  # random nonce
    assert ours != case["payload"]
    assert nip44.decrypt(k2, k1.pubkey, ours) == case["plaintext"]


@pytest.mark.parametrize("case", VALID["encrypt_decrypt_long_msg"], ids=lambda c: str(c["repeat"]))
def test_long_messages(case: dict) -> None:
    plaintext = case["pattern"] * case["repeat"]
    assert hashlib.sha256(plaintext.encode()).hexdigest() == case["plaintext_sha256"]
    conv, nonce = bytes.fromhex(case["conversation_key"]), bytes.fromhex(case["nonce"])
    payload = nip44.encrypt_with(conv, plaintext, nonce)
    assert hashlib.sha256(payload.encode()).hexdigest() == case["payload_sha256"]
    assert nip44.decrypt_with(conv, payload) == plaintext


@pytest.mark.parametrize("length", INVALID["encrypt_msg_lengths"])
def test_invalid_plaintext_lengths(length: int) -> None:
    with pytest.raises(PlaintextLength):
        nip44.encrypt(SecretKey.generate(), SecretKey.generate().pubkey, "a" * length)


@pytest.mark.parametrize("case", INVALID["get_conversation_key"], ids=lambda c: c["note"])
def test_invalid_conversation_keys(case: dict) -> None:
    """Either the secret or the public key is invalid; both directions are refused."""
    payload = nip44.encrypt_with(bytes(32), "x")
    with pytest.raises(InvalidKey):
        nip44.encrypt(nip44.keys_from_secret(case["sec1"]), case["pub2"], "hello")
    with pytest.raises(InvalidKey):
        nip44.decrypt(nip44.keys_from_secret(case["sec1"]), case["pub2"], payload)


EXPECTED_DECRYPT_ERROR = {
    "unknown encryption version": Nip44VersionUnsupported,
    "unknown encryption version 0": Nip44VersionUnsupported,
    "invalid base64": Nip44Malformed,
    "invalid MAC": DecryptionFailed,
    "invalid padding": DecryptionFailed,
    "invalid payload length: 0": Nip44Malformed,
    "invalid payload length: 4": Nip44Malformed,
    "invalid payload length: 48": Nip44Malformed,
    "invalid payload length: 92": Nip44Malformed,
}


@pytest.mark.parametrize("case", INVALID["decrypt"], ids=lambda c: c["note"])
def test_invalid_decrypt(case: dict) -> None:
    conv = bytes.fromhex(case["conversation_key"])
    with pytest.raises(HiveError) as caught:
        nip44.decrypt_with(conv, case["payload"])
    assert type(caught.value) is EXPECTED_DECRYPT_ERROR[case["note"]]
