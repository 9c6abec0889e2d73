"""Core Lightning's `signmessage` / `checkmessage` format, implemented from its documentation.

digest = SHA-256(SHA-256("Lightning Signed Message:" + message)); the signature is a
recoverable ECDSA signature by the node key; `zbase` = zbase32(byte(31 + recid) ‖ r ‖ s).
Verification recovers the public key, so a zbase string alone names its signer.  The simulator
signs with the same code (vectors/cln-signmessage.json pins it to CLN's own examples), so the
binding of a Nostr key to a node id is checked identically in tests and in production.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import secp256k1

from events.errors import BadSignature, InvalidKey

PREFIX = b"Lightning Signed Message:"
ZBASE32 = "ybndrfg8ejkmcpqxot1uwisza345h769"
_ZINDEX = {c: i for i, c in enumerate(ZBASE32)}


@dataclass(frozen=True)
class SignedMessage:
    signature: str  # 64-byte compact signature, hex
    recid: int
    zbase: str


def digest(message: str) -> bytes:
    """The 32 bytes that are signed: SHA-256d over the prefixed message."""
    return hashlib.sha256(hashlib.sha256(PREFIX + message.encode("utf-8")).digest()).digest()


def zbase32_encode(data: bytes) -> str:
    bits = "".join(f"{b:08b}" for b in data)
    bits += "0" * (-len(bits) % 5)
    return "".join(ZBASE32[int(bits[i : i + 5], 2)] for i in range(0, len(bits), 5))


def zbase32_decode(text: str) -> bytes:
    """Raises ValueError for characters outside the zbase32 alphabet."""
    try:
        bits = "".join(f"{_ZINDEX[c]:05b}" for c in text)
    except KeyError:
        raise ValueError("not zbase32") from None
    return bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits) - len(bits) % 8, 8))


def sign(secret: bytes, message: str) -> SignedMessage:
    """Sign like `lightning-cli signmessage` with a node secret key (32 bytes)."""
    key = secp256k1.PrivateKey(secret, raw=True)
    raw = key.ecdsa_sign_recoverable(digest(message), raw=True)
    compact, recid = key.ecdsa_recoverable_serialize(raw)
    return SignedMessage(compact.hex(), recid, zbase32_encode(bytes([31 + recid]) + compact))


def recover(message: str, zbase: str) -> str:
    """The node id (33-byte compressed key, hex) that signed `message`.

    Raises BadSignature if `zbase` is not a well-formed recoverable signature.
    """
    try:
        raw = zbase32_decode(zbase)
    except ValueError:
        raise BadSignature("the signature is not zbase32") from None
    if len(raw) != 65 or not 31 <= raw[0] <= 34:
        raise BadSignature("a CLN signature is 65 bytes starting with 31 + recid")
    verifier = secp256k1.PublicKey()
    try:
        sig = verifier.ecdsa_recoverable_deserialize(raw[1:], raw[0] - 31)
        point = verifier.ecdsa_recover(digest(message), sig, raw=True)
    except Exception:  # noqa: BLE001 - the binding raises bare Exception for bad signatures
        raise BadSignature("no public key can be recovered from this signature") from None
    return str(secp256k1.PublicKey(point).serialize().hex())


def check(message: str, zbase: str, node_id: str) -> bool:
    """True if `zbase` is `node_id`'s signature over `message` (CLN `checkmessage` semantics)."""
    if len(node_id) != 66 or node_id[:2] not in ("02", "03"):
        raise InvalidKey("a node id is a 33-byte compressed public key in hex")
    try:
        return recover(message, zbase) == node_id.lower()
    except BadSignature:
        return False


def node_id(secret: bytes) -> str:
    """The node id for a node secret key."""
    return str(secp256k1.PrivateKey(secret, raw=True).pubkey.serialize().hex())
