"""secp256k1 for the project: BIP-340 signing and verification, ECDH for NIP-44, key checks.

Everything runs on libsecp256k1 through the `secp256k1` package, called directly: nostr-sdk's
Python bindings cost tens of microseconds of marshalling per call (several calls per
signature), which made signing and encryption the largest part of a private message's cost.
nostr-sdk's `Keys` stays the key object the rest of the project passes around; the first use
of a `Keys` reads its secret once into a `SecretKey`, remembered for as long as that `Keys`
lives.

Side channels: signing and ECDH use libsecp256k1's constant-time code paths, on a context of
our own that is randomised (blinded) at import, and every signature takes 32 bytes of fresh
auxiliary randomness (BIP-340's recommendation).  Parsing an x-only key costs a square root,
so parsed public keys are kept in a small LRU cache: a relay stream is dominated by a few
authors.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import weakref
from functools import lru_cache
from typing import TypeAlias

import nostr_sdk as sdk
import secp256k1
from secp256k1 import ffi, lib

from events.errors import InvalidKey

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")

_CTX = lib.secp256k1_context_create(lib.SECP256K1_CONTEXT_SIGN | lib.SECP256K1_CONTEXT_VERIFY)
if not lib.secp256k1_context_randomize(_CTX, secrets.token_bytes(32)):
    raise RuntimeError("libsecp256k1 refused to randomise its context")


@ffi.callback("int(unsigned char *, const unsigned char *, const unsigned char *, void *)")
def _copy_x(output, x32, _y32, _data):  # type: ignore[no-untyped-def]
    # NIP-44 wants the shared point's bare x coordinate, not libsecp256k1's default hash of it
    ffi.memmove(output, x32, 32)
    return 1


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
    return bool(key.schnorr_verify(message, signature, None, raw=True))


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


class SecretKey:
    """A secp256k1 secret key with its BIP-340 key pair and x-only public key.

    Never printed: `repr()` shows only the public key.
    """

    __slots__ = ("__weakref__", "_keypair", "_secret", "pubkey", "xonly")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32 or not lib.secp256k1_ec_seckey_verify(_CTX, secret):
            raise InvalidKey("the secret key is not a valid secp256k1 scalar (0 < k < n)")
        keypair = ffi.new("secp256k1_keypair *")
        xonly = ffi.new("secp256k1_xonly_pubkey *")
        out = ffi.new("unsigned char[32]")
        if not (
            lib.secp256k1_keypair_create(_CTX, keypair, secret)
            and lib.secp256k1_keypair_xonly_pub(_CTX, xonly, ffi.NULL, keypair)
            and lib.secp256k1_xonly_pubkey_serialize(_CTX, out, xonly)
        ):
            raise InvalidKey("libsecp256k1 could not derive a key pair from the secret key")
        self._secret = bytes(secret)
        self._keypair = keypair
        self.xonly = bytes(out)
        self.pubkey = self.xonly.hex()

    @classmethod
    def generate(cls) -> SecretKey:
        """A fresh random key (e.g. the one-time key of a gift wrap)."""
        while True:  # a random 32-byte string is out of range with probability ~2^-128
            try:
                return cls(secrets.token_bytes(32))
            except InvalidKey:
                continue

    def __repr__(self) -> str:
        return f"SecretKey(pubkey={self.pubkey})"

    def sign(self, digest: bytes, aux: bytes | None = None) -> bytes:
        """BIP-340 signature of a 32-byte message; `aux` (32 bytes) only for test vectors."""
        if len(digest) != 32:
            raise ValueError("BIP-340 signatures here are over 32-byte digests")
        aux = secrets.token_bytes(32) if aux is None else aux
        sig = ffi.new("unsigned char[64]")
        if not lib.secp256k1_schnorrsig_sign(_CTX, sig, digest, self._keypair, aux):
            raise RuntimeError("libsecp256k1 could not sign")
        return bytes(sig)

    def shared_x(self, their_xonly: bytes) -> bytes:
        """ECDH with an x-only public key (lifted to even y): the shared point's x (NIP-44)."""
        point = _xonly(their_xonly)
        if point is None:
            raise InvalidKey("public key is not the x coordinate of a secp256k1 point")
        out = ffi.new("unsigned char[32]")
        if not lib.secp256k1_ecdh(_CTX, out, point.public_key, self._secret, _copy_x, ffi.NULL):
            raise InvalidKey("ECDH failed for this key pair")
        return bytes(out)


# One SecretKey per live nostr-sdk Keys object, found by id() (nostr-sdk's own __hash__ and
# __eq__ are calls into Rust); the entry goes when the Keys object is collected.
_SECRETS: dict[int, SecretKey] = {}

KeyLike: TypeAlias = "sdk.Keys | SecretKey"


def secret_of(keys: KeyLike) -> SecretKey:
    """The SecretKey behind `keys` (itself if it already is one)."""
    if isinstance(keys, SecretKey):
        return keys
    found = _SECRETS.get(id(keys))
    if found is None:
        found = SecretKey(bytes.fromhex(keys.secret_key().to_hex()))
        _SECRETS[id(keys)] = found
        weakref.finalize(keys, _SECRETS.pop, id(keys), None)
    return found


def pubkey_hex(keys: KeyLike) -> str:
    """The hex x-only public key of `keys`."""
    return secret_of(keys).pubkey


def sign_hash(keys: KeyLike, digest: bytes) -> str:
    """BIP-340 signature (hex) of a 32-byte digest by `keys`."""
    return secret_of(keys).sign(digest).hex()
