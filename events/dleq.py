"""NUT-12: checking offline that a mint signed a Cashu proof (DLEQ), written from the spec.

A proof (x, C) is the mint's signature C = k·Y on Y = hash_to_curve(x) (NUT-00), unblinded by
the wallet that minted it.  Only the mint can check C against its key k, at redemption, which
is too late for someone paid with the proof.  NUT-12 lets anyone check it with the mint's
public key K = k·G: the mint proves, with (e, s), that the same k made K and its blind
signature C' = k·B' on the wallet's B' = Y + r·G, and the wallet passes on its blinding
factor r with the proof, so a receiver recomputes

    B' = Y + r·G,   C' = C + r·K,   R1 = s·G − e·K,   R2 = s·B' − e·C'
    valid  ⇔  e = SHA-256(hex(R1) ‖ hex(R2) ‖ hex(K) ‖ hex(C'))   (uncompressed points, as text)

Only the current hash_to_curve is accepted (Nutshell still accepts the one before 0.15 for old
proofs; a mint checks spends with the current one, so a proof valid only under the old one
could never be redeemed).  The official vectors are in tests/test_dleq.py.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from coincurve import PublicKey

DOMAIN = b"Secp256k1_HashToCurve_Cashu_"
ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class DleqLike(Protocol):
    @property
    def e(self) -> str: ...
    @property
    def s(self) -> str: ...
    @property
    def r(self) -> str: ...


def hash_to_curve(message: bytes) -> PublicKey:
    """The NUT-00 point of a message: the first SHA-256(SHA-256(DOMAIN ‖ m) ‖ counter) that
    is the x of a point with even y."""
    digest = hashlib.sha256(DOMAIN + message).digest()
    for counter in range(2**16):
        candidate = hashlib.sha256(digest + counter.to_bytes(4, "little")).digest()
        try:
            return PublicKey(b"\x02" + candidate)
        except ValueError:
            continue
    raise ValueError("no point found for this message")  # (probability 2^-65536)


def hash_e(*points: PublicKey) -> bytes:
    text = "".join(p.format(compressed=False).hex() for p in points)
    return hashlib.sha256(text.encode("ascii")).digest()


def _scalar(hex_value: str) -> int:
    value = int(hex_value, 16)
    if not 0 < value < ORDER:
        raise ValueError("a scalar must be in 1..n-1")
    return value


def _times(point: PublicKey, k: int) -> PublicKey:
    product: PublicKey = point.multiply(k.to_bytes(32, "big"))
    return product


def _sum(*points: PublicKey) -> PublicKey:
    total: PublicKey = PublicKey.combine_keys(list(points))
    return total


def verify_blind(b_: PublicKey, c_: PublicKey, e_hex: str, s_hex: str, mint_key: PublicKey) -> bool:
    """The mint's DLEQ on its blind signature C' of B' under K (what a minting wallet checks)."""
    e, s = _scalar(e_hex), _scalar(s_hex)
    r1 = _sum(PublicKey.from_secret(s.to_bytes(32, "big")), _times(mint_key, ORDER - e))
    r2 = _sum(_times(b_, s), _times(c_, ORDER - e))
    return hash_e(r1, r2, mint_key, c_) == e.to_bytes(32, "big")


def verify_proof(secret: str, c_hex: str, dleq: DleqLike, mint_key_hex: str) -> bool:
    """True if the proof (`secret`, C) with its DLEQ (e, s, r) was signed by the key `K`
    (compressed hex) — for the proof's amount in its keyset.  Malformed points, scalars or
    values of the wrong type are False, never an exception."""
    try:
        mint_key, c = PublicKey(bytes.fromhex(mint_key_hex)), PublicKey(bytes.fromhex(c_hex))
        y = hash_to_curve(secret.encode("utf-8"))
        r = _scalar(dleq.r)
        b_ = _sum(y, PublicKey.from_secret(r.to_bytes(32, "big")))
        c_ = _sum(c, _times(mint_key, r))
        return verify_blind(b_, c_, dleq.e, dleq.s, mint_key)
    except (ValueError, TypeError, AttributeError):
        return False
