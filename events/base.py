"""NIP-01 events: the signed envelope every family builds on.

`parse_event()` is the only way raw bytes from a relay become a `NostrEvent`: it checks size,
JSON, shape, id and signature, in that order, and raises a typed error at the first failure.
`sign_event()` is the only way one is made.  Neither reads a clock: callers pass `created_at`
and `now`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import nostr_sdk as sdk
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticSerializationError, to_json

from events.crypto import KeyLike, pubkey_hex, schnorr_verify, sha256, sign_hash
from events.errors import (
    BadEventId,
    BadSignature,
    Expired,
    InvalidEvent,
    InvalidJson,
    InvalidTag,
    MissingTag,
    TooLarge,
    WrongKind,
)
from events.types import Hex64, Hex128, first_error

# nostr-sdk's relay (and most public relays) refuse events over 64 KiB.
MAX_EVENT_BYTES = 65_536
# The largest rumor whose seal and gift wrap still fit MAX_EVENT_BYTES in the worst case of
# NIP-44 padding (tests/test_nip59.py builds one and checks it).
MAX_RUMOR_BYTES = 28_672
# how far ahead of our clock an event may be dated: beyond, FROM_FUTURE (the agent's
# inbound default, listings and RFPs browsed, heartbeats, reputation periods)
FUTURE_TOLERANCE_S = 600

Tags = list[list[str]]
_STRICT = ConfigDict(strict=True, frozen=True, extra="forbid")


class Rumor(BaseModel):
    """An unsigned event (NIP-59 rumor): what travels inside a seal."""

    model_config = _STRICT

    id: Hex64
    pubkey: Hex64
    created_at: int = Field(ge=0, le=2**53)
    kind: int = Field(ge=0, le=65535)
    tags: Tags
    content: str

    def to_json(self) -> str:
        """Compact JSON, as it is encrypted into a seal."""
        return self.model_dump_json()

    def tag(self, name: str) -> str | None:
        """The first value of the first tag called `name`, if any."""
        return tag_value(self.tags, name)


class NostrEvent(Rumor):
    """A signed NIP-01 event whose id and signature have been checked."""

    sig: Hex128

    def to_sdk(self) -> sdk.Event:
        """The same event as a nostr-sdk object, for sending through a relay client."""
        return sdk.Event.from_json(self.to_json())


def canonical_bytes(pubkey: str, created_at: int, kind: int, tags: Tags, content: str) -> bytes:
    """The NIP-01 serialization whose SHA-256 is the event id.

    Same escaping as JSON.stringify (what nostr-tools and rust-nostr produce), written by
    pydantic-core's serializer (3-4× faster than the standard library's on the long base64
    content of a gift wrap; tests/test_event_base.py checks it byte for byte against
    `json.dumps`); a lone UTF-16 surrogate cannot be encoded and is refused.
    """
    try:
        return to_json([0, pubkey, created_at, kind, tags, content])
    except PydanticSerializationError as exc:
        raise InvalidEvent("the event contains text that cannot be serialized as UTF-8") from exc


def event_id(pubkey: str, created_at: int, kind: int, tags: Tags, content: str) -> str:
    """The NIP-01 id of an event with these fields."""
    return sha256(canonical_bytes(pubkey, created_at, kind, tags, content)).hex()


def _loads(raw: str | bytes, max_bytes: int, what: str) -> Any:
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise TooLarge(f"{what} is {size:,} bytes; the limit is {max_bytes:,}")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidJson(f"{what} is not valid JSON") from exc


def _validate(model: type[Rumor], data: Any, what: str) -> Any:
    if not isinstance(data, dict):
        raise InvalidEvent(f"{what} must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidEvent(f"{what} {first_error(exc, 'event')}") from None


def _check_id(ev: Rumor, what: str) -> None:
    if event_id(ev.pubkey, ev.created_at, ev.kind, ev.tags, ev.content) != ev.id:
        raise BadEventId(f"{what} id does not match its contents")


def parse_event(
    raw: str | bytes, *, max_bytes: int = MAX_EVENT_BYTES, what: str = "event"
) -> NostrEvent:
    """Parse and verify one signed event from its JSON text (`what` names it in errors).

    Raises TooLarge, InvalidJson, InvalidEvent, BadEventId or BadSignature.
    """
    return event_from_data(load_json(raw, max_bytes=max_bytes, what=what), what=what)


def load_json(raw: str | bytes, *, max_bytes: int = MAX_EVENT_BYTES, what: str = "event") -> Any:
    """The JSON value in `raw`; TooLarge or InvalidJson.  First half of `parse_event`."""
    return _loads(raw, max_bytes, what)


def event_from_data(data: Any, *, what: str = "event", verify: bool = True) -> NostrEvent:
    """Validate and verify decoded JSON as a signed event.  Second half of `parse_event`.

    With `verify=False` the id is still checked against the contents (so the event is what
    its id says) but the signature is left to the caller, who must `require_signature` before
    trusting the author — gift wraps do, once their outer layer has opened (a one-time key's
    signature proves nothing, and junk is cheaper to refuse by failing to decrypt).

    Raises InvalidEvent, BadEventId or BadSignature.
    """
    ev: NostrEvent = _validate(NostrEvent, data, what)
    _check_id(ev, what)
    if verify:
        require_signature(ev, what)
    return ev


def require_signature(ev: NostrEvent, what: str = "event") -> None:
    """BadSignature unless `ev`'s BIP-340 signature verifies against its pubkey and id."""
    if not schnorr_verify(bytes.fromhex(ev.pubkey), bytes.fromhex(ev.id), bytes.fromhex(ev.sig)):
        raise BadSignature(f"{what} signature does not verify against its pubkey")


def parse_rumor(raw: str | bytes, *, max_bytes: int = MAX_RUMOR_BYTES) -> Rumor:
    """Parse one unsigned rumor and check that its id matches its contents.

    Raises TooLarge, InvalidJson, InvalidEvent (including a rumor that carries a signature)
    or BadEventId.
    """
    data = _loads(raw, max_bytes, "rumor")
    if isinstance(data, dict) and "sig" in data:
        raise InvalidEvent("a rumor must not be signed (NIP-59)")
    rumor: Rumor = _validate(Rumor, data, "rumor")
    _check_id(rumor, "rumor")
    return rumor


def make_rumor(pubkey: str, kind: int, content: str, tags: Tags, created_at: int) -> Rumor:
    """An unsigned event with its id computed; raises TooLarge above MAX_RUMOR_BYTES."""
    rumor = Rumor(
        id=event_id(pubkey, created_at, kind, tags, content),
        pubkey=pubkey,
        created_at=created_at,
        kind=kind,
        tags=tags,
        content=content,
    )
    size = len(rumor.to_json().encode("utf-8"))
    if size > MAX_RUMOR_BYTES:
        raise TooLarge(f"the private message is {size:,} bytes; the limit is {MAX_RUMOR_BYTES:,}")
    return rumor


def sign_event(keys: KeyLike, kind: int, content: str, tags: Tags, created_at: int) -> NostrEvent:
    """Sign an event with `keys`; raises TooLarge if it would exceed MAX_EVENT_BYTES.

    The id is computed here (the same serialization `parse_event` checks) and signed with
    libsecp256k1's BIP-340 signer (events.crypto), so tags reach the wire exactly as given.
    """
    pubkey = pubkey_hex(keys)
    eid = event_id(pubkey, created_at, kind, tags, content)
    ev = NostrEvent(
        id=eid,
        pubkey=pubkey,
        created_at=created_at,
        kind=kind,
        tags=tags,
        content=content,
        sig=sign_hash(keys, bytes.fromhex(eid)),
    )
    size = len(ev.to_json().encode("utf-8"))
    if size > MAX_EVENT_BYTES:
        raise TooLarge(f"the event would be {size:,} bytes; the limit is {MAX_EVENT_BYTES:,}")
    return ev


# --- tags ---------------------------------------------------------------------------------


def tag_value(tags: Sequence[Sequence[str]], name: str) -> str | None:
    """The first value of the first tag called `name`, or None."""
    for tag in tags:
        if len(tag) >= 2 and tag[0] == name:
            return tag[1]
    return None


def tag_values(tags: Sequence[Sequence[str]], name: str) -> list[str]:
    """The first value of every tag called `name`, in order."""
    return [tag[1] for tag in tags if len(tag) >= 2 and tag[0] == name]


def require_kind(ev: Rumor, *kinds: int) -> None:
    """Raise WrongKind unless the event's kind is one of `kinds`."""
    if ev.kind not in kinds:
        expected = " or ".join(str(k) for k in kinds)
        raise WrongKind(f"expected an event of kind {expected}, got kind {ev.kind}")


def require_tags(ev: Rumor, names: Iterable[str]) -> None:
    """Raise MissingTag for the first of `names` that the event lacks."""
    for name in names:
        if tag_value(ev.tags, name) is None:
            raise MissingTag(f"kind {ev.kind} events need a {name!r} tag")


def expiration(ev: Rumor) -> int | None:
    """The NIP-40 expiration timestamp, if the event has one; InvalidTag if malformed."""
    value = tag_value(ev.tags, "expiration")
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 16:
        raise InvalidTag(f"expiration must be a unix timestamp, got {value!r:.40}")
    return int(value)


def require_unexpired(ev: Rumor, now: int) -> None:
    """Raise Expired if the event's NIP-40 expiration is at or before `now`."""
    expires = expiration(ev)
    if expires is not None and expires <= now:
        raise Expired(f"the event expired {now - expires} s ago")
