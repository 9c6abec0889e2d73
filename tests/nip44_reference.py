"""A test-only NIP-44 v2 reference, written from the spec, to reach inputs nostr-sdk hides.

nostr-sdk exposes encrypt (random nonce) and decrypt (from a key pair), but not the
conversation key, the message keys or a chosen nonce.  The vector tests use this module to
(1) reproduce every vector's payload exactly (which validates this module), then (2) build
payloads under a known conversation key that the project's decrypt must open.  It is never
imported by the product.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def message_keys(conversation_key: bytes, nonce: bytes) -> tuple[bytes, bytes, bytes]:
    keys = hkdf_expand(conversation_key, nonce, 76)
    return keys[:32], keys[32:44], keys[44:76]


def chacha20(key: bytes, nonce12: bytes, data: bytes) -> bytes:
    # cryptography's ChaCha20 takes a 16-byte nonce: 4-byte little-endian counter (0) + nonce.
    cipher = Cipher(algorithms.ChaCha20(key, b"\x00\x00\x00\x00" + nonce12), mode=None)
    return cipher.encryptor().update(data)


def calc_padded_len(n: int) -> int:
    if n <= 32:
        return 32
    next_power = 1 << ((n - 1).bit_length())
    chunk = 32 if next_power <= 256 else next_power // 8
    return chunk * ((n - 1) // chunk + 1)


def pad(plaintext: bytes) -> bytes:
    n = len(plaintext)
    return n.to_bytes(2, "big") + plaintext + bytes(calc_padded_len(n) - n)


def encrypt(conversation_key: bytes, nonce: bytes, plaintext: bytes) -> str:
    chacha_key, chacha_nonce, hmac_key = message_keys(conversation_key, nonce)
    ciphertext = chacha20(chacha_key, chacha_nonce, pad(plaintext))
    mac = hmac.new(hmac_key, nonce + ciphertext, hashlib.sha256).digest()
    return base64.b64encode(b"\x02" + nonce + ciphertext + mac).decode()


def rekey(payload: str, old_key: bytes, new_key: bytes) -> str:
    """Re-encrypt a payload's bytes from one conversation key to another, preserving its flaws.

    The padded plaintext (and so any padding defect) is carried over byte for byte; the MAC is
    recomputed under the new key only if it was valid under the old one, so an invalid MAC
    stays invalid.  Payloads that are not decodable base64 of plausible length are returned
    unchanged (their defect does not depend on the key).
    """
    try:
        raw = base64.b64decode(payload, validate=True)
    except ValueError:
        return payload
    if len(raw) < 99 or raw[0] != 2:
        return payload
    nonce, ciphertext, mac = raw[1:33], raw[33:-32], raw[-32:]
    old_chacha, old_nonce, old_hmac = message_keys(old_key, nonce)
    mac_ok = hmac.compare_digest(
        mac, hmac.new(old_hmac, nonce + ciphertext, hashlib.sha256).digest()
    )
    padded = chacha20(old_chacha, old_nonce, ciphertext)
    new_chacha, new_nonce, new_hmac = message_keys(new_key, nonce)
    new_ct = chacha20(new_chacha, new_nonce, padded)
    new_mac = hmac.new(new_hmac, nonce + new_ct, hashlib.sha256).digest() if mac_ok else mac
    return base64.b64encode(raw[:1] + nonce + new_ct + new_mac).decode()
