"""NIP-13 proof of work: leading zero bits of an event id, and mining a `nonce` tag.

A recipient under a flood of gift wraps from fresh keys (NIP-59 makes every wrap's key new,
so per-key limits see nothing) can ask for a floor of work per wrap; it advertises the floor
in its NIP-17 inbox list (kind 10050, tag `["pow", "<bits>"]`), and agents sending to it mine
that much.  Each extra bit doubles the sender's work: 8 bits cost well under a millisecond
here, 16 bits a few hundred milliseconds — nothing for one message, a lot for a million.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

MAX_BITS = 16  # never mine more than this for someone else's floor (~0.05 s here; 24 bits
# would be ~10 s on the agent's loop for every message to them)


def leading_zero_bits(event_id: str) -> int:
    """Leading zero bits of a hex event id (NIP-13 difficulty)."""
    value = int(event_id, 16)
    return 256 - value.bit_length() if value else 256


def committed_target(tags: list[list[str]]) -> int:
    """The difficulty a `nonce` tag commits to (0 without one)."""
    for tag in tags:
        if len(tag) >= 3 and tag[0] == "nonce" and tag[2].isascii() and tag[2].isdigit():
            return int(tag[2][:3])
    return 0


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def mine(
    pubkey: str, created_at: int, kind: int, tags: list[list[str]], content: str, bits: int
) -> list[list[str]]:
    """`tags` plus a `nonce` tag that gives the event id at least `bits` leading zero bits.

    The id is NIP-01's SHA-256 of `[0,pubkey,created_at,kind,tags,content]`; the nonce is the
    last tag, so everything before its value is hashed once and everything after is a short
    constant suffix.
    """
    if bits <= 0:
        return tags
    head_tags = _dumps([*tags, ["nonce", "#", str(bits)]])
    marker = head_tags.rindex('"#"')
    prefix = f'[0,"{pubkey}",{created_at},{kind},' + head_tags[:marker]
    suffix = head_tags[marker + 3 :] + "," + _dumps(content) + "]"
    base = hashlib.sha256(prefix.encode())
    tail = suffix.encode()
    nonce = 0
    while True:
        h = base.copy()
        h.update(b'"%d"' % nonce)
        h.update(tail)
        if int.from_bytes(h.digest()[:4], "big") >> (32 - min(bits, 32)) == 0 and (
            bits <= 32 or leading_zero_bits(h.hexdigest()) >= bits
        ):
            return [*tags, ["nonce", str(nonce), str(bits)]]
        nonce += 1
