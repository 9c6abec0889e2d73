"""NIP-44 v2 encryption, written from the spec, with typed errors.

    conversation key = HKDF-extract(salt="nip44-v2", IKM = x of ECDH(our secret, their key))
    message keys     = HKDF-expand(conversation key, info = 32-byte random nonce, 76 bytes)
                       → ChaCha20 key (32) ‖ ChaCha20 nonce (12) ‖ HMAC key (32)
    payload          = base64(0x02 ‖ nonce ‖ ChaCha20(u16-BE length ‖ plaintext ‖ zero padding)
                              ‖ HMAC-SHA256(HMAC key, nonce ‖ ciphertext))

ECDH is libsecp256k1's (events.crypto), ChaCha20 is OpenSSL's (through `cryptography`),
HMAC and SHA-256 are the standard library's.  Decryption checks the structure first (version
marker, base64, lengths: each failure its own code), then the MAC in constant time before
anything is decrypted, then the padding.  The official vectors (tests/test_nip44_vectors.py)
pin every step, and nostr-sdk and nostr-tools open what this module seals and vice versa.

The conversation key of a pair of long-lived keys is the same for every message between them,
so it is kept in a bounded LRU (keyed by both public keys: the x of the shared point does not
depend on which of the two secrets behind an x-only key is used).  One-time keys (the outer
layer of a gift wrap) pass `remember=False` and never enter it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import secrets
from collections import OrderedDict

import nostr_sdk as sdk
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from events.crypto import KeyLike, require_xonly, secret_of
from events.errors import (
    DecryptionFailed,
    InvalidKey,
    Nip44Malformed,
    Nip44VersionUnsupported,
    PlaintextLength,
)

VERSION = 2
SALT = b"nip44-v2"
MIN_PLAINTEXT = 1
MAX_PLAINTEXT = 65_535
_MIN_B64, _MAX_B64 = 132, 87_472
_MIN_RAW, _MAX_RAW = 99, 65_603
_CACHE_SIZE = 4096
_conversations: OrderedDict[tuple[bytes, bytes], bytes] = OrderedDict()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")  # OpenSSL's one-shot HMAC: no Python object


def conversation_key(keys: KeyLike, pubkey_hex: str, *, remember: bool = True) -> bytes:
    """The NIP-44 conversation key between `keys` and the x-only `pubkey_hex`.

    Raises InvalidKey for a public key that is not 64 lowercase hex digits on the curve.
    """
    theirs = require_xonly(pubkey_hex)
    mine = secret_of(keys)
    slot = (mine.xonly, theirs)
    found = _conversations.get(slot)
    if found is not None:
        with contextlib.suppress(KeyError):  # another thread may have just evicted it
            _conversations.move_to_end(slot)
        return found
    key = _hmac(SALT, mine.shared_x(theirs))
    if remember:
        _conversations[slot] = key
        if len(_conversations) > _CACHE_SIZE:
            with contextlib.suppress(KeyError):
                _conversations.popitem(last=False)
    return key


def message_keys(conversation: bytes, nonce: bytes) -> tuple[bytes, bytes, bytes]:
    """(ChaCha20 key, ChaCha20 nonce, HMAC key) for one message: HKDF-expand to 76 bytes."""
    prk, block, out = conversation, b"", b""
    for counter in (1, 2, 3):  # 3 × 32 bytes ≥ 76
        block = _hmac(prk, block + nonce + bytes([counter]))
        out += block
    return out[:32], out[32:44], out[44:76]


def calc_padded_len(n: int) -> int:
    """The padded length of an n-byte plaintext (NIP-44: 32-byte minimum, then chunks)."""
    if n <= 32:
        return 32
    next_power = 1 << ((n - 1).bit_length())
    chunk = 32 if next_power <= 256 else next_power // 8
    return chunk * ((n - 1) // chunk + 1)


def _chacha20(key: bytes, nonce12: bytes, data: bytes) -> bytes:
    # OpenSSL's ChaCha20 takes a 16-byte IV: the 32-bit block counter (0, little-endian) + nonce
    cipher = Cipher(algorithms.ChaCha20(key, b"\x00\x00\x00\x00" + nonce12), mode=None)
    return cipher.encryptor().update(data)


def _plaintext_bytes(plaintext: str) -> bytes:
    raw = plaintext.encode("utf-8")
    if not MIN_PLAINTEXT <= len(raw) <= MAX_PLAINTEXT:
        raise PlaintextLength(f"NIP-44 plaintexts must be 1 to 65,535 bytes, got {len(raw):,}")
    return raw


def _seal(conversation: bytes, raw: bytes, nonce: bytes | None) -> str:
    nonce = secrets.token_bytes(32) if nonce is None else nonce
    chacha_key, chacha_nonce, hmac_key = message_keys(conversation, nonce)
    padded = len(raw).to_bytes(2, "big") + raw + bytes(calc_padded_len(len(raw)) - len(raw))
    ciphertext = _chacha20(chacha_key, chacha_nonce, padded)
    mac = _hmac(hmac_key, nonce + ciphertext)
    return base64.b64encode(bytes([VERSION]) + nonce + ciphertext + mac).decode("ascii")


def encrypt_with(conversation: bytes, plaintext: str, nonce: bytes | None = None) -> str:
    """Encrypt under a conversation key; `nonce` (32 bytes) is random unless given (vectors).

    Raises PlaintextLength outside 1–65,535 UTF-8 bytes.
    """
    return _seal(conversation, _plaintext_bytes(plaintext), nonce)


def encrypt(
    sender: KeyLike, recipient_pubkey: str, plaintext: str, *, remember: bool = True
) -> str:
    """Encrypt `plaintext` from `sender` to the x-only `recipient_pubkey` (hex).

    Raises PlaintextLength outside 1–65,535 UTF-8 bytes and InvalidKey for a bad recipient.
    """
    raw = _plaintext_bytes(plaintext)
    return _seal(conversation_key(sender, recipient_pubkey, remember=remember), raw, None)


def check_payload(payload: str) -> bytes:
    """The decoded bytes of a v2 payload; Nip44VersionUnsupported or Nip44Malformed if it
    cannot be one."""
    if payload.startswith("#"):
        raise Nip44VersionUnsupported("the payload is marked as an unsupported NIP-44 version")
    if not _MIN_B64 <= len(payload) <= _MAX_B64:
        raise Nip44Malformed(f"a NIP-44 v2 payload is 132–87,472 characters, got {len(payload):,}")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise Nip44Malformed("the payload is not valid base64") from None
    if not _MIN_RAW <= len(raw) <= _MAX_RAW:
        raise Nip44Malformed(f"a NIP-44 v2 payload decodes to 99–65,603 bytes, got {len(raw):,}")
    if raw[0] != VERSION:
        raise Nip44VersionUnsupported(f"the payload is NIP-44 version {raw[0]}, not 2")
    return raw


def _open(conversation: bytes, raw: bytes) -> str:
    nonce, ciphertext, mac = raw[1:33], raw[33:-32], raw[-32:]
    chacha_key, chacha_nonce, hmac_key = message_keys(conversation, nonce)
    if not hmac.compare_digest(_hmac(hmac_key, nonce + ciphertext), mac):
        raise DecryptionFailed("the payload's MAC does not verify (wrong key or tampered data)")
    padded = _chacha20(chacha_key, chacha_nonce, ciphertext)
    size = int.from_bytes(padded[:2], "big")
    if size < MIN_PLAINTEXT or len(padded) != 2 + calc_padded_len(size):
        raise DecryptionFailed("the payload's padding is invalid")
    try:
        return padded[2 : 2 + size].decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionFailed("the decrypted payload is not valid UTF-8") from None


def decrypt_with(conversation: bytes, payload: str) -> str:
    """Decrypt a payload under a conversation key.

    Raises Nip44VersionUnsupported, Nip44Malformed or DecryptionFailed (MAC, padding or UTF-8
    failure: wrong key or tampered data).
    """
    return _open(conversation, check_payload(payload))


def decrypt(recipient: KeyLike, sender_pubkey: str, payload: str, *, remember: bool = True) -> str:
    """Decrypt a payload that `sender_pubkey` (hex) encrypted to `recipient`.

    Raises InvalidKey, Nip44VersionUnsupported, Nip44Malformed or DecryptionFailed.
    """
    raw = check_payload(payload)  # structural errors first, before any key work
    return _open(conversation_key(recipient, sender_pubkey, remember=remember), raw)


def keys_from_secret(secret_hex: str) -> sdk.Keys:
    """nostr-sdk keys from a 64-hex-digit secret; InvalidKey if it is not a valid scalar."""
    if len(secret_hex) != 64:
        raise InvalidKey("a secret key is 64 hex digits")
    try:
        return sdk.Keys(sdk.SecretKey.from_bytes(bytes.fromhex(secret_hex)))
    except (ValueError, sdk.NostrSdkError):
        raise InvalidKey("the secret key is not a valid secp256k1 scalar (0 < k < n)") from None
