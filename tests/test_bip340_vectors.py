"""The BIP-340 vectors through the project's Schnorr signing and verification (events.crypto).

`vectors/bip340-test-vectors.csv` is the current official file (bitcoin/bips, bip-0340, with
the four variable-length-message rows added in 2022-12).  The copy in ../shared/vectors, kept
here as `bip340-superseded-draft.csv`, is the pre-2020 draft that used square-y nonces: its
five signing rows are not valid under final BIP-340 (libsecp256k1, coincurve and nostr-sdk all
reject them), so that file is run too, with those rows expected to fail and their final-BIP
counterparts expected to pass.
"""

from __future__ import annotations

import csv
import gc
from pathlib import Path

import nostr_sdk as sdk
import pytest

from events.base import sign_event
from events.crypto import SecretKey, pubkey_hex, require_xonly, schnorr_verify, secret_of, sign_hash
from events.errors import InvalidKey

VECTORS = Path(__file__).parent / "vectors"


def load(name: str) -> list[dict[str, str]]:
    with (VECTORS / name).open(newline="") as fh:
        return list(csv.DictReader(fh))


OFFICIAL = load("bip340-test-vectors.csv")
DRAFT = load("bip340-superseded-draft.csv")


def verifies(row: dict[str, str]) -> bool:
    return schnorr_verify(
        bytes.fromhex(row["public key"]),
        bytes.fromhex(row["message"]),
        bytes.fromhex(row["signature"]),
    )


def test_files_are_complete() -> None:
    assert [int(r["index"]) for r in OFFICIAL] == list(range(19))
    assert [int(r["index"]) for r in DRAFT] == list(range(15))


@pytest.mark.parametrize("row", OFFICIAL, ids=lambda r: f"{r['index']}-{r['comment'][:30]}")
def test_official_vectors(row: dict[str, str]) -> None:
    assert verifies(row) is (row["verification result"] == "TRUE")


@pytest.mark.parametrize("row", DRAFT, ids=lambda r: f"draft-{r['index']}")
def test_superseded_draft_vectors(row: dict[str, str]) -> None:
    """Draft FALSE rows stay false; draft TRUE rows (square-y) are refused by final BIP-340."""
    assert verifies(row) is False
    final = OFFICIAL[int(row["index"])]
    if row["verification result"] == "TRUE":
        assert (final["public key"], final["message"]) == (row["public key"], row["message"])
        assert verifies(final) is True


@pytest.mark.parametrize(
    "row", [r for r in OFFICIAL if "public key" in r["comment"]], ids=lambda r: r["index"]
)
def test_invalid_public_keys_are_typed_errors(row: dict[str, str]) -> None:
    with pytest.raises(InvalidKey):
        require_xonly(row["public key"].lower())


def test_malformed_lengths_do_not_verify() -> None:
    row = OFFICIAL[1]
    pubkey, message = bytes.fromhex(row["public key"]), bytes.fromhex(row["message"])
    signature = bytes.fromhex(row["signature"])
    assert schnorr_verify(pubkey, message, signature) is True
    assert schnorr_verify(pubkey, message, signature[:63]) is False
    assert schnorr_verify(pubkey[:31], message, signature) is False


SIGNING_ROWS = [r for r in OFFICIAL if r["secret key"] and len(r["message"]) == 64]


@pytest.mark.parametrize("row", SIGNING_ROWS, ids=lambda r: r["index"])
def test_signing_reproduces_the_vector(row: dict[str, str]) -> None:
    key = SecretKey(bytes.fromhex(row["secret key"]))
    assert key.pubkey == row["public key"].lower()
    sig = key.sign(bytes.fromhex(row["message"]), aux=bytes.fromhex(row["aux_rand"]))
    assert sig.hex() == row["signature"].lower()


def test_fresh_aux_randomness_gives_fresh_valid_signatures() -> None:
    key, digest = SecretKey.generate(), bytes(range(32))
    first, second = key.sign(digest), key.sign(digest)
    assert first != second
    assert schnorr_verify(key.xonly, digest, first) and schnorr_verify(key.xonly, digest, second)


def test_secret_keys_are_checked_and_never_shown() -> None:
    for bad in (bytes(32), bytes.fromhex("ff" * 32), b"short"):
        with pytest.raises(InvalidKey):
            SecretKey(bad)
    key = SecretKey(bytes.fromhex("01" * 32))
    assert "01" * 32 not in repr(key) and key.pubkey in repr(key)
    with pytest.raises(ValueError, match="32-byte"):
        key.sign(b"not a digest")


def test_nostr_sdk_keys_sign_through_the_same_code() -> None:
    keys = sdk.Keys.generate()
    assert secret_of(keys) is secret_of(keys)
    assert pubkey_hex(keys) == keys.public_key().to_hex()
    digest = bytes(32)
    sig = bytes.fromhex(sign_hash(keys, digest))
    assert schnorr_verify(bytes.fromhex(pubkey_hex(keys)), digest, sig)
    event = sign_event(keys, 1, "signed here", [], 1_700_000_000)
    assert sdk.Event.from_json(event.to_json()).verify()  # nostr-sdk's own verifier agrees


def test_a_remembered_secret_goes_with_its_keys_object() -> None:
    from events import crypto

    keys = sdk.Keys.generate()
    secret_of(keys)
    slot = id(keys)
    assert slot in crypto._SECRETS
    del keys
    gc.collect()
    assert slot not in crypto._SECRETS
