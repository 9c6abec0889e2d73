"""NIP-44 v2 encryption through nostr-sdk, with typed errors.

The cheap structural checks of the spec (version marker, base64, lengths) run here first so
that each failure gets its own code; the cryptography (ECDH, HKDF, ChaCha20, HMAC, padding)
is nostr-sdk's.

Library quirk (nostr-sdk 0.45.1, pinned by a test): it refuses to *encrypt* plaintexts of
65,409–65,535 bytes although NIP-44 allows them; it decrypts them.  Nothing this project
sends comes close (rumors are capped at MAX_RUMOR_BYTES), and the refusal is reported as
PLAINTEXT_LENGTH.
"""

from __future__ import annotations

import base64
import binascii

import nostr_sdk as sdk

from events.crypto import require_xonly, sdk_public_key
from events.errors import (
    DecryptionFailed,
    InvalidKey,
    Nip44Malformed,
    Nip44VersionUnsupported,
    PlaintextLength,
)

MIN_PLAINTEXT = 1
MAX_PLAINTEXT = 65_535
_MIN_B64, _MAX_B64 = 132, 87_472
_MIN_RAW, _MAX_RAW = 99, 65_603


def _public_key(pubkey_hex: str) -> sdk.PublicKey:
    return sdk_public_key(require_xonly(pubkey_hex))


def encrypt(sender: sdk.Keys, recipient_pubkey: str, plaintext: str) -> str:
    """Encrypt `plaintext` from `sender` to the x-only `recipient_pubkey` (hex).

    Raises PlaintextLength outside 1–65,535 UTF-8 bytes and InvalidKey for a bad recipient.
    """
    size = len(plaintext.encode("utf-8"))
    if not MIN_PLAINTEXT <= size <= MAX_PLAINTEXT:
        raise PlaintextLength(f"NIP-44 plaintexts must be 1 to 65,535 bytes, got {size:,}")
    recipient = _public_key(recipient_pubkey)
    try:
        return sdk.nip44_encrypt(sender.secret_key(), recipient, plaintext, sdk.Nip44Version.V2)
    except sdk.NostrSdkError as exc:
        raise PlaintextLength(
            f"nostr-sdk could not encrypt a {size:,}-byte plaintext ({exc}); "
            "it encrypts at most 65,408 bytes"
        ) from None


def check_payload(payload: str) -> None:
    """Raise Nip44VersionUnsupported or Nip44Malformed if `payload` cannot be a v2 payload."""
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
    if raw[0] != 2:
        raise Nip44VersionUnsupported(f"the payload is NIP-44 version {raw[0]}, not 2")


def decrypt(recipient: sdk.Keys, sender_pubkey: str, payload: str) -> str:
    """Decrypt a payload that `sender_pubkey` (hex) encrypted to `recipient`.

    Raises InvalidKey, Nip44VersionUnsupported, Nip44Malformed or DecryptionFailed (MAC or
    padding failure: wrong key or tampered data).
    """
    check_payload(payload)
    sender = _public_key(sender_pubkey)
    try:
        return sdk.nip44_decrypt(recipient.secret_key(), sender, payload)
    except sdk.NostrSdkError:
        raise DecryptionFailed() from None


def keys_from_secret(secret_hex: str) -> sdk.Keys:
    """nostr-sdk keys from a 64-hex-digit secret; InvalidKey if it is not a valid scalar."""
    if len(secret_hex) != 64:
        raise InvalidKey("a secret key is 64 hex digits")
    try:
        return sdk.Keys(sdk.SecretKey.from_bytes(bytes.fromhex(secret_hex)))
    except (ValueError, sdk.NostrSdkError):
        raise InvalidKey("the secret key is not a valid secp256k1 scalar (0 < k < n)") from None
