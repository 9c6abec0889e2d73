"""BIP-340 Schnorr verification and key checks.

Verification uses libsecp256k1 through the `secp256k1` package.  Parsing an x-only key
costs a square root, so parsed keys are kept in a small LRU cache: a relay stream is
dominated by a few authors.
"""

from __future__ import annotations

import hashlib
import re
import weakref
from functools import lru_cache

import nostr_sdk as sdk
import secp256k1

from events.errors import InvalidKey

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")


def sha256(data: bytes) -> bytes:
    """SHA-256 digest of `data`."""
    return hashlib.sha256(data).digest()


def is_hex64(value: object) -> bool:
    """True for a lowercase 64-character hex string (ids, x-only keys)."""
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def is_hex128(value: object) -> bool:
    """True for a lowercase 128-character hex string (Schnorr signatures)."""
    return isinstance(value, str) and _HEX128.fullmatch(value) is not None


@lru_cache(maxsize=4096)
def _xonly(pubkey: bytes) -> secp256k1.PublicKey | None:
    # BIP-340 lift_x: the point with this x and an even y, i.e. the compressed 02 form.
    try:
        return secp256k1.PublicKey(b"\x02" + pubkey, raw=True)
    except Exception:  # noqa: BLE001 - the binding raises bare Exception for bad points
        return None


def schnorr_verify(pubkey: bytes, message: bytes, signature: bytes) -> bool:
    """Verify a BIP-340 signature over `message` (any length) by x-only `pubkey`.

    Never raises: malformed keys and signatures simply do not verify.
    """
    if len(pubkey) != 32 or len(signature) != 64:
        return False
    key = _xonly(pubkey)
    if key is None:
        return False
    return key.schnorr_verify(message, signature, None, raw=True)


def require_xonly(pubkey_hex: str) -> bytes:
    """Return the 32 bytes of a valid x-only public key given as hex.

    Raises `InvalidKey` for anything that is not 64 lowercase hex digits naming a curve point.
    """
    if not is_hex64(pubkey_hex):
        raise InvalidKey(f"public key must be 64 lowercase hex digits, got {pubkey_hex!r:.80}")
    raw = bytes.fromhex(pubkey_hex)
    if _xonly(raw) is None:
        raise InvalidKey("public key is not the x coordinate of a secp256k1 point")
    return raw


_PUBKEY_HEX: weakref.WeakKeyDictionary[sdk.Keys, str] = weakref.WeakKeyDictionary()


def pubkey_hex(keys: sdk.Keys) -> str:
    """The hex public key of `keys`, remembered per key object (each nostr-sdk call costs)."""
    found = _PUBKEY_HEX.get(keys)
    if found is None:
        found = _PUBKEY_HEX[keys] = keys.public_key().to_hex()
    return found


@lru_cache(maxsize=1024)
def sdk_public_key(xonly: bytes) -> sdk.PublicKey:
    """nostr-sdk's PublicKey for 32 x-only bytes (immutable, so shared); errors as nostr-sdk's."""
    return sdk.PublicKey.from_bytes(xonly)
