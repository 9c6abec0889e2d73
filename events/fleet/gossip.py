"""The body of state gossip (GOSSIP): one member's signed state record, and how far it may
still travel.

The record is signed by its owner's Nostr key over a digest of its own (tag, hive, record),
apart from the frame's signature: a frame is signed by whoever sends it (the kernel checks
that signer is the peer it came from), so a member that forwards someone else's record signs
a new frame around the owner's unchanged record and signature, with the TTL it decremented
and itself added to the path.  Receivers check the record signature against the owner's
bound key, so forwarding cannot forge, and anti-entropy can later hand the same signed record
to anyone.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

import nostr_sdk as sdk
from pydantic import Field, StringConstraints

from events.canonical import canonical
from events.crypto import schnorr_verify, sha256, sign_hash
from events.fleet.wire import Body, Unix
from events.types import NodeId, Sig

STATE_TAG = "lightning-hive/state/v1"
MAX_CHANNELS = 200
MAX_TTL = 3
MAX_PATH = 10
BALANCE_STEPS = 20  # local balance in 5 % steps: 0 … 20

Sat = Annotated[int, Field(ge=0, lt=2**53)]
Msat = Annotated[int, Field(ge=0, lt=2**63)]
Scid = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,8}x[0-9]{1,6}x[0-9]{1,5}$")]
Feature = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,32}$")]


class ChannelStatus(StrEnum):
    PENDING = "pending"  # funded, not yet usable
    NORMAL = "normal"
    CLOSING = "closing"


class ChannelEntry(Body):
    """One of the owner's channels, as the fleet sees it."""

    peer: NodeId
    scid: Scid
    capacity_sat: Sat
    balance: Annotated[int, Field(ge=0, le=BALANCE_STEPS)]  # local share, in 5 % steps
    fee_base_msat: Msat
    fee_ppm: Annotated[int, Field(ge=0, le=10_000_000)]
    htlc_min_msat: Msat
    htlc_max_msat: Msat
    cltv_delta: Annotated[int, Field(ge=0, le=65_535)]
    state: Literal["pending", "normal", "closing"]  # a ChannelStatus (strict bodies: as text)

    @property
    def status(self) -> ChannelStatus:
        return ChannelStatus(self.state)


class StateRecord(Body):
    """A member's fleet-relevant state; `version` only grows, per owner."""

    owner: NodeId
    version: Annotated[int, Field(ge=1, lt=2**53)]
    timestamp: Unix
    capacity_sat: Sat
    outbound_sat: Sat
    channels: Annotated[list[ChannelEntry], Field(max_length=MAX_CHANNELS)]
    offered_sat: Sat  # on-chain funds the owner offers for fleet expansion
    features: Annotated[list[Feature], Field(max_length=32)]
    uptime_s: Annotated[int, Field(ge=0, lt=2**40)]


class Gossip(Body):
    record: StateRecord
    sig: Sig  # the owner's signature over record_digest(hive, record)
    ttl: Annotated[int, Field(ge=0, le=MAX_TTL)]
    path: Annotated[list[NodeId], Field(max_length=MAX_PATH)]  # who forwarded it, in order


def record_digest(hive: str, record: StateRecord, text: bytes | None = None) -> bytes:
    """SHA-256 of the canonical [tag, hive, record]; `text`: the record's canonical JSON if
    the caller has it already (a list's items are written as they are alone)."""
    if text is None:
        return sha256(canonical([STATE_TAG, hive, record.model_dump(mode="json")]))
    return sha256(canonical([STATE_TAG, hive])[:-1] + b"," + text + b"]")


def sign_record(keys: sdk.Keys, hive: str, record: StateRecord) -> str:
    """The owner's signature over its record, for the hive it is in."""
    return sign_hash(keys, record_digest(hive, record))


def record_verifies(hive: str, body: Gossip, key: str, text: bytes | None = None) -> bool:
    """True if `body.sig` is `key`'s signature over the record (never raises); `text`: the
    record's canonical JSON, if the caller has it."""
    try:
        pub = bytes.fromhex(key)
    except ValueError:
        return False
    digest = record_digest(hive, body.record, text)
    return schnorr_verify(pub, digest, bytes.fromhex(body.sig))
