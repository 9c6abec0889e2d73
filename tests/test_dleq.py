"""NUT-12 (DLEQ) and NUT-00's hash_to_curve against the official vectors, and the ways a
forged proof must fail: any changed value, a point off the curve, a scalar out of range."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from coincurve import PublicKey
from hypothesis import given
from hypothesis import strategies as st

from events.dleq import hash_e, hash_to_curve, verify_blind, verify_proof

V = json.loads((Path(__file__).parent / "vectors/cashu-nut00-nut12.json").read_text())
PROOF = V["proof"]


def point(hex_value: str) -> PublicKey:
    return PublicKey(bytes.fromhex(hex_value))


def dleq(**changes: str) -> SimpleNamespace:
    return SimpleNamespace(**{**PROOF["dleq"], **changes})


@pytest.mark.parametrize("row", V["hash_to_curve"], ids=lambda r: r["message"][-1])
def test_hash_to_curve_vectors(row: dict[str, str]) -> None:
    got = hash_to_curve(bytes.fromhex(row["message"]))
    assert got.format().hex() == row["point"]


def test_hash_e_vector() -> None:
    v = V["hash_e"]
    assert hash_e(point(v["R1"]), point(v["R2"]), point(v["K"]), point(v["C_"])).hex() == v["hash"]


@pytest.mark.parametrize("name", ["deterministic_nonce", "blind_signature"])
def test_blind_signature_vectors(name: str) -> None:
    v = V[name]
    assert verify_blind(point(v["B_"]), point(v["C_"]), v["e"], v["s"], point(v["A"]))


def test_proof_vector() -> None:
    assert verify_proof(PROOF["secret"], PROOF["C"], dleq(), PROOF["A"])


@pytest.mark.parametrize(
    ("secret", "c", "changed", "key"),
    [
        ("00" + PROOF["secret"][2:], PROOF["C"], {}, PROOF["A"]),  # another secret
        (PROOF["secret"], "03" + PROOF["C"][2:], {}, PROOF["A"]),  # −C (C starts with 02)
        (PROOF["secret"], PROOF["C"], {"r": "01" * 32}, PROOF["A"]),
        (PROOF["secret"], PROOF["C"], {"e": "01" * 32}, PROOF["A"]),
        (PROOF["secret"], PROOF["C"], {"s": "01" * 32}, PROOF["A"]),
        (PROOF["secret"], PROOF["C"], {}, V["deterministic_nonce"]["A"]),  # another mint key
        (PROOF["secret"], "02" + "ff" * 32, {}, PROOF["A"]),  # not a point
        (PROOF["secret"], PROOF["C"], {"s": "00" * 32}, PROOF["A"]),  # zero scalar
        (PROOF["secret"], PROOF["C"], {"e": "ff" * 32}, PROOF["A"]),  # scalar ≥ n
        (PROOF["secret"], PROOF["C"], {}, "00" * 33),  # no key
    ],
    ids=["secret", "C", "r", "e", "s", "mint key", "C off curve", "s zero", "e ≥ n", "bad key"],
)
def test_anything_changed_fails(secret: str, c: str, changed: dict[str, str], key: str) -> None:
    assert not verify_proof(secret, c, dleq(**changed), key)


@given(st.binary(min_size=0, max_size=200))
def test_hash_to_curve_always_lands_on_an_even_point(message: bytes) -> None:
    assert hash_to_curve(message).format()[0] == 2
