"""NIP-59 seal and gift wrap for the project's private rumors.

wrap:   rumor (unsigned, author = sender) → seal (kind 13, signed by the sender, content =
        NIP-44(rumor) to the recipient, no tags) → gift wrap (kind 1059, signed by a one-time
        key, content = NIP-44(seal), `p` = recipient).
unwrap: the reverse, verifying every layer; a seal signed by anyone but the rumor's author is
        refused (SEAL_MISMATCH), so a rumor cannot be passed off as someone else's.

Both `created_at`s are randomised up to two days into the past (NIP-59), from the `now` and
`rng` the caller gives, so the rumor's own `created_at` and `expiration` are what count.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from events import nip13, nip44
from events.base import (
    MAX_RUMOR_BYTES,
    NostrEvent,
    Rumor,
    event_from_data,
    load_json,
    parse_rumor,
    require_kind,
    require_signature,
    require_unexpired,
    sign_event,
    tag_value,
)
from events.crypto import KeyLike, SecretKey, pubkey_hex
from events.errors import InvalidEvent, SealMismatch, WrongRecipient
from events.kinds import Kind

TWO_DAYS = 2 * 24 * 3600
_SYSTEM_RANDOM = random.SystemRandom()


@dataclass(frozen=True)
class Unwrapped:
    """A verified rumor, with the gift wrap it arrived in."""

    rumor: Rumor
    sender: str
    wrap_id: str


def _tweaked(now: int, rng: random.Random) -> int:
    return now - rng.randrange(0, TWO_DAYS)


def wrap(
    sender: KeyLike,
    recipient_pubkey: str,
    rumor: Rumor,
    *,
    now: int,
    expiration: int | None = None,
    rng: random.Random | None = None,
    pow_bits: int = 0,
) -> NostrEvent:
    """Seal `rumor` from `sender` and gift-wrap it to `recipient_pubkey`, the wrap's id
    carrying `pow_bits` of NIP-13 work (the recipient's advertised floor).

    Raises SealMismatch if `sender` is not the rumor's author, TooLarge if the rumor exceeds
    MAX_RUMOR_BYTES, InvalidKey for a bad recipient.
    """
    rng = rng or _SYSTEM_RANDOM
    if pubkey_hex(sender) != rumor.pubkey:
        raise SealMismatch("a rumor can only be sealed by its own author")
    rumor_json = rumor.to_json()
    parse_rumor(rumor_json)  # the same size and id checks the recipient will apply
    sealed = nip44.encrypt(sender, recipient_pubkey, rumor_json)
    seal = sign_event(sender, Kind.SEAL, sealed, [], _tweaked(now, rng))
    one_time = SecretKey.generate()
    tags = [["p", recipient_pubkey]]
    if expiration is not None:
        tags.append(["expiration", str(expiration)])
    content = nip44.encrypt(one_time, recipient_pubkey, seal.to_json(), remember=False)
    created_at = _tweaked(now, rng)
    if pow_bits > 0:
        tags = nip13.mine(pubkey_hex(one_time), created_at, Kind.GIFT_WRAP, tags, content, pow_bits)
    return sign_event(one_time, Kind.GIFT_WRAP, content, tags, created_at)


def unwrap(recipient: KeyLike, gift: NostrEvent, *, now: int) -> Unwrapped:
    """Open a gift wrap addressed to `recipient` and verify every layer.

    Raises WrongKind, WrongRecipient, Expired, the NIP-44 errors, the parse errors of the seal
    and the rumor, InvalidEvent for a seal with tags, and SealMismatch.
    """
    return open_seal(recipient, open_wrap(recipient, gift, now=now), gift.id)


def open_wrap(
    recipient: KeyLike,
    gift: NostrEvent,
    *,
    now: int,
    admit: Callable[[str], None] | None = None,
) -> NostrEvent:
    """The outer layer only: the verified seal inside a gift wrap (whose signer is the real
    sender), so a receiver can decide whether to spend more work on it.

    Cheapest refusals first: the wrap is decrypted before any signature is checked (junk
    fails there), and `admit(claimed seal signer)` may refuse (raise) before the wrap's and
    the seal's signatures are verified.  Both are verified before the seal is returned.

    Raises WrongKind, WrongRecipient, Expired, the NIP-44 errors, the seal's parse errors,
    InvalidEvent for a seal with tags, BadSignature, and whatever `admit` raises.
    """
    require_kind(gift, Kind.GIFT_WRAP)
    me = pubkey_hex(recipient)
    if tag_value(gift.tags, "p") != me:
        raise WrongRecipient()
    require_unexpired(gift, now)
    outer = nip44.decrypt(recipient, gift.pubkey, gift.content, remember=False)  # one-time key
    seal = event_from_data(load_json(outer, what="seal"), what="seal", verify=False)
    require_kind(seal, Kind.SEAL)
    if seal.tags:
        raise InvalidEvent("a seal must not carry tags (NIP-59)")
    if admit is not None:
        admit(seal.pubkey)
    require_signature(gift, "gift wrap")
    require_signature(seal, "seal")
    return seal


def open_seal(recipient: KeyLike, seal: NostrEvent, wrap_id: str) -> Unwrapped:
    """The rumor inside a verified seal; raises the NIP-44 and rumor parse errors, and
    SealMismatch if the rumor claims another author than the seal's signer."""
    rumor = parse_rumor(
        nip44.decrypt(recipient, seal.pubkey, seal.content), max_bytes=MAX_RUMOR_BYTES
    )
    if rumor.pubkey != seal.pubkey:
        raise SealMismatch(
            f"the seal is signed by {seal.pubkey[:12]}… but the message claims author "
            f"{rumor.pubkey[:12]}…"
        )
    return Unwrapped(rumor=rumor, sender=seal.pubkey, wrap_id=wrap_id)
